"""A job's output: a Parquet dataset folder written one atomic piece at a time, so it resumes.

`OUTPUT` (`predictions.parquet/`) is a folder, as Spark and Ray Data write them, that pandas,
pyarrow, Polars, DuckDB and Ray read as one table (`pandas.read_parquet("predictions.parquet")`):

    part-0000000000.parquet    rows of inputs 0.. (the number is the piece's first input)
    part-0000001024.parquet
    _transferkit.json          the job: command, model, inputs (count and sha256), columns

Each piece is written to a hidden temporary file and renamed into place (`transferkit.files`),
so a killed job leaves whole pieces only; readers skip hidden and `_` files. One job writes the
folder at a time: it holds `.lock` as a run folder's writer does (`transferkit.run_folder.
RunLock`), so a second job on the same `OUTPUT` is refused naming the first one's process, and
the lock of a killed job is taken over with a line. A rerun with the same `OUTPUT`, model and
inputs reads the `index` and `sha256` columns of the pieces and keeps the rows whose input still
has the content they were computed from (`keep`): an input changed under its path (or two files
whose names were swapped) is computed again, its old row taken out of its piece first. Any
other job's folder is refused rather than mixed into.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transferkit.errors import InputError
from transferkit.files import (
    atomic_path,
    is_partial_file,
    read_json,
    remove_partial_files,
    write_json,
)
from transferkit.run_folder import LOCK_NAME, RunLock

__all__ = ["MANIFEST", "ShardedParquet", "read_output"]

MANIFEST = "_transferkit.json"
_PIECE = "part-{:010d}-{}.parquet"


class ShardedParquet:
    """The output folder of one job (see the module docstring).

    Args:
        folder: the `--output` folder; created if missing.
        job: what identifies the job: the command, model and inputs digest (a rerun must match).
    """

    def __init__(self, folder: str | os.PathLike, job: dict | None = None):
        self.folder = Path(folder)
        self.job = job
        self._lock: RunLock | None = None

    def open(self, log: Callable[[str], None] = print) -> None:
        """Checks the folder belongs to this job (or is new), takes its lock, and writes the
        manifest. `release` lets go of the lock.

        Args:
            log: called with the line saying the lock of a killed job was taken over.

        Raises:
            InputError: the folder is a file, holds another job's output or files that are not
                transferkit's, or another live process is writing it (its id and start time).
        """
        self._check_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock(self.folder, log=log)
        try:
            self._check_folder()  # again, holding the lock: another job may have begun meanwhile
            remove_partial_files(self.folder)  # temporary files of a killed job
            if not (self.folder / MANIFEST).is_file():
                write_json(self.folder / MANIFEST, self.job)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Lets go of the folder's lock (once; later calls do nothing)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _check_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(
                f"{self.folder}: is a file; the output is a folder of Parquet pieces. Pass a new "
                "name such as predictions.parquet (a folder is made), or remove the file."
            )
        manifest = self.folder / MANIFEST
        if manifest.is_file():
            self._check_same_job(read_json(manifest))
        elif self.folder.is_dir() and any(
            p.name != LOCK_NAME and not is_partial_file(p) for p in self.folder.iterdir()
        ):  # a lock or a half-written manifest of a killed job is no one else's
            raise InputError(
                f"{self.folder}: this folder is not empty and was not written by transferkit "
                "predict or embed. Pass a new --output folder."
            )

    def _check_same_job(self, found: dict) -> None:
        differs = [key for key in ("command", "model_sha256", "inputs", "inputs_sha256")
                   if found.get(key) != self.job.get(key)]
        if differs:
            what = {"command": "another command", "model_sha256": "another model",
                    "inputs": "other inputs", "inputs_sha256": "other inputs"}
            raise InputError(
                f"{self.folder}: holds the output of {what[differs[0]]} "
                f"({found.get('command')} {found.get('model')} on {found.get('source')}); a "
                "rerun continues only the same job. Pass a new --output folder, or delete this "
                "one to start again."
            )

    def pieces(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("part-*.parquet") if p.is_file())

    def keep(self, digests: Callable[[list[int]], list[str]]) -> tuple[set[int], int]:
        """Keeps the rows whose input has not changed, and takes the others out of the pieces.

        A row is kept when its `sha256` equals `digests([its index])`: the content of its input
        now. The rows of a changed input, rows without a `sha256` (written before rows had one:
        they cannot be checked), and a second row of the same input (two jobs at once, before
        the lock) are removed: each piece holding some is rewritten without them (atomically,
        under its own name) or deleted, before anything is computed again, so a killed rerun
        leaves missing rows (computed by the next), never stale ones.

        Returns:
            `(indices kept, how many inputs had rows that were taken out)`.
        """
        import pyarrow.parquet as pq

        found = []
        for piece in self.pieces():
            names = pq.read_schema(piece).names
            table = pq.read_table(piece, columns=["index"] + (["sha256"] * ("sha256" in names)))
            index = table.column("index").to_pylist()
            shas = (table.column("sha256").to_pylist() if "sha256" in names
                    else [None] * len(index))
            found.append((piece, index, shas))
        seen = sorted({i for _, index, _ in found for i in index})
        now = dict(zip(seen, digests(seen))) if seen else {}
        kept: set[int] = set()
        for piece, index, shas in found:
            drop = []
            for position, (i, sha) in enumerate(zip(index, shas)):
                if sha is None or sha != now[i] or i in kept:
                    drop.append(position)
                else:
                    kept.add(i)
            if drop:
                self._without(piece, drop, len(index))
        return kept, len(set(seen) - kept)

    def _without(self, piece: Path, drop: list[int], rows: int) -> None:
        """Rewrites `piece` without the rows at positions `drop` (deletes it if none is left)."""
        import pyarrow.parquet as pq

        if len(drop) == rows:
            piece.unlink()
            return
        mask = np.ones(rows, dtype=bool)
        mask[drop] = False
        table = pq.read_table(piece).filter(mask)
        with atomic_path(piece) as temporary:
            pq.write_table(table, temporary)

    def write(self, table) -> Path:
        """Writes one piece (a `pyarrow.Table` with an `index` column) atomically."""
        import pyarrow.parquet as pq

        first = int(np.min(table.column("index").to_numpy())) if table.num_rows else 0
        path = self.folder / _PIECE.format(first, uuid.uuid4().hex[:8])
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        return path


def read_output(folder: str | os.PathLike):
    """The whole output of a job as a pandas DataFrame, in input order."""
    import pandas as pd

    pieces = ShardedParquet(folder).pieces()
    if not pieces:
        raise InputError(f"{folder}: no Parquet pieces here.")
    frame = pd.concat([pd.read_parquet(p) for p in pieces], ignore_index=True)
    return frame.sort_values("index", kind="stable").reset_index(drop=True)
