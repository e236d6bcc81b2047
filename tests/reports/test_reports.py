"""`write_classification_report`: every file of a report, from one call."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import HISTORY, one_hot_probabilities, png_size
from transferkit.reports import summary_text, write_classification_report


def test_write_classification_report_writes_every_file(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 80)
    y_pred = np.where(rng.random(80) < 0.75, y_true, rng.integers(0, 4, 80))
    names = ["cat", "dog", "horse", "a very long class name indeed"]
    metrics = write_classification_report(
        tmp_path / "report",
        y_true=y_true,
        probabilities=one_hot_probabilities(y_pred, 4),
        class_names=names,
        history=HISTORY,
        title="pets",
        summary_extra={
            "backbone": "efficientnet_lite0", "epochs": [3, 2], "fine-tune accuracy": None
        },
    )
    report = tmp_path / "report"
    assert sorted(p.name for p in report.iterdir()) == [
        "confusion_matrix.png", "curves.png", "metrics.json", "summary.txt"
    ]
    saved = json.loads((report / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["accuracy"] == pytest.approx((y_true == y_pred).mean())
    assert saved["extra"]["backbone"] == "efficientnet_lite0"
    summary = (report / "summary.txt").read_text()
    assert summary.startswith("pets\n====\n")
    assert f"accuracy: {saved['accuracy']:.2%}" in summary
    assert "a very long class name indeed" in summary and "efficientnet_lite0" in summary
    assert "\nepochs              3, 2\n" in summary
    assert "\nfine-tune accuracy  n/a\n" in summary  # skipped, not Python's "None"
    assert summary == summary_text(metrics, metrics["extra"], title="pets")
    width, height = png_size(report / "confusion_matrix.png")
    assert width > 300 and height > 300
    width, height = png_size(report / "curves.png")
    assert width > 2 * height  # loss and accuracy side by side


def test_report_without_history_has_no_curves(tmp_path):
    write_classification_report(
        tmp_path, y_true=[0, 1], probabilities=[[0.8, 0.2], [0.3, 0.7]], class_names=["no", "yes"]
    )
    assert not (tmp_path / "curves.png").exists()
    assert (tmp_path / "confusion_matrix.png").exists()
