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
```
"""

from __future__ import annotations

import csv
import datetime
import os
from pathlib import Path
from typing import Any

from transferkit.errors import InputError
from transferkit.files import read_json, write_json

__all__ = ["RunDirectory", "default_run_dir", "read_history_csv"]


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
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {key: _parse_value(key, value) for key, value in row.items() if key is not None}
            for row in csv.DictReader(handle)
        ]


class RunDirectory:
    """The folder of one training run (created if missing).

    Args:
        path: the run folder, e.g. `default_run_dir("images")`.

    Attributes:
        path: the folder.
        report_dir: `path/"report"`: metrics, plots and summaries.
        checkpoint_dir: `path/"checkpoints"`: weights saved after every epoch.
        log_dir: `path/"logs"`: TensorBoard logs, one sub-folder per phase.
        model_path: `path/"model.keras"`: the final model.
        config_path: `path/"config.json"`.
        state_path: `path/"state.json"`.
        history_path: `path/"history.csv"`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(
                f"{self.path}: is a file, expected a run folder. Pass a folder path (it is created "
                "if missing)."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.report_dir = self.path / "report"
        self.checkpoint_dir = self.path / "checkpoints"
        self.log_dir = self.path / "logs"
        self.model_path = self.path / "model.keras"
        self.config_path = self.path / "config.json"
        self.state_path = self.path / "state.json"
        self.history_path = self.path / "history.csv"

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

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
            return read_json(self.config_path)
        except ValueError as exc:
            raise InputError(
                f"{self.config_path}: not valid JSON ({exc}). Fix or delete the file."
            ) from None

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

    def history_rows(self) -> list[dict]:
        """Every row of `history.csv` (one per finished epoch, all phases); `[]` before any."""
        return read_history_csv(self.history_path)
