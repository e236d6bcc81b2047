"""`transferkit preview-augmentation`."""

from __future__ import annotations

from PIL import Image

from transferkit.cli import main


def test_preview_augmentation(faces, tmp_path, capsys):
    code = main(["preview-augmentation", str(faces), "--output", str(tmp_path / "grid.png"),
                 "--image-size", "64"])
    out = capsys.readouterr().out
    assert code == 0 and "12 panels" in out and "face_000.png" in out
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size[0] > grid.size[1]
