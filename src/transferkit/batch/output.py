"""A job's output: a Parquet dataset folder written one atomic piece at a time, so it resumes.

`OUTPUT` (`predictions.parquet/`) is a folder, as Spark and Ray Data write them, that pandas,
pyarrow, Polars, DuckDB and Ray read as one table (`pandas.read_parquet("predictions.parquet")`):

    part-0000000000.parquet    rows of inputs 0.. (the number is the piece's first input)
    part-0000001024.parquet
    _transferkit.json          the job: command, model, inputs (count and sha256), columns

Each piece is written to a hidden temporary file and renamed into place (`transferkit.files`),
so a killed job leaves whole pieces only; readers skip hidden and `_` files. A rerun with the
same `OUTPUT`, model and inputs reads the `index` column of the pieces and runs the inputs no
piece holds; any other job's folder is refused rather than mixed into.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from transferkit.errors import InputError
from transferkit.files import atomic_path, read_json, remove_partial_files, write_json

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

    def open(self) -> set[int]:
        """Checks the folder belongs to this job (or is new), writes the manifest, and returns
        the indices of the inputs already done."""
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(
                f"{self.folder}: is a file; the output is a folder of Parquet pieces. Pass a new "
                "name such as predictions.parquet (a folder is made), or remove the file."
            )
        manifest = self.folder / MANIFEST
        pieces = self.pieces()
        if manifest.is_file():
            self._check_same_job(read_json(manifest))
        elif self.folder.is_dir() and any(self.folder.iterdir()):
            raise InputError(
                f"{self.folder}: this folder is not empty and was not written by transferkit "
                "predict or embed. Pass a new --output folder."
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_partial_files(self.folder)  # temporary files of a killed run
        if not manifest.is_file():
            write_json(manifest, self.job)
        return self.done(pieces)

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

    def done(self, pieces: list[Path] | None = None) -> set[int]:
        """The input indices held by the pieces written so far."""
        import pyarrow.parquet as pq

        done: set[int] = set()
        for piece in self.pieces() if pieces is None else pieces:
            done.update(pq.read_table(piece, columns=["index"]).column("index").to_pylist())
        return done

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
