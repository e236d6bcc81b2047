"""The image part of `transferkit demo`: the bundled faces as class folders (the whole demo, run
as a user runs it: `tests/commands/test_demo.py`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from transferkit.demos.images import write_lfw_subset


def test_lfw_subset_becomes_class_folders(tmp_path):
    folder = write_lfw_subset(tmp_path / "faces")
    faces = sorted((folder / "face").glob("*.png"))
    others = sorted((folder / "not_face").glob("*.png"))
    assert len(faces) == len(others) == 100
    with Image.open(faces[0]) as image:
        assert image.size == (25, 25) and image.mode == "L"
        pixels = np.asarray(image)
    assert pixels.std() > 10  # a real picture, not a blank
    stamp = faces[0].stat().st_mtime_ns
    write_lfw_subset(tmp_path / "faces")  # idempotent: existing files are kept
    assert faces[0].stat().st_mtime_ns == stamp
