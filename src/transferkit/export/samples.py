"""The inputs an export is calibrated (`int8`) and verified on: a seeded sample of the run's
training data by default, or of data the user names. Their description (in `export.json`) names
the folder or table, not where it is on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transferkit.errors import InputError
from transferkit.files import read_json

__all__ = ["sample_inputs"]

_SEED = 0  # the same sample on every export of a run


def sample_inputs(classifier, calibration, model_path: Path | None,
                  samples: int) -> tuple[list | None, str | None]:
    """`(items, description)`: up to `samples` image paths or texts, or `(None, None)` when the
    model has no run data and `calibration` is None.

    Args:
        calibration: an image folder (its training split, or every image under it), a table of
            texts, or a list of image paths or texts; `None`: the run's training data, read from
            `report/data.json` beside `model_path`.
    """
    if calibration is None:
        run_data = _run_data(classifier, model_path)
        if run_data is None:
            return None, None
        items, source = _images(*run_data) if classifier.task == "image" else _texts(*run_data)
    elif isinstance(calibration, (list, tuple)):
        items, source = list(calibration), f"{len(calibration)} given inputs"
    elif classifier.task == "image":
        items, source = _images(Path(calibration))
    else:
        items, source = _texts(calibration)
    if not items:
        raise InputError(f"No calibration inputs found in {calibration}.")
    if len(items) > samples:
        chosen = np.random.default_rng(_SEED).choice(len(items), samples, replace=False)
        items = [items[i] for i in sorted(chosen)]
    return items, f"{len(items)} inputs sampled (seed {_SEED}) from {source}"


def _run_data(classifier, model_path):
    """The run's training data (`(image folder, validation_size, seed)`, or `(table, text
    column)`), or None."""
    if model_path is None:
        return None
    from transferkit.run_folder import RunFolder

    data_json = RunFolder(Path(model_path).parent).data_path
    if not data_json.is_file():
        return None
    data = read_json(data_json)
    if classifier.task == "image":
        root = data.get("root")
        if not (root and Path(root).is_dir()):
            return None
        return Path(root), data.get("validation_size"), data.get("seed")
    table = data.get("path")
    return (table, data.get("text_column")) if table and Path(table).is_file() else None


def _images(root: Path, validation_size: float | None = None, seed: int | None = None):
    from transferkit.data.image_folder import discover_image_folder
    from transferkit.data.images import IMAGE_EXTENSIONS

    if not root.is_dir():
        raise InputError(f"{root}: calibration images must be a folder of images.")
    try:
        split = {k: v for k, v in (("validation_size", validation_size), ("seed", seed))
                 if v is not None}  # the run's own split, so that these are its training images
        folder = discover_image_folder(root, **split)
        return list(folder.train_paths), f"the training images of {root.name}/"
    except InputError:  # not class folders: any images under it
        paths = sorted(os.fspath(p) for p in root.rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS)
        return paths, f"the images under {root.name}/"


def _texts(table, column: str | None = None):
    from transferkit.data.text import read_text_table

    texts = read_text_table(table, text_column=column, require_labels=False).texts
    return list(texts), f"the texts of {Path(table).name}"
