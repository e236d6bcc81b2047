"""A run folder: everything one `transferkit train` writes, in one place.

```
runs/images-20240501-120000/
  config.json        the resolved configuration, so the run can be repeated
  state.json         how far each phase got (written after every epoch; what a rerun resumes from)
  history.csv        one row per finished epoch of every phase
  model.keras        the final classifier
  checkpoints/       <phase>.weights.h5 (+ optimizer and best-epoch weights) after every epoch
  logs/<phase>/      TensorBoard event files
  report/            metrics.json, summary.txt, confusion_matrix.png, curves.png, mistakes
  .lock              while a run writes the folder: its process id, host and start time
```

One process writes a run folder at a time: `RunFolder.lock()` takes `.lock` with `flock` (the
kernel lets go of it when the process ends, even by SIGKILL), and a second run on the same folder
is refused with the first one's process id. A `.lock` file that no process holds any more was
left by a killed run; the next run takes it over and says so. The standard library's `fcntl`
is used rather than the `filelock` package because the message needs the holder's process id
and start time, which `filelock` neither records nor reports.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import socket
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transferkit.errors import InputError
from transferkit.files import raise_if_disk_full, read_json, write_json

__all__ = [
    "LOCK_NAME", "RunFolder", "RunLock", "default_run_dir", "in_use_error",
    "read_history_csv",
]

#: The lock file of a run folder (see `RunLock`).
LOCK_NAME = ".lock"


def default_run_dir(kind: str, root: str | os.PathLike = "runs") -> Path:
    """A new run folder name such as `runs/images-20240501-120000` (not created).

    Args:
        kind: what is trained, e.g. `"images"` or `"text"`.
        root: the parent folder. Default `"runs"` (relative to the working directory).
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{kind}-{stamp}"
    suffix = 2
    while path.exists():  # two runs started within the same second
        path = Path(root) / f"{kind}-{stamp}-{suffix}"
        suffix += 1
    return path


def _parse_value(key: str, value: str) -> Any:
    if value == "" or value is None:
        return None
    if key == "epoch":
        return int(float(value))
    if key == "phase":
        return value
    try:
        return float(value)
    except ValueError:
        return value


def read_history_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a `history.csv`, numbers as numbers (`epoch` an int); `[]` if there is no file."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [
                {key: _parse_value(key, value) for key, value in row.items() if key is not None}
                for row in csv.DictReader(handle)
            ]
    except (ValueError, csv.Error) as exc:  # written atomically, so not by transferkit
        raise InputError(
            f"{path}: not a history.csv written by transferkit ({exc}). Delete it to resume "
            "without the rows of the earlier epochs, or start a new run with another `output`."
        ) from None


class RunFolder:
    """The layout of one run folder (see the module docstring); making one does no I/O.

    The one rule for "is this a run folder?" is `is_run()`: it has `config.json` (written
    first, before any epoch). `create()` makes the folder; the reading methods read it.

    Args:
        path: the run folder, e.g. `default_run_dir("images")`.

    Attributes:
        path: the folder.
        report_dir: `path/"report"`: metrics, plots and summaries.
        metrics_path: `report/metrics.json`; `data_path`: `report/data.json`.
        checkpoint_dir: `path/"checkpoints"`: weights saved after every epoch.
        log_dir: `path/"logs"`: TensorBoard logs, one sub-folder per phase.
        model_path: `path/"model.keras"`: the final model.
        config_path: `path/"config.json"`.
        state_path: `path/"state.json"`.
        history_path: `path/"history.csv"`.
        export_dir: `path/"export"`: `transferkit export`'s default folders, one per format.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.report_dir = self.path / "report"
        self.metrics_path = self.report_dir / "metrics.json"
        self.data_path = self.report_dir / "data.json"
        self.checkpoint_dir = self.path / "checkpoints"
        self.log_dir = self.path / "logs"
        self.model_path = self.path / "model.keras"
        self.config_path = self.path / "config.json"
        self.state_path = self.path / "state.json"
        self.history_path = self.path / "history.csv"
        self.export_dir = self.path / "export"

    @classmethod
    def of_model(cls, model_path: str | os.PathLike) -> RunFolder | None:
        """The run folder a `model.keras` file sits in, or `None` for a file outside one."""
        run = cls(Path(model_path).parent)
        return run if run.is_run() and Path(model_path).name == "model.keras" else None

    def is_run(self) -> bool:
        """Whether the folder is a run folder (has `config.json`)."""
        return self.config_path.is_file()

    def create(self) -> RunFolder:
        """Makes the folder (and its parents) if missing. Returns `self`.

        Raises:
            InputError: `path` is a file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise InputError(
                f"{self.path}: is a file, expected a run folder. Pass a folder path (it is created "
                "if missing)."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def save_config(self, config: dict) -> None:
        """Writes the resolved configuration to `config.json` (atomically)."""
        write_json(self.config_path, dict(config))

    def load_config(self) -> dict:
        """The configuration saved by `save_config`.

        Raises:
            InputError: the folder has no `config.json`, or it is not readable JSON.
        """
        if not self.config_path.is_file():
            raise InputError(
                f"{self.path} is not a transferkit run folder: it has no config.json. Pass a "
                "folder written by `transferkit train` (for example runs/images-20240501-120000)."
            )
        try:
            config = read_json(self.config_path)
        except ValueError as exc:
            raise InputError(
                f"{self.config_path}: not valid JSON ({exc}). Fix or delete the file."
            ) from None
        if not isinstance(config, dict):
            raise InputError(
                f"{self.config_path}: not a transferkit run config (a JSON {type(config).__name__}"
                ", not an object). Pass a folder written by `transferkit train`."
            )
        return config

    def state(self) -> dict:
        """The run state (`{}` at first): per phase `epochs_done`, `finished`, `best`, ..."""
        if not self.state_path.is_file():
            return {}
        try:
            return read_json(self.state_path)
        except ValueError as exc:
            # Written atomically, so only a hand edit gets here.
            raise InputError(
                f"{self.state_path}: not valid JSON ({exc}). Delete it to start the run afresh."
            ) from None

    def update_state(self, **kwargs: Any) -> dict:
        """Sets top-level keys of the run state and writes it atomically. Returns the new state.

        Example:
            >>> run.update_state(head={"epochs_done": 3, "finished": False})
        """
        state = self.state()
        state.update(kwargs)
        write_json(self.state_path, state)
        return state

    def lock(self, log: Callable[[str], None] = print, hint: str = "") -> RunLock:
        """Takes the folder's `.lock` for this process (see `RunLock`) and returns it."""
        return RunLock(self.path, log=log, hint=hint)

    def history_rows(self) -> list[dict]:
        """Every row of `history.csv` (one per finished epoch, all phases); `[]` before any."""
        return read_history_csv(self.history_path)


def _holder(path: Path) -> dict:
    """What `.lock` says of its holder (`{}` when it is empty or unreadable)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"process {holder.get('pid', '?')}{where} (started {holder.get('started', '?')})"


def _release(fd: int, path: Path) -> None:
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            path.unlink()  # before closing, so no other process can have taken it meanwhile
    except OSError:
        pass
    finally:
        os.close(fd)


class RunLock:
    """The lock of a run folder, held by this process until `release` (or its end).

    Args:
        folder: the run folder (it must exist).
        log: called with the line saying a stale lock was taken over.
        hint: what to do instead, appended to the in-use message. Default: wait or pass
            another `output`.
        lock_file: the file to lock. Default `None`: `folder/.lock`. A folder that is replaced
            whole (an export, renamed into place) is locked from beside it.

    Raises:
        InputError: another live process holds the folder: its id, host and start time.
    """

    def __init__(self, folder: str | os.PathLike, log: Callable[[str], None] = print,
                 hint: str = "", lock_file: str | os.PathLike | None = None):
        self.path = Path(folder) / LOCK_NAME if lock_file is None else Path(lock_file)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                raise in_use_error(folder, _describe(_holder(self.path)), hint)
            try:  # the holder before us may have deleted the file as we opened it
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        stale = _holder(self.path)
        if stale:
            log(f"{Path(folder)}: {_describe(stale)} is no longer running (killed?); "
                "taking over its lock")
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError as exc:
            _release(fd, self.path)
            raise_if_disk_full(exc, self.path)
            raise
        self._finalizer = weakref.finalize(self, _release, fd, self.path)

    def release(self) -> None:
        """Deletes `.lock` and lets go of it (once; later calls do nothing)."""
        self._finalizer()

    @staticmethod
    def in_use(folder: str | os.PathLike, lock_file: str | os.PathLike | None = None) -> str | None:
        """Who holds the folder's lock ("process 123 (started ...)"), or None when no live
        process does; takes nothing. `lock_file` as for `RunLock`."""
        path = Path(folder) / LOCK_NAME if lock_file is None else Path(lock_file)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            if not _try_lock(fd):
                return _describe(_holder(path))
        finally:
            os.close(fd)  # also lets go of the lock just taken
        return None


def in_use_error(folder: str | os.PathLike, holder: str, hint: str = "") -> InputError:
    """The error for a run folder that `holder` ("process 123 (started ...)") is using."""
    hint = hint or "wait for it to finish, or pass another `output`"
    return InputError(f"{Path(folder)} is in use by {holder}; {hint}.")


def _try_lock(fd: int) -> bool:
    """Locks `fd` for this process without waiting; False if another process holds it. Where
    the file system cannot lock (some network mounts), the run goes on unlocked."""
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    except OSError as exc:
        import errno

        if os.name == "nt" or exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return False
    return True
