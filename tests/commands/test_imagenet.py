"""`transferkit predict-imagenet`, run as a user runs it: JSON shapes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from transferkit.demos.photos import sample_photos

    return sample_photos(tmp_path_factory.mktemp("photos"))


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_imagenet_json(photos, capsys):
    code, out, _ = _run(["predict-imagenet", *map(str, photos), "--top", "2", "--json"], capsys)
    assert code == 0
    results = json.loads(out.strip().splitlines()[-1])
    assert [r["path"] for r in results] == [str(p) for p in photos]
    for result in results:
        assert len(result["top"]) == 2
        first, second = result["top"]
        assert set(first) == {"index", "label", "probability"}
        assert first["probability"] >= second["probability"]
        assert isinstance(first["index"], int) and isinstance(first["label"], str)
    by_name = {Path(r["path"]).name: r["top"][0] for r in results}
    # Chelsea the cat is a tabby (281), tiger cat (282) or Egyptian cat (285) to any sane model.
    assert by_name["cat.jpg"]["index"] in {281, 282, 283, 284, 285}
    assert "espresso" in by_name["coffee.jpg"]["label"] or "cup" in by_name["coffee.jpg"]["label"]


def test_predict_imagenet_text_output(photos, capsys):
    code, out, _ = _run(["predict-imagenet", str(photos[0])], capsys)
    assert code == 0 and "1." in out and "3." in out and "%" in out


@pytest.mark.parametrize(
    "make_path, message",
    [
        (lambda d: d / "missing.jpg", r"missing\.jpg: no such file\. Check the path"),
        (lambda d: d, r"is a folder, expected an image file"),
        (lambda d: (d / "x.jpg").write_text("text") and d / "x.jpg", r"x\.jpg: not an image"),
    ],
)
def test_predict_imagenet_bad_paths(tmp_path, capsys, make_path, message):
    import re

    path = make_path(tmp_path)
    code, out, err = _run(["predict-imagenet", str(path)], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("transferkit: error: ")
    assert re.search(message, lines[0])
    assert "Traceback" not in err


def test_unknown_backbone_suggests_names(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    code, _, err = _run(["predict-imagenet", str(tmp_path / "a.png"), "--backbone", "efficientnet_lite"], capsys)
    assert code == 1
    assert "Unknown backbone 'efficientnet_lite'. Did you mean: efficientnet_lite0" in err


def test_bad_top(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    code, _, err = _run(["predict-imagenet", str(tmp_path / "a.png"), "--top", "0"], capsys)
    assert code == 1 and "--top must be an int between 1 and 1000. Received: top=0." in err
