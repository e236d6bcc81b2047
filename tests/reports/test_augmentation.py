"""The augmentation preview grid."""

from __future__ import annotations

import pytest
from PIL import Image

from helpers import photo
from transferkit.errors import InputError
from transferkit.reports.augmentation import preview_augmentation


def test_preview_writes_a_grid_of_twelve(tmp_path):
    source = tmp_path / "photo.jpg"
    Image.fromarray(photo(90, 120)).save(source)
    out = preview_augmentation(source, tmp_path / "grid.png", "flip,rotate,zoom", image_size=48)
    with Image.open(out) as grid:
        width, height = grid.size
    assert width > height > 0  # 4 columns, 3 rows
    with pytest.raises(InputError, match=r"`count` must be an int >= 1"):
        preview_augmentation(source, tmp_path / "x.png", image_size=48, count=0)
