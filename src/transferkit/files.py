"""Files on disk: atomic writes, JSON, content hashes, and the cache folder. The ground floor.

Every file transferkit writes (models, weights, checkpoints, JSON state, cached features, report
pictures) goes through `atomic_path` or `atomic_write`: the bytes go to a temporary file in the
same folder, are flushed to disk, and only then `os.replace` puts the file in place. A process
killed mid-write (Ctrl-C, SIGKILL, a full disk) leaves either the old file or the new one, never a
truncated mix, so a rerun can trust what it finds. Temporary files are named
`.<target name>.tmp-<random><suffixes>`: hidden, keeping the target's suffixes (Keras checks them),
and easy to find again for `remove_partial_files`. A write that fails for lack of space (ENOSPC
or a quota, at write, flush, fsync or rename) raises `DiskFullError` naming the file.

This module imports nothing heavier than the standard library (platformdirs on first use).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from transferkit.errors import DiskFullError, InputError

__all__ = [
    "CACHE_DIR_ENV",
    "atomic_path",
    "atomic_write",
    "cache_dir",
    "copy_file",
    "is_partial_file",
    "pause_point",
    "raise_if_disk_full",
    "read_json",
    "remove_partial_files",
    "sha256_file",
    "write_json",
]

#: Environment variable that overrides the cache folder (tests point it at a temporary folder).
CACHE_DIR_ENV = "TRANSFERKIT_CACHE_DIR"

_TEMP_MARK = ".tmp-"
_CHUNK = 1 << 20


def cache_dir(*parts: str) -> Path:
    """A folder inside the transferkit cache, created if needed.

    Args:
        *parts: sub-folders, e.g. `cache_dir("features", "images")`. None: the cache root.

    Returns:
        `$TRANSFERKIT_CACHE_DIR` when set and not empty, else the user cache folder
        (`~/.cache/transferkit` on Linux, from platformdirs), joined with `parts`.
    """
    root = os.environ.get(CACHE_DIR_ENV, "").strip()
    if root:
        path = Path(root).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("transferkit"))
    path = path.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks.

    Raises:
        InputError: the path is missing or is a folder.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; cannot compute its sha256.")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _suffixes(name: str) -> str:
    # Keras insists on `.weights.h5` and `.keras`, so a temporary name keeps every suffix.
    stem = name.lstrip(".")
    return stem[stem.index(".") :] if "." in stem else ""


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary path to write to; it replaces `path` when the block ends without error.

    For writers that take a path (`model.save`, `np.save`, h5py). The temporary path does not
    exist yet, is in `path`'s folder (so the rename is atomic) and keeps its suffixes. On success
    the file is fsynced and renamed onto `path`; if the block raises, it is deleted and an existing
    `path` is left untouched.

    Example:
        >>> with atomic_path("model.keras") as temp:  # doctest: +SKIP
        ...     model.save(temp)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}{_TEMP_MARK}", suffix=_suffixes(path.name)
        )
    except OSError as exc:
        raise_if_disk_full(exc, path)
        raise
    os.close(handle)
    temp = Path(name)
    temp.unlink()  # writers such as h5py want to create the file themselves
    try:
        yield temp
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        pause_point(f"write:{path.name}")
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except Exception as exc:  # noqa: BLE001 (a writer may wrap the OSError in its own error)
        raise_if_disk_full(exc, path)
        raise
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def raise_if_disk_full(error: BaseException, path: str | os.PathLike) -> None:
    """Raises `DiskFullError` for `path` if `error`, or an error it was raised from, says the
    disk (or the quota) is full; else returns. h5py and zipfile do not always keep the errno,
    only its text."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFullError):
            return
        if (isinstance(error, OSError) and error.errno in _DISK_FULL) or (
            "No space left on device" in str(error) or "Disk quota exceeded" in str(error)
        ):
            hint = "free space on that disk"
            root = os.environ.get(CACHE_DIR_ENV, "").strip()
            if root and Path(path).resolve().is_relative_to(Path(root).expanduser().resolve()):
                hint += f", or set {CACHE_DIR_ENV} to a folder on another disk"
            raise DiskFullError(f"no space left on device while writing {path}; {hint}",
                                path=os.fspath(path)) from None
        error = error.__cause__ or error.__context__


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Opens a temporary file that replaces `path` only when the `with` block succeeds.

    Args:
        path: the file to write. Its folder is created if needed.
        mode: `"wb"` (default) or `"w"` for text (UTF-8 unless `encoding` is given).
        **open_kwargs: passed to `open` (for example `newline=""`).

    Yields:
        The open temporary file (see `atomic_path` for what happens after the block).

    Example:
        >>> with atomic_write("scores.txt", "w") as handle:  # doctest: +SKIP
        ...     handle.write("0.97\\n")
    """
    if mode not in ("w", "wb", "wt"):
        # Appending or updating would start from an empty temporary file, not the old content.
        raise ValueError(f"`mode` must be 'wb' or 'w'. Received: mode={mode!r}.")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as temp, open(temp, mode, **open_kwargs) as handle:
        yield handle


def remove_partial_files(folder: str | os.PathLike, older_than_s: float = 0.0) -> int:
    """Deletes the temporary files a killed process left in `folder` (not its sub-folders).

    A process killed by SIGKILL cannot clean up; its half-written temporary file stays beside the
    target (the target itself is intact). Call this where only one process writes, or with
    `older_than_s` so that files other processes are writing right now are spared.

    Args:
        folder: the folder to clean. A missing folder is fine.
        older_than_s: only delete files not modified for this many seconds. Default `0`.

    Returns:
        How many files were deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for path in folder.glob(f".*{_TEMP_MARK}*"):
        try:
            if path.is_file() and now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def is_partial_file(path: str | os.PathLike) -> bool:
    """Whether `path` is named as the temporary files of `atomic_path` are (`.<name>.tmp-...`)."""
    name = os.path.basename(os.fspath(path))
    return name.startswith(".") and _TEMP_MARK in name


def copy_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copies `source` to `target` atomically (`shutil.copyfile` through `atomic_path`)."""
    import shutil

    with atomic_path(target) as temp:
        shutil.copyfile(source, temp)


#: Test-only hook (see `pause_point`): where to stop, and the file to write on stopping.
PAUSE_ENV = "TRANSFERKIT_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "TRANSFERKIT_TEST_PAUSE_FILE"
_PAUSE_COUNTS: dict[str, int] = {}


def pause_point(point: str) -> None:
    """A place where tests can stop the process, to kill it there: does nothing unless
    `$TRANSFERKIT_TEST_PAUSE_AT` is set (never outside tests).

    `TRANSFERKIT_TEST_PAUSE_AT=<pattern>[#<n>]` stops the n-th time (default the first) a point
    matching the glob `pattern` is reached: it writes the point's name to
    `$TRANSFERKIT_TEST_PAUSE_FILE` and sleeps for an hour. Points: `write:<file name>` (the new
    file is complete and fsynced, not yet renamed into place), `epoch:<phase>:<n>` (epoch `n`
    of a phase begins; the epochs before are saved), `phase:<phase>` (a phase is about to start).
    """
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    pattern, _, count = wanted.partition("#")
    if not fnmatch.fnmatchcase(point, pattern):
        return
    _PAUSE_COUNTS[pattern] = seen = _PAUSE_COUNTS.get(pattern, 0) + 1
    if seen != int(count or 1):
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        Path(marker).write_text(point, encoding="utf-8")
    time.sleep(3600)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes `data` as indented JSON, atomically. Values JSON cannot hold are written as `str`."""
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n"
    with atomic_write(path, "w") as handle:
        handle.write(text)


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file (as `write_json` writes them)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
