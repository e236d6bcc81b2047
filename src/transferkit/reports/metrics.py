"""Numbers and text of a classification report: metrics, the console summary, text mistakes."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import InputError
from transferkit.files import atomic_write

# Beyond this many classes metrics keep only the non-zero cells of the confusion matrix.
DENSE_MATRIX_CLASSES = 200

__all__ = [
    "classification_metrics",
    "summary_text",
    "write_text_mistakes",
    "mistake_order",
    "check_predictions",
    "percent",
]


def check_predictions(y_true, probabilities, class_names) -> tuple[np.ndarray, np.ndarray, list]:
    """Validates and converts the inputs of a report. Returns `(y_true, probabilities, names)`.

    Raises:
        InputError: shapes that do not match, labels outside `range(len(class_names))`, or fewer
            than two classes.
    """
    class_names = [str(name) for name in class_names]
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(class_names) < 2:
        raise InputError(
            f"A classification report needs at least 2 class names. Received: "
            f"class_names={class_names!r}."
        )
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise InputError(
            f"`probabilities` must have shape (n, {len(class_names)}), one column per class name "
            f"(for a binary model pass both columns, [1 - p, p]). Received: shape "
            f"{probabilities.shape}."
        )
    if y_true.ndim != 1 or y_true.shape[0] != probabilities.shape[0]:
        raise InputError(
            f"`y_true` must be one int label per row of `probabilities` "
            f"({probabilities.shape[0]}). "
            f"Received: shape {y_true.shape}."
        )
    if y_true.size and (
        not np.issubdtype(y_true.dtype, np.integer)
        or y_true.min() < 0
        or y_true.max() >= len(class_names)
    ):
        raise InputError(
            f"`y_true` must hold int labels in [0, {len(class_names) - 1}] (indices into "
            f"`class_names`). Received: dtype {y_true.dtype}, values "
            f"{sorted(set(y_true.tolist()))[:10]}."
        )
    if y_true.size == 0:
        raise InputError("No examples to report on: `y_true` is empty.")
    return y_true.astype(np.int64), probabilities, class_names


def classification_metrics(y_true, probabilities, class_names) -> dict:
    """Accuracy, per-class precision/recall/F1/support, averages and the confusion matrix.

    Args:
        y_true: int labels, shape `(n,)`.
        probabilities: scores per class, shape `(n, k)`; the prediction is the arg-max.
        class_names: the `k` class names, in column order.

    Returns:
        A JSON-ready dict: `n`, `accuracy`, `class_names`, `per_class` (name -> precision,
        recall, f1, support), `balanced_accuracy` (mean recall of the classes present),
        `macro_avg`, `weighted_avg`, `confusion_matrix` (rows: true class,
        columns: predicted class, nested lists of ints). Beyond `DENSE_MATRIX_CLASSES` (200)
        classes, `confusion_matrix` is None and `confusion_cells` lists the non-zero cells as
        `[true, predicted, count]`. Macro averages are over the classes with examples (a class
        without any would count as F1 0).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true, probabilities, class_names = check_predictions(y_true, probabilities, class_names)
    labels = list(range(len(class_names)))
    y_pred = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    averages = {}
    measured = [label for label in labels if support[label] > 0]
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=measured, average=average, zero_division=0
        )
        averages[f"{average}_avg"] = {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(len(y_true)),
        }
    present = support > 0
    if len(labels) <= DENSE_MATRIX_CLASSES:
        matrix = {"confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}
    else:  # k x k cells would not fit in memory or a JSON file: only the non-zero ones
        cells, counts = np.unique(np.stack([y_true, y_pred], axis=1), axis=0, return_counts=True)
        matrix = {"confusion_matrix": None, "confusion_cells": [
            [int(t), int(p), int(c)] for (t, p), c in zip(cells, counts)]}
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        # the mean recall of the classes present: what accuracy would be with equal classes
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "class_names": class_names,
        "per_class": per_class,
        **averages,
        **matrix,
    }


def _format_value(value: Any) -> str:
    if value is None:  # e.g. a fine-tune accuracy when fine-tuning was skipped
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


#: The `extra` line that marks imbalanced classes: the summary then leads with macro F1 and
#: balanced accuracy.
IMBALANCE_KEY = "class imbalance"


def summary_text(metrics: Mapping, extra: Mapping | None = None, title: str = "") -> str:
    """A short plain-text summary of `classification_metrics` output, for the console and
    `summary.txt`: title, n, accuracy, macro F1, balanced accuracy, a per-class table, then
    `extra` key/values (with an `IMBALANCE_KEY` line, macro F1 and balanced accuracy lead).

    Args:
        metrics: the dict from `classification_metrics` (or `write_classification_report`).
        extra: more lines to show, e.g. `{"backbone": "efficientnet_lite0", "run": "runs/..."}`.
            Default `None`.
        title: first line. Default `""` (no title line).
    """
    lines = []
    if title:
        lines += [title, "=" * len(title)]
    lines.append(f"examples: {metrics['n']}")
    balanced = [f"macro F1: {metrics['macro_avg']['f1']:.3f}"] if "macro_avg" in metrics else []
    if "balanced_accuracy" in metrics:
        balanced.append(f"balanced accuracy: {metrics['balanced_accuracy']:.2%}")
    if extra and IMBALANCE_KEY in extra:  # imbalanced classes: accuracy flatters, lead with these
        lines += balanced + [f"accuracy: {metrics['accuracy']:.2%} (classes are imbalanced: "
                             f"see {IMBALANCE_KEY!r} below)"]
    else:
        lines += [f"accuracy: {metrics['accuracy']:.2%}"] + balanced
    per_class = metrics.get("per_class") or {}
    if per_class:
        width = max(len("class"), *(len(name) for name in per_class))
        lines.append("")
        lines.append(f"{'class':<{width}}  precision  recall     F1  support")
        for name, row in per_class.items():
            lines.append(
                f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
                f"{row['f1']:5.3f}  {row['support']:7d}"
            )
    if extra:
        lines.append("")
        width = max(len(str(key)) for key in extra)
        for key, value in extra.items():
            lines.append(f"{str(key):<{width}}  {_format_value(value)}")
    return "\n".join(lines) + "\n"


def mistake_order(true_labels, predicted_labels, scores, inputs=None,
                  inputs_name: str = "inputs") -> np.ndarray:
    """Indices of the wrong predictions, most confident first (the highest `scores`).

    Args:
        true_labels, predicted_labels, scores: one per input.
        inputs: the inputs themselves, to check their number too. Default `None`.
        inputs_name: their argument's name, for the message. Default `"inputs"`.
    """
    true_labels = np.asarray(true_labels)
    predicted_labels = np.asarray(predicted_labels)
    scores = np.asarray(scores, dtype=np.float64)
    if inputs is not None and len(inputs) != len(scores):
        raise InputError(
            f"`{inputs_name}` and `scores` must have the same length. Received: {len(inputs)} "
            f"and {len(scores)}."
        )
    if not (len(true_labels) == len(predicted_labels) == len(scores)):
        raise InputError(
            f"`true_labels`, `predicted_labels` and `scores` must have the same length. Received: "
            f"{len(true_labels)}, {len(predicted_labels)} and {len(scores)}."
        )
    wrong = np.flatnonzero(true_labels != predicted_labels)
    # Stable sort keeps input order among equal scores, so reports do not change between runs.
    return wrong[np.argsort(-scores[wrong], kind="stable")]


def write_text_mistakes(
    path: str | os.PathLike,
    texts: Sequence[str],
    true_labels: Sequence,
    predicted_labels: Sequence,
    scores: Sequence[float],
    max_items: int = 25,
    why: Callable[[list], list] | None = None,
) -> Path:
    """Writes the most confident wrong predictions to a text file (`mistakes.txt`).

    Args:
        path: the file to write.
        texts: the input texts.
        true_labels: the true class of each text (names, or anything `str` shows well).
        predicted_labels: the predicted class of each text.
        scores: the model's score for its prediction (e.g. the max probability).
        max_items: at most this many mistakes, most confident first. Default `25`.
        why: given the shown texts, the words that pushed each toward its prediction,
            `[(word, score), ...]` or None (`transferkit.explain.text.top_words`); written
            under each text. Default `None`.

    Returns:
        The path written.
    """
    order = mistake_order(true_labels, predicted_labels, scores, texts, "texts")
    shown = order[:max_items]
    reasons = why([texts[i] for i in shown]) if why is not None and len(shown) else []
    lines = [
        f"Most confident mistakes: {len(shown)} of {len(order)} wrong predictions "
        f"({len(texts)} texts).",
        "",
    ]
    if not len(order):
        lines.append("No mistakes.")
    for rank, index in enumerate(shown, start=1):
        text = " ".join(str(texts[index]).split()) or "(empty text)"  # one line per text
        if len(text) > 500:
            text = text[:497] + "..."
        lines.append(
            f"{rank}. true: {true_labels[index]} / pred: {predicted_labels[index]} "
            f"({float(scores[index]):.2f})"
        )
        lines.append(f"   {text}")
        words = reasons[rank - 1] if reasons else None
        if words:
            lines.append("   why: " + ", ".join(f"{word} {score:+.3f}" for word, score in words)
                         + " (the prediction's drop without each word)")
        lines.append("")
    path = Path(path)
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines).rstrip("\n") + "\n")
    return path


def percent(score: float, width: int = 6) -> str:
    """A probability as a percentage to one decimal, never "100.0%" or "0.0%": a float32
    softmax saturates at 1.0 well before a model is certain, and a rounded 100.0% claims what
    no trained model knows (the demo's faces, 99% right out of fold, scored 0.99999994);
    `--json` keeps the number itself."""
    shown = (">99.9%" if score >= 0.9995 else "<0.1%" if score < 0.0005
             else f"{score:.1%}")
    return shown.rjust(width)
