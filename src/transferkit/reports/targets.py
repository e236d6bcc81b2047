"""Reports of multi-label and regression models: the numbers, the pictures, the worst examples.

Multi-label (`transferkit.tasks.targets`): per-label precision, recall, F1, average precision and
support; micro and macro F1; mean average precision; label cardinality, true vs predicted; subset
accuracy and Hamming loss; `pr_curves.png` (a precision-recall curve per label, the most frequent
first) and the worst mistakes with true and predicted label sets.

Regression: MAE, RMSE, R², median absolute error, the mean predictor's MAE for scale;
`predicted_vs_actual.png`, `residuals.png` and the largest errors.

The numbers are scikit-learn's; `summary.txt` and `metrics.json` carry the same ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from transferkit.errors import InputError
from transferkit.files import atomic_write, write_json
from transferkit.reports.metrics import _format_value
from transferkit.reports.plots import _figure, _save, _short, plot_curves, plot_image_grid

__all__ = [
    "multilabel_metrics",
    "regression_metrics",
    "target_summary",
    "worst_examples",
    "write_target_report",
]

#: `pr_curves.png` draws at most this many labels (the most frequent); the rest are in metrics.json.
PLOTTED_LABELS = 12
#: The worst examples shown (a grid of images, or a text file).
WORST = 16


def _check(y_true, outputs, width: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    if y_true.ndim == 1 and width == 1:
        y_true = y_true[:, None]
    if y_true.shape != outputs.shape or outputs.shape[1] != width or not len(outputs):
        raise InputError(
            f"Targets and outputs must have the same shape (n, {width}) with n >= 1. Received: "
            f"{y_true.shape} and {outputs.shape}."
        )
    return y_true, outputs


def predicted_sets(probabilities, thresholds) -> np.ndarray:
    """The 0/1 predictions: each label's score at or above its threshold."""
    return (np.asarray(probabilities) >= np.asarray(thresholds)[None, :]).astype(np.int64)


def multilabel_metrics(y_true, probabilities, names: Sequence[str],
                       thresholds: Sequence[float]) -> dict:
    """The numbers of a multi-label model on labelled examples.

    Returns:
        `n`, `labels`, `micro_f1`, `macro_f1`, `micro_precision`, `micro_recall`,
        `mean_average_precision` (over labels with at least one positive; how many in
        `labels_with_positives`), `subset_accuracy` (the whole set right), `hamming_loss`,
        `label_cardinality` (`true`, `predicted`: mean labels per example), and `per_label`
        (label -> precision, recall, f1, average_precision or None, support, threshold).
    """
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        hamming_loss,
        precision_recall_fscore_support,
    )

    names = [str(n) for n in names]
    truth, scores = _check(y_true, probabilities, len(names))
    truth = (truth > 0.5).astype(np.int64)
    predicted = predicted_sets(scores, thresholds)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, average=None, zero_division=0)
    per_label, aps = {}, []
    for i, name in enumerate(names):
        ap = (float(average_precision_score(truth[:, i], scores[:, i]))
              if truth[:, i].any() else None)
        if ap is not None:
            aps.append(ap)
        per_label[name] = {"precision": float(precision[i]), "recall": float(recall[i]),
                           "f1": float(f1[i]), "average_precision": ap,
                           "support": int(support[i]), "threshold": float(thresholds[i])}
    micro = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)
    return {
        "target": "multi-label",
        "n": int(len(truth)),
        "labels": names,
        "micro_f1": float(micro[2]),
        "micro_precision": float(micro[0]),
        "micro_recall": float(micro[1]),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "mean_average_precision": float(np.mean(aps)) if aps else None,
        "labels_with_positives": len(aps),
        "subset_accuracy": float((truth == predicted).all(axis=1).mean()),
        "hamming_loss": float(hamming_loss(truth, predicted)),
        "label_cardinality": {"true": float(truth.sum(axis=1).mean()),
                              "predicted": float(predicted.sum(axis=1).mean())},
        "per_label": per_label,
    }


def regression_metrics(y_true, predicted, baseline: float | None = None) -> dict:
    """MAE, RMSE, R², median absolute error and the mean predictor's MAE.

    Args:
        y_true, predicted: `(n,)` in the target's units.
        baseline: the constant the mean predictor predicts (the training mean). Default `None`:
            the mean of `y_true`.
    """
    from sklearn.metrics import (
        mean_absolute_error,
        mean_squared_error,
        median_absolute_error,
        r2_score,
    )

    truth, values = _check(y_true, predicted, 1)
    truth, values = truth[:, 0], values[:, 0]
    constant = float(truth.mean() if baseline is None else baseline)
    r2 = float(r2_score(truth, values)) if len(truth) > 1 else None
    return {
        "target": "regression",
        "n": int(len(truth)),
        "mae": float(mean_absolute_error(truth, values)),
        "rmse": float(np.sqrt(mean_squared_error(truth, values))),
        "r2": r2,
        "median_absolute_error": float(median_absolute_error(truth, values)),
        "mean_predictor_mae": float(np.abs(truth - constant).mean()),
        "mean_predictor_value": constant,
        "true_range": [float(truth.min()), float(truth.max())],
        "predicted_range": [float(values.min()), float(values.max())],
    }


def target_summary(metrics: Mapping, extra: Mapping | None = None, title: str = "") -> str:
    """`summary.txt` for a multi-label or regression report."""
    lines = [title, "=" * len(title)] if title else []
    lines.append(f"examples: {metrics['n']}")
    if metrics["target"] == "regression":
        lines += [f"MAE: {metrics['mae']:.4g}  (the mean predictor: "
                  f"{metrics['mean_predictor_mae']:.4g})",
                  f"RMSE: {metrics['rmse']:.4g}",
                  f"R²: {_format_value(metrics['r2'])}",
                  f"median absolute error: {metrics['median_absolute_error']:.4g}"]
    else:
        cardinality = metrics["label_cardinality"]
        average = metrics["mean_average_precision"]
        lines += [f"micro F1: {metrics['micro_f1']:.3f}", f"macro F1: {metrics['macro_f1']:.3f}",
                  "mean average precision: "
                  + ("n/a (no label has a positive)" if average is None else
                     f"{average:.3f} (over {metrics['labels_with_positives']} labels with "
                     "positives)"),
                  f"subset accuracy (whole set right): {metrics['subset_accuracy']:.2%}",
                  f"labels per example: {cardinality['true']:.2f} true, "
                  f"{cardinality['predicted']:.2f} predicted"]
        per_label = metrics["per_label"]
        width = max(len("label"), *(len(name) for name in per_label))
        lines += ["", f"{'label':<{width}}  precision  recall     F1     AP  support  threshold"]
        for name, row in per_label.items():
            ap = "   -  " if row["average_precision"] is None else f"{row['average_precision']:6.3f}"
            lines.append(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
                         f"{row['f1']:5.3f}  {ap}  {row['support']:7d}  {row['threshold']:9.3f}")
    if extra:
        lines.append("")
        width = max(len(str(key)) for key in extra)
        lines += [f"{str(key):<{width}}  {_format_value(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def plot_pr_curves(path, y_true, probabilities, names: Sequence[str],
                   thresholds: Sequence[float], title: str = "") -> Path:
    """A precision-recall curve per label (the `PLOTTED_LABELS` most frequent), each with its
    average precision in the legend and a dot where its threshold is."""
    from matplotlib import colormaps
    from sklearn.metrics import average_precision_score, precision_recall_curve

    truth = np.asarray(y_true) > 0.5
    scores = np.asarray(probabilities, dtype=np.float64)
    order = [i for i in np.argsort(-truth.sum(axis=0), kind="stable") if truth[:, i].any()]
    shown = order[:PLOTTED_LABELS]
    figure = _figure(7.0, 5.2)
    axes = figure.subplots()
    palette = colormaps["tab10"]
    for rank, i in enumerate(shown):
        precision, recall, cut = precision_recall_curve(truth[:, i], scores[:, i])
        color = palette(rank % 10)
        positives = truth[:, i]
        at = scores[:, i] >= thresholds[i]
        p_at = (at & positives).sum() / max(at.sum(), 1)
        r_at = (at & positives).sum() / max(positives.sum(), 1)
        ap = average_precision_score(positives, scores[:, i])
        axes.step(recall, precision, where="post", color=color, lw=1.6,
                  ls="-" if rank < 10 else "--",
                  label=f"{_short(names[i], 18)} (AP {ap:.2f}, n={int(positives.sum())})")
        axes.plot([r_at], [p_at], "o", color=color, ms=5)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1.01)
    axes.set_ylim(0, 1.03)
    axes.grid(True, alpha=0.3)
    more = len(order) - len(shown)
    axes.set_title((title + "\n" if title else "") + "Precision-recall per label (dot: its "
                   "threshold)" + (f"; {more} rarer labels in metrics.json" if more > 0 else ""),
                   fontsize=10)
    axes.legend(fontsize=7, loc="lower left", framealpha=0.9)
    figure.tight_layout()
    return _save(figure, path)


def plot_regression(folder: Path, y_true, predicted, name: str, title: str = "") -> dict:
    """`predicted_vs_actual.png` (with the y = x line) and `residuals.png` (residual against
    prediction, and their histogram). Returns name -> path."""
    truth = np.asarray(y_true, dtype=np.float64).ravel()
    values = np.asarray(predicted, dtype=np.float64).ravel()
    files = {"predicted_vs_actual": folder / "predicted_vs_actual.png",
             "residuals": folder / "residuals.png"}
    figure = _figure(5.4, 5.0)
    axes = figure.subplots()
    low, high = float(min(truth.min(), values.min())), float(max(truth.max(), values.max()))
    axes.scatter(truth, values, s=9, alpha=0.5, color="#1f77b4", edgecolors="none")
    axes.plot([low, high], [low, high], color="#d62728", lw=1, label="predicted = actual")
    axes.set_xlabel(f"actual {name}")
    axes.set_ylabel(f"predicted {name}")
    axes.set_title((title + "\n" if title else "") + f"Predicted vs actual ({len(truth)})",
                   fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    _save(figure, files["predicted_vs_actual"])
    figure = _figure(9.0, 4.0)
    left, right = figure.subplots(1, 2)
    residuals = values - truth
    left.scatter(values, residuals, s=9, alpha=0.5, color="#1f77b4", edgecolors="none")
    left.axhline(0, color="#d62728", lw=1)
    left.set_xlabel(f"predicted {name}")
    left.set_ylabel("residual (predicted - actual)")
    left.grid(True, alpha=0.3)
    right.hist(residuals, bins=min(40, max(5, len(residuals) // 5)), color="#1f77b4")
    right.set_xlabel("residual")
    right.set_ylabel("examples")
    figure.suptitle((title + ": " if title else "") + "residuals", fontsize=10)
    figure.tight_layout()
    _save(figure, files["residuals"])
    return files


def worst_examples(target: str, y_true, outputs, names: Sequence[str],
                   thresholds: Sequence[float] = ()) -> list[tuple[int, str]]:
    """The worst predictions, worst first, each `(index, caption)`.

    Multi-label: examples whose predicted set is wrong, by how far the scores are from the true
    set (the sum of |truth - score|); regression: the largest absolute errors.
    """
    if target == "regression":
        truth = np.asarray(y_true, dtype=np.float64).ravel()
        values = np.asarray(outputs, dtype=np.float64).ravel()
        error = np.abs(values - truth)
        order = np.argsort(-error, kind="stable")[:WORST]
        return [(int(i), f"true {truth[i]:.4g} / pred {values[i]:.4g}") for i in order]
    truth = np.asarray(y_true) > 0.5
    scores = np.asarray(outputs, dtype=np.float64)
    predicted = predicted_sets(scores, thresholds).astype(bool)
    wrong = np.flatnonzero((truth != predicted).any(axis=1))
    distance = np.abs(truth.astype(np.float64) - scores).sum(axis=1)
    order = wrong[np.argsort(-distance[wrong], kind="stable")][:WORST]

    def shown(row) -> str:
        return ";".join(names[j] for j in np.flatnonzero(row)) or "(none)"

    return [(int(i), f"true: {shown(truth[i])} / pred: {shown(predicted[i])}") for i in order]


def _write_worst(path: Path, items, worst: list[tuple[int, str]], images: bool,
                 heading: str) -> Path:
    if images:
        if not worst:
            figure = _figure(4, 1.2)
            figure.text(0.5, 0.5, "No mistakes.", ha="center", va="center")
            return _save(figure, path)
        from transferkit.data.image_inputs import ImageInputs

        shown = ImageInputs([items[i] for i, _ in worst]).displayable()
        return plot_image_grid(path, shown, [caption for _, caption in worst], ncols=4,
                               title=heading)
    lines = [heading, ""]
    for rank, (i, caption) in enumerate(worst, start=1):
        text = " ".join(str(items[i]).split()) or "(empty text)"
        lines += [f"{rank}. {caption}", f"   {text[:497] + '...' if len(text) > 500 else text}",
                  ""]
    if not worst:
        lines.append("No mistakes.")
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines).rstrip("\n") + "\n")
    return path


def write_target_report(report_dir, *, target: str, items, y_true, outputs,
                        names: Sequence[str], thresholds: Sequence[float] = (),
                        images: bool = False, history: Sequence[Mapping] = (), title: str = "",
                        summary_extra: Mapping | None = None,
                        baseline: float | None = None) -> dict:
    """Writes `metrics.json`, `summary.txt`, the pictures and the worst examples.

    Args:
        report_dir: the folder (created if missing).
        target: `"multi-label"` or `"regression"`.
        items: the inputs (image paths or arrays, or texts), for the worst examples.
        y_true: `(n, k)` 0/1 (multi-label) or `(n,)` numbers.
        outputs: the model's `(n, k)` probabilities, or `(n,)`/(n, 1) values.
        names: the labels, or `[target name]`.
        thresholds: multi-label: one per label.
        images: whether `items` are images (a grid) or texts (`mistakes.txt`).
        history, title, summary_extra: as in `write_classification_report`.
        baseline: regression: the mean predictor's constant (the training mean).

    Returns:
        The metrics, with `title`, `extra` and `files`.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"metrics": report_dir / "metrics.json",
                              "summary": report_dir / "summary.txt"}
    if target == "multi-label":
        metrics = multilabel_metrics(y_true, outputs, names, thresholds)
        files["pr_curves"] = plot_pr_curves(report_dir / "pr_curves.png", y_true, outputs, names,
                                            thresholds, title)
    elif target == "regression":
        metrics = regression_metrics(y_true, outputs, baseline)
        files.update(plot_regression(report_dir, y_true, outputs, names[0], title))
    else:
        raise InputError(f"No target report for {target!r}.")
    if history:
        files["curves"] = plot_curves(report_dir / "curves.png", list(history), title)
    worst = worst_examples(target, y_true, outputs, names, thresholds)
    what = "largest errors" if target == "regression" else "worst label sets"
    files["mistakes"] = _write_worst(
        report_dir / ("mistakes.png" if images else "mistakes.txt"), items, worst, images,
        f"The {what}: {len(worst)} of {len(items)}")
    extra = dict(summary_extra or {})
    metrics = {"title": title, **metrics, "extra": extra,
               "files": {key: os.fspath(path) for key, path in files.items()}}
    with atomic_write(files["summary"], "w") as handle:
        handle.write(target_summary(metrics, extra, title))
    write_json(files["metrics"], metrics)
    return metrics
