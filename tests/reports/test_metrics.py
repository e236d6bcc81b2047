"""Report numbers and text: metrics, the summary, text mistakes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import one_hot_probabilities
from transferkit.errors import InputError
from transferkit.reports.metrics import classification_metrics, percent, write_text_mistakes


def test_metrics_match_hand_computed_values():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(y_true, one_hot_probabilities(y_pred, 3), ["a", "b", "c"])
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
    metrics = classification_metrics([0, 1, 1], one_hot_probabilities([1, 1, 1], 2), ["x", "y"])
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


def test_many_classes_keep_only_the_non_zero_cells():
    from transferkit.reports.metrics import DENSE_MATRIX_CLASSES

    k = DENSE_MATRIX_CLASSES + 1
    y_true = np.arange(3 * k) % k
    predicted = y_true.copy()
    predicted[:10] = (predicted[:10] + 1) % k
    metrics = classification_metrics(y_true, one_hot_probabilities(predicted, k), range(k))
    assert metrics["confusion_matrix"] is None
    cells = np.asarray(metrics["confusion_cells"])
    assert cells[:, 2].sum() == 3 * k and len(cells) == k + 10
    assert cells[(cells[:, 0] == 0) & (cells[:, 1] == 1), 2].tolist() == [1]
    small = classification_metrics([0, 1], one_hot_probabilities([0, 1], 2), ["a", "b"])
    assert small["confusion_matrix"] == [[1, 0], [0, 1]] and "confusion_cells" not in small


def test_macro_average_is_over_the_classes_with_examples():
    # A class with no validation examples (issue 16: a class of one image) has no F1 to average.
    y_true = [0, 0, 1, 1]
    probabilities = one_hot_probabilities([0, 0, 1, 1], 3)
    metrics = classification_metrics(y_true, probabilities, ["a", "b", "rare"])
    assert metrics["per_class"]["rare"]["support"] == 0
    assert metrics["macro_avg"]["f1"] == pytest.approx(1.0)


@pytest.mark.parametrize("score, shown", [
    (1.0, ">99.9%"), (0.99999994, ">99.9%"), (0.9995, ">99.9%"), (0.99949, " 99.9%"),
    (0.5, " 50.0%"), (0.0005, "  0.1%"), (0.0004, " <0.1%"), (0.0, " <0.1%"),
])
def test_a_percentage_never_claims_certainty(score, shown):
    """A saturated float32 score (the demo's faces: 0.99999994, or exactly 1.0) is not 100.0%."""
    assert percent(score) == shown
