"""The image part of `transferkit demo`: real bundled data, the whole pipeline, offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.demos.images import DEMO_OPTIONS, run, write_lfw_subset


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


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path):
    lines = []
    result = run(tmp_path, log=lines.append)
    assert result["classes"] == ["face", "not_face"]
    assert result["head_validation_accuracy"] >= 0.9 and result["validation_accuracy"] >= 0.9
    assert result["fine_tune_validation_accuracy"] == result["validation_accuracy"]
    report = Path(result["report_dir"])
    for name in ("curves.png", "confusion_matrix.png", "mistakes.png", "augmentation.png",
                 "metrics.json", "summary.txt"):
        assert (report / name).is_file(), name
    config = json.loads((Path(result["run_dir"]) / "config.json").read_text())
    assert config["fine_tune_epochs"] == DEMO_OPTIONS["fine_tune_epochs"]
    assert any(line.startswith("Report: ") for line in lines)
