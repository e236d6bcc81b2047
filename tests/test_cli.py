"""The foundation commands, run as a user runs them: exit codes, one-line errors, JSON shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_backbones_table_and_json(capsys):
    code, out, _ = _run(["backbones", "--json"], capsys)
    assert code == 0
    rows = json.loads(out.strip().splitlines()[-1])
    names = {row["name"] for row in rows}
    assert {"efficientnet_lite0", "mobilenet_v2", "xception"} <= names
    lite0 = next(row for row in rows if row["name"] == "efficientnet_lite0")
    assert lite0["available_offline"] is True and lite0["feature_dim"] == 1280
    code, out, _ = _run(["backbones", "efficientnet_lite*"], capsys)
    assert code == 0 and "efficientnet_lite0" in out and "available offline" in out
    assert "mobilenet_v2" not in out


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
    assert code == 1 and "`top` must be an int between 1 and 1000. Received: top=0." in err


def test_subprocess_error_has_no_traceback_and_debug_has_one(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "transferkit.cli", "predict-imagenet", str(tmp_path / "no.jpg")]
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 1
    assert "no.jpg: no such file" in quiet.stderr and "Traceback" not in quiet.stderr
    loud = subprocess.run(command[:3] + ["--debug"] + command[3:], capture_output=True, text=True, env=env, timeout=300)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "ImageReadError" in loud.stderr


def test_no_command_prints_help(capsys):
    code, out, _ = _run([], capsys)
    assert code == 2 and "predict-imagenet" in out


def test_imagenet_class_names_are_distinct_and_readable():
    from transferkit.imagenet import imagenet_class_names

    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[282] == "tiger cat" and names[967] == "espresso"
    assert names[134] != names[517]  # the bird and the machine are both "crane" in WordNet
