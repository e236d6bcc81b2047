"""`transferkit train images`, `preview-augmentation`, and the image side of `predict`/`evaluate`,
run as a user runs them; killing a run and resuming it; the real cats-and-dogs data (slow)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data
from transferkit.cli import main

JSON_KEYS = {
    "classes", "head_validation_accuracy", "validation_accuracy", "fine_tune_validation_accuracy",
    "model_path", "report_dir", "seconds", "skipped_files",
}
REPORT_FILES = {
    "curves.png", "confusion_matrix.png", "mistakes.png", "augmentation.png", "metrics.json",
    "summary.txt", "config.json", "history.csv", "skipped_files.json", "duplicates.json",
}


def _write_faces(folder: Path, per_class: int) -> Path:
    import skimage.data

    images = skimage.data.lfw_subset()
    for label, offset in (("face", 0), ("not_face", 100)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (images[offset + i] * 255).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / label / f"{label}_{i:03d}.png")
    return folder


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return _write_faces(tmp_path_factory.mktemp("faces") / "data", per_class=12)


@pytest.fixture(scope="module")
def trained_run(faces, tmp_path_factory):
    """One short `train images --json` run (head + one fine-tune epoch), shared by the tests."""
    run = tmp_path_factory.mktemp("runs") / "run"
    data = _write_faces(tmp_path_factory.mktemp("with_notes") / "data", per_class=12)
    (data / "face" / "notes.txt").write_text("not an image")
    argv = [
        "train", "images", data, "--image-size", "64", "--epochs", "4", "--fine-tune-epochs", "1",
        "--unfreeze", "5", "--augment", "flip,zoom", "--augment-views", "1", "--output", run, "--json",
    ]
    code = main([str(a) for a in argv])
    return code, run


def test_train_images_json_and_report(trained_run, capsys):
    code, run = trained_run
    assert code == 0
    history = _history(run)
    assert [r["phase"] for r in history] == ["head"] * 4 + ["fine_tune"]
    result = json.loads((run / "report" / "metrics.json").read_text())
    assert result["n"] == 4 and set(result["per_class"]) == {"face", "not_face"}
    assert REPORT_FILES <= {p.name for p in (run / "report").iterdir()}
    assert (run / "model.keras").is_file() and (run / "logs" / "head").is_dir()
    config = json.loads((run / "config.json").read_text())
    assert config["unfreeze"] == "5" and config["augment"] == "flip,zoom"
    assert config["data"]["skipped_files"] == 1
    skipped = json.loads((run / "report" / "skipped_files.json").read_text())
    assert [Path(s["path"]).name for s in skipped] == ["notes.txt"]
    with Image.open(run / "report" / "curves.png") as image:
        assert image.size[0] > 400


def test_train_images_prints_json_last(faces, tmp_path, capsys):
    code, out, err = _run(
        ["train", "images", faces, "--image-size", "64", "--epochs", "2", "--fine-tune-epochs", "0",
         "--augment", "none", "--output", tmp_path / "run", "--json"],
        capsys,
    )
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert JSON_KEYS <= set(result)
    assert result["classes"] == ["face", "not_face"]
    assert result["fine_tune_validation_accuracy"] is None
    assert result["validation_accuracy"] == result["head_validation_accuracy"]
    assert Path(result["model_path"]).is_file() and Path(result["report_dir"]).is_dir()
    assert result["skipped_files"] == 0 and result["seconds"] > 0
    assert "accuracy:" in err and "Report:" in err  # the summary goes to stderr with --json


def test_config_file_and_flags(faces, tmp_path, capsys):
    (tmp_path / "c.toml").write_text('epochs = 1\nfine-tune-epochs = 0\naugment = "none"\n'
                                     'image_size = 48\nseed = 5\n')
    code, out, _ = _run(
        ["train", "images", faces, "--config", tmp_path / "c.toml", "--seed", "7",
         "--output", tmp_path / "run"],
        capsys,
    )
    assert code == 0 and "Report:" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["epochs"] == 1 and config["image_size"] == [48, 48] and config["seed"] == 7
    (tmp_path / "bad.toml").write_text("epoch = 3\n")
    code, _, err = _run(["train", "images", faces, "--config", tmp_path / "bad.toml"], capsys)
    assert code == 1 and "unknown option(s) epoch" in err


def test_clear_errors(tmp_path, capsys):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "data" / "a" / "x.png")
    code, _, err = _run(["train", "images", tmp_path / "data"], capsys)
    assert code == 1
    assert err.startswith("transferkit: error: Empty class folder:") and err.count("\n") == 1
    code, _, err = _run(["train", "images", tmp_path / "data", "--unfreeze", "0"], capsys)
    assert code == 1 and "`unfreeze` as a number of top layers must be >= 1" in err
    code, _, err = _run(["train", "images", tmp_path / "nope"], capsys)
    assert code == 1 and "nope: no such folder" in err
    code, _, err = _run(["train", "images"], capsys)
    assert code == 1 and "Pass the data folder (DATA_DIR), or --resume RUN_DIR" in err
    code, _, err = _run(["train", "images", tmp_path / "data", "--augment", "blur"], capsys)
    assert code == 1 and "Unknown augmentation 'blur'" in err


def test_preview_augmentation(faces, tmp_path, capsys):
    code, out, _ = _run(
        ["preview-augmentation", faces, "--output", tmp_path / "grid.png", "--image-size", "64"],
        capsys,
    )
    assert code == 0 and "12 panels" in out and "face_000.png" in out
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size[0] > grid.size[1]


def test_predict_and_evaluate_commands(trained_run, faces, capsys):
    _, run = trained_run
    images = [faces / "face" / "face_000.png", faces / "not_face" / "not_face_001.png"]
    code, out, _ = _run(["predict", run / "model.keras", *images, "--json"], capsys)
    assert code == 0
    results = json.loads(out.strip().splitlines()[-1])
    assert [r["path"] for r in results] == [str(p) for p in images]
    assert all(r["label"] in ("face", "not_face") and 0.5 <= r["probability"] <= 1 for r in results)
    code, out, _ = _run(["evaluate", run, faces, "--json"], capsys)
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["n"] == 24 and metrics["classes"] == ["face", "not_face"]
    assert 0 <= metrics["accuracy"] <= 1


def test_predict_in_a_fresh_process(trained_run, faces):
    """`transferkit.load` must find transferkit's layers without the test having imported them."""
    _, run = trained_run
    result = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "predict", str(run / "model.keras"),
         str(faces / "face" / "face_002.png"), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (prediction,) = json.loads(result.stdout.strip().splitlines()[-1])
    assert prediction["label"] in ("face", "not_face")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_from_the_last_finished_epoch(faces, tmp_path, stop):
    run = tmp_path / "run"
    base = [sys.executable, "-m", "transferkit.cli", "train", "images"]
    options = ["--image-size", "64", "--epochs", "2", "--fine-tune-epochs", "6",
               "--fine-tune-patience", "50", "--unfreeze", "20", "--augment", "none"]
    process = subprocess.Popen(
        base + [str(faces), "--output", str(run), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 400
    done = 0
    while time.time() < deadline and process.poll() is None:
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
        done = (state.get("fine_tune") or {}).get("epochs_done", 0)
        if done >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(stop)
    process.wait(timeout=120)
    assert process.returncode != 0
    before = _history(run)
    finished = [r for r in before if r["phase"] == "fine_tune"]
    assert 2 <= len(finished) < 6
    assert not (run / "model.keras").exists()

    result = subprocess.run(
        base + ["--resume", str(run), "--json"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stderr
    after = _history(run)
    assert [r["phase"] for r in after] == ["head"] * 2 + ["fine_tune"] * 6
    assert after[: len(before)] == before  # finished epochs kept, not trained again
    assert json.loads(result.stdout.strip().splitlines()[-1])["fine_tune_validation_accuracy"] is not None


@pytest.mark.slow
def test_cats_and_dogs_head_on_real_data(tmp_path, capsys):
    """The real thing: EfficientNet-Lite0 at 224 on 2000 + 1000 photos, head only."""
    data = shared_data("cats_and_dogs")
    code, out, _ = _run(
        ["train", "images", data, "--fine-tune-epochs", "0", "--augment", "none",
         "--output", tmp_path / "run", "--json"],
        capsys,
    )
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["classes"] == ["cats", "dogs"] and result["validation_images"] == 1000
    assert result["head_validation_accuracy"] >= 0.96
    assert result["skipped_files"] == 0
    if os.environ.get("TRANSFERKIT_CACHE_DIR"):
        cached = list(Path(os.environ["TRANSFERKIT_CACHE_DIR"]).glob("images/*.npy"))
        assert len(cached) >= 3000


def test_every_training_option_has_a_flag():
    from transferkit.commands.images import _TRAIN_OPTIONS
    from transferkit.tasks.image_classifier import TRAIN_DEFAULTS

    assert sorted(_TRAIN_OPTIONS) == sorted(TRAIN_DEFAULTS)
