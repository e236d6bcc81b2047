"""README's first command: `transferkit demo` runs every part offline and says where the reports are.

Run as a user runs it (a fresh process, the installed console entry point's module), so that what
README.md promises is checked, not just the parts one by one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transferkit.demos.images import DEMO_OPTIONS


def _demo(tmp_path) -> tuple[Path, str, dict, dict]:
    """`(folder it ran in, what it printed, its summary, environment)`: the `make demo` that CI
    ran first on the base install (`.ci/run` names its folder and log: the same command, run
    once), else `transferkit demo --json` run here."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ran = os.environ.get("TRANSFERKIT_DEMO_RAN")
    if ran:
        folder = Path(ran)
        printed = Path(os.environ["TRANSFERKIT_DEMO_LOG"]).read_text()
        summary = json.loads((folder / "demo_output" / "summary.json").read_text())
        return folder, printed, summary, env
    output = tmp_path / "demo_output"
    result = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "demo", "--output", str(output), "--json"],
        capture_output=True, text=True, timeout=1500, check=False, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads((output / "summary.json").read_text()) == summary
    return tmp_path, result.stdout, summary, env


@pytest.mark.slow
def test_demo_command_predicts_and_trains_offline(tmp_path):
    folder, printed, summary, env = _demo(tmp_path)
    assert set(summary) == {"imagenet", "images", "text"}

    best = {
        Path(p["path"]).name: p["top"][0]["label"].lower() for p in summary["imagenet"]["predictions"]
    }
    assert "cat" in best["cat.jpg"], best
    assert any(word in best["coffee.jpg"] for word in ("espresso", "cup", "coffee")), best

    # The image part: the whole pipeline (head, fine-tuning, reports) on the bundled faces.
    images = summary["images"]
    assert images["classes"] == ["face", "not_face"]
    assert images["head_validation_accuracy"] >= 0.9 and images["validation_accuracy"] >= 0.9
    assert images["fine_tune_validation_accuracy"] == images["validation_accuracy"]
    image_report = folder / images["report_dir"]  # relative to where the demo ran
    for name in ("curves.png", "confusion_matrix.png", "mistakes.png", "augmentation.png",
                 "metrics.json", "summary.txt"):
        assert (image_report / name).is_file(), name
    assert (folder / images["model_path"]).is_file()
    config = json.loads((folder / images["run_dir"] / "config.json").read_text())
    assert config["fine_tune_epochs"] == DEMO_OPTIONS["fine_tune_epochs"]

    # The text part: the packaged Rotten Tomatoes reviews, MiniLM frozen.
    text = summary["text"]
    assert text["rows"] == 4866 and text["classes"] == ["fresh", "rotten"]
    assert text["test_accuracy"] >= 0.7  # a frozen MiniLM head; about 0.76 measured
    assert [example["label"] for example in text["examples"]][:2] == ["fresh", "rotten"]
    assert (folder / text["report_dir"] / "metrics.json").is_file()
    assert text["model_path"].endswith("model.keras")
    assert (folder / text["model_path"]).is_file()

    # The printed text tells the user where to look.
    assert f"Report: {images['report_dir']}" in printed
    assert f"Report: {text['report_dir']}" in printed

    # Both runs are in the embedded MLflow store of the working folder: `transferkit runs` there
    # lists them (README: `mlflow ui` shows the same store).
    assert (folder / "mlflow.db").is_file()
    listed = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "runs", "--json"], capture_output=True,
        text=True, timeout=300, check=True, cwd=folder, env=env,
    )
    runs = json.loads(listed.stdout.strip().splitlines()[-1])
    assert sorted(r["task"] for r in runs) == ["images", "text"]
    assert {r["run_id"] for r in runs} == {images["tracking"]["run_id"], text["tracking"]["run_id"]}
