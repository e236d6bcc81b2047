"""`train_images` end to end: an interrupted run resumes to the same epochs (slow), and the real
cats-and-dogs photos (slow, from ../shared/data)."""

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

from transferkit.testing import TINY_BACKBONE


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_interrupted_run_resumes_from_the_last_finished_epoch(faces, tmp_path):
    """Ctrl-C (SIGINT) in the third fine-tuning epoch: a line that says how to go on, the two
    finished epochs kept, and `--resume` trains the rest in the same MLflow run. On the tiny
    `test_cnn` backbone, stopped at the test-only pause point where the epoch begins (its epochs
    take milliseconds; SIGKILL: tests/corpus/test_killed_runs.py)."""
    run, marker = tmp_path / "run", tmp_path / "paused"
    base = [sys.executable, "-m", "transferkit.cli", "train", "images"]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the MLflow run must continue too
    options = ["--backbone", TINY_BACKBONE, "--image-size", "64", "--epochs", "2",
               "--fine-tune-epochs", "6", "--fine-tune-patience", "50", "--unfreeze", "all",
               "--augment", "none", "--track", store]
    env = dict(os.environ, TRANSFERKIT_TEST_PAUSE_AT="epoch:fine_tune:3",
               TRANSFERKIT_TEST_PAUSE_FILE=str(marker))
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(base + [str(faces), "--output", str(run), *options],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        deadline = time.monotonic() + 400
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None and marker.exists(), "the run never reached the pause"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    assert process.returncode != 0
    assert (tmp_path / "stderr.txt").read_text().strip().splitlines()[-1] == (
        "transferkit: interrupted; the finished epochs are saved. Continue with: "
        f"transferkit train images --resume {run}"
    )
    before = _history(run)
    assert [r["phase"] for r in before] == ["head"] * 2 + ["fine_tune"] * 2
    assert not (run / "model.keras").exists()

    result = subprocess.run(
        base + ["--resume", str(run), "--json"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stderr
    after = _history(run)
    assert [r["phase"] for r in after] == ["head"] * 2 + ["fine_tune"] * 6
    assert after[: len(before)] == before  # finished epochs kept, not trained again
    result = json.loads(result.stdout.strip().splitlines()[-1])
    assert result["fine_tune_validation_accuracy"] == result["validation_accuracy"]
    _check_one_mlflow_run(store, result, after)


def _check_one_mlflow_run(store: str, result: dict, rows: list[dict]) -> None:
    """The resumed run went on in the same MLflow run: every epoch logged once, at its global
    step, with the value history.csv has."""
    mlflow = pytest.importorskip("mlflow", reason="the tracking extra is not installed")
    client = mlflow.MlflowClient(store)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == result["tracking"]["run_id"] and run.info.status == "FINISHED"
    for key in ("loss", "val_loss"):
        logged = sorted(
            (m.step, m.value) for phase in ("head", "fine_tune")
            for m in client.get_metric_history(run.info.run_id, f"{phase}/{key}")
        )
        assert [step for step, _ in logged] == list(range(1, len(rows) + 1))
        np.testing.assert_allclose([v for _, v in logged], [float(r[key]) for r in rows],
                                   rtol=1e-6)


@pytest.mark.slow
def test_cats_and_dogs_head_on_real_data(cats_dogs_run):
    """The real thing: EfficientNet-Lite0 at 224 on 2000 + 1000 photos, head only (the run is
    shared with the export checks)."""
    result = cats_dogs_run[0]
    assert result["classes"] == ["cats", "dogs"] and result["validation_images"] == 1000
    assert result["head_validation_accuracy"] >= 0.96
    assert result["skipped_files"] == 0
    assert result["cached_feature_files"] >= 3000
