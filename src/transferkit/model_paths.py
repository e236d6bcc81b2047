"""Where a model is: a `.keras` file, a run folder, or a model in MLflow. Imports no Keras, so
that a command that only hands a model on (a Ray driver) starts fast."""

from __future__ import annotations

import os
from pathlib import Path

from transferkit.errors import InputError

__all__ = ["model_file"]


def model_file(path: str | os.PathLike) -> Path:
    """The `.keras` file at `path`, in the run folder `path`, or of a model in MLflow
    (`transferkit.tracking.store.model_file`). Raises InputError if none."""
    from transferkit.tracking import store

    if store.is_model_uri(path):
        return store.model_file(path)
    path = Path(path)
    if path.is_dir() and (path / "model.keras").is_file():
        path = path / "model.keras"  # a run directory
    if not path.is_file():
        raise InputError(
            f"{path}: no such model file. Pass the `.keras` file (or the run folder) written by "
            "`transferkit train`, or a registered model as models:/NAME@ALIAS."
        )
    return path
