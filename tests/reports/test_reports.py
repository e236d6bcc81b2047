"""Reports: metrics against hand-computed values, and PNGs that are real, readable images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from transferkit.errors import InputError
from transferkit.reports import (
    classification_metrics,
    plot_curves,
    plot_image_grid,
    plot_image_mistakes,
    summary_text,
    write_classification_report,
    write_text_mistakes,
)
from transferkit.reports.plots import phase_spans, plot_confusion_matrix

HISTORY = [
    {"phase": "head", "epoch": e, "loss": 1 / e, "accuracy": 0.5 + 0.1 * e,
     "val_loss": 1.2 / e, "val_accuracy": 0.45 + 0.1 * e}
    for e in (1, 2, 3)
] + [
    {"phase": "fine_tune", "epoch": e, "loss": 0.2 / e, "accuracy": 0.85 + 0.02 * e,
     "val_loss": 0.3 / e, "val_accuracy": 0.8 + 0.02 * e}
    for e in (1, 2)
]


def _one_hot_probabilities(predicted, k, confidence=0.9):
    probabilities = np.full((len(predicted), k), (1 - confidence) / (k - 1))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def _png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()
        array = np.asarray(image.convert("L"))
    assert array.std() > 5  # something is drawn
    return image.size


def test_metrics_match_hand_computed_values():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(y_true, _one_hot_probabilities(y_pred, 3), ["a", "b", "c"])
    assert metrics["n"] == 6
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                         "f1": pytest.approx(0.8), "support": 3}
    assert metrics["per_class"]["b"]["precision"] == 0.5
    assert metrics["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert metrics["macro_avg"]["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["weighted_avg"]["recall"] == pytest.approx(4 / 6)
    assert metrics["class_names"] == ["a", "b", "c"]
    json.dumps(metrics)  # plain data


def test_a_class_never_predicted_has_zero_precision_without_warnings():
    metrics = classification_metrics([0, 1, 1], _one_hot_probabilities([1, 1, 1], 2), ["x", "y"])
    assert metrics["per_class"]["x"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


@pytest.mark.parametrize(
    "y_true, probabilities, names, message",
    [
        ([0, 1], np.ones((2, 3)), ["a", "b"], r"must have shape \(n, 2\).*both columns"),
        ([0, 1, 1], np.ones((2, 2)), ["a", "b"], r"one int label per row of `probabilities` \(2\)"),
        ([0, 2], np.ones((2, 2)), ["a", "b"], r"int labels in \[0, 1\].*values \[0, 2\]"),
        ([0.0, 1.0], np.ones((2, 2)), ["a", "b"], r"int labels in \[0, 1\].*dtype float64"),
        ([0], np.ones((1, 1)), ["a"], r"at least 2 class names"),
        ([], np.ones((0, 2)), ["a", "b"], r"No examples to report on"),
    ],
)
def test_bad_report_inputs(y_true, probabilities, names, message):
    with pytest.raises(InputError, match=message):
        classification_metrics(np.asarray(y_true), probabilities, names)


def test_write_classification_report_writes_every_file(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 80)
    y_pred = np.where(rng.random(80) < 0.75, y_true, rng.integers(0, 4, 80))
    names = ["cat", "dog", "horse", "a very long class name indeed"]
    metrics = write_classification_report(
        tmp_path / "report",
        y_true=y_true,
        probabilities=_one_hot_probabilities(y_pred, 4),
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
    width, height = _png(report / "confusion_matrix.png")
    assert width > 300 and height > 300
    width, height = _png(report / "curves.png")
    assert width > 2 * height  # loss and accuracy side by side


def test_report_without_history_has_no_curves(tmp_path):
    write_classification_report(
        tmp_path, y_true=[0, 1], probabilities=[[0.8, 0.2], [0.3, 0.7]], class_names=["no", "yes"]
    )
    assert not (tmp_path / "curves.png").exists()
    assert (tmp_path / "confusion_matrix.png").exists()


@pytest.mark.parametrize("k", [2, 12, 30])
def test_confusion_matrix_scales_with_the_number_of_classes(tmp_path, k):
    rng = np.random.default_rng(k)
    matrix = rng.integers(0, 20, (k, k)) + np.eye(k, dtype=int) * 30
    path = plot_confusion_matrix(tmp_path / "cm.png", matrix, [f"class_{i}" for i in range(k)])
    width, _ = _png(path)
    assert width >= 400 + 20 * k  # the figure grows, cells keep a readable size
    with pytest.raises(InputError, match=r"`matrix` must be \(3, 3\)"):
        plot_confusion_matrix(tmp_path / "x.png", matrix, ["a", "b", "c"])


def test_phase_spans_number_epochs_continuously():
    x, spans = phase_spans(HISTORY)
    assert x == [1, 2, 3, 4, 5]
    assert spans == [("head", 1, 3), ("fine_tune", 4, 5)]
    # A phase resumed or repeated later still continues the count.
    x, spans = phase_spans(HISTORY[:2] + HISTORY[3:4])
    assert x == [1, 2, 3] and spans == [("head", 1, 2), ("fine_tune", 3, 3)]


def test_curves_without_validation_or_accuracy(tmp_path):
    history = [{"phase": "head", "epoch": e, "loss": 1 / e} for e in (1, 2, 3)]
    width, height = _png(plot_curves(tmp_path / "c.png", history))
    assert width < 2 * height  # one panel: loss
    with pytest.raises(InputError, match="No training history"):
        plot_curves(tmp_path / "d.png", [])


def test_image_mistakes_most_confident_first(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(6)]
    Image.fromarray(images[0]).save(tmp_path / "first.png")
    images[0] = tmp_path / "first.png"  # paths and arrays mixed
    true = ["cat", "dog", "cat", "dog", "cat", "cat"]
    pred = ["dog", "dog", "dog", "cat", "cat", "dog"]
    path = plot_image_mistakes(tmp_path / "mistakes.png", images, true, pred,
                               [0.6, 0.99, 0.9, 0.7, 0.8, 0.55], max_items=3)
    _png(path)
    none = plot_image_mistakes(tmp_path / "none.png", images[:2], true[:2], true[:2], [0.5, 0.5])
    _png(none)
    with pytest.raises(InputError, match="same length"):
        plot_image_mistakes(tmp_path / "x.png", images, true, pred, [0.5])


def test_text_mistakes_most_confident_first(tmp_path):
    texts = ["great film", "awful\nplot", "", "fine", "meh"]
    true = ["pos", "neg", "neg", "pos", "neg"]
    pred = ["pos", "pos", "pos", "neg", "pos"]
    path = write_text_mistakes(tmp_path / "mistakes.txt", texts, true, pred,
                               [0.9, 0.6, 0.95, 0.8, 0.7], max_items=3)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Most confident mistakes: 3 of 4 wrong predictions (5 texts)."
    ranked = [line for line in lines if line[:2] in ("1.", "2.", "3.")]
    assert ranked == [
        "1. true: neg / pred: pos (0.95)",
        "2. true: pos / pred: neg (0.80)",
        "3. true: neg / pred: pos (0.70)",
    ]
    assert "   (empty text)" in lines and "   meh" in lines
    assert "awful plot" not in path.read_text()  # rank 4 is cut by max_items
    write_text_mistakes(tmp_path / "none.txt", ["a"], ["x"], ["x"], [0.9])
    assert "No mistakes." in (tmp_path / "none.txt").read_text()


def test_image_grid(tmp_path):
    images = [np.full((32, 32, 3), 20 * i, dtype=np.uint8) for i in range(12)]
    images[1] = np.linspace(0, 1, 32 * 32).reshape(32, 32)  # grayscale floats in [0, 1]
    width, height = _png(plot_image_grid(tmp_path / "g.png", images,
                                         [f"augmented {i}" for i in range(12)], title="preview"))
    assert width > height  # 4 columns, 3 rows
    with pytest.raises(InputError, match=r"one title per image \(12\)\. Received: 2"):
        plot_image_grid(tmp_path / "x.png", images, ["a", "b"])
    with pytest.raises(InputError, match=r"`ncols` must be an int >= 1"):
        plot_image_grid(tmp_path / "x.png", images, ncols=0)
    with pytest.raises(InputError, match=r"\(height, width, 3\) arrays or file paths"):
        plot_image_grid(tmp_path / "x.png", [np.zeros((2, 2, 2, 2))])
