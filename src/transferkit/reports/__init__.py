"""Reports of a trained classifier: metrics, a summary, and pictures a person can read.

`write_classification_report(report_dir, ...)` writes, for one evaluation:

* `metrics.json`: accuracy, per-class precision/recall/F1/support, macro and weighted averages,
  the confusion matrix, class names and n;
* `summary.txt`: the same in a few lines (also what `summary_text` prints on the console);
* `confusion_matrix.png`: counts and per-true-class percentages;
* `curves.png`: loss and accuracy per epoch across all phases, when `history` is given.

Mistakes go beside them: `plot_image_mistakes` (a grid of images) and `write_text_mistakes`
(`mistakes.txt`). `plot_image_grid` draws any set of images, e.g. an augmentation preview.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from transferkit.files import atomic_write, write_json
from transferkit.reports.metrics import (
    classification_metrics,
    summary_text,
    write_text_mistakes,
)
from transferkit.reports.plots import (
    plot_confusion_matrix,
    plot_curves,
    plot_image_grid,
    plot_image_mistakes,
)

__all__ = [
    "write_classification_report",
    "classification_metrics",
    "summary_text",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_image_mistakes",
    "plot_image_grid",
    "write_text_mistakes",
]


def write_classification_report(
    report_dir: str | os.PathLike,
    *,
    y_true,
    probabilities,
    class_names: Sequence[str],
    history: Sequence[Mapping] = (),
    title: str = "",
    summary_extra: Mapping | None = None,
) -> dict:
    """Writes `metrics.json`, `summary.txt`, `confusion_matrix.png` and `curves.png`.

    Args:
        report_dir: the folder to write into (created if missing), usually `run.report_dir`.
        y_true: int labels, shape `(n,)`.
        probabilities: class scores, shape `(n, k)`, one column per class name. For a binary
            model with one sigmoid output pass both columns, `[1 - p, p]`.
        class_names: the `k` class names, in column order.
        history: the rows of `history.csv` (`RunFolder.history_rows()`). Default `()`: then no
            `curves.png` is written.
        title: first line of the summary and title of the figures. Default `""`.
        summary_extra: more key/values for `summary.txt` and `metrics.json["extra"]`, e.g. the
            backbone and the run folder. Default `None`.

    Returns:
        The metrics dict written to `metrics.json` (see `classification_metrics`), plus `title`,
        `extra` and `files` (name -> path of each file written).

    Raises:
        InputError: shapes that do not match, or labels outside the class names.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y_true, probabilities, class_names)
    extra = dict(summary_extra or {})
    files = {
        "metrics": report_dir / "metrics.json",
        "summary": report_dir / "summary.txt",
        "confusion_matrix": report_dir / "confusion_matrix.png",
    }
    plot_confusion_matrix(
        files["confusion_matrix"],
        metrics["confusion_matrix"] if metrics["confusion_matrix"] is not None
        else np.asarray(metrics["confusion_cells"], dtype=np.int64).reshape(-1, 3),
        metrics["class_names"], title,
    )
    history = list(history)
    if history:
        files["curves"] = report_dir / "curves.png"
        plot_curves(files["curves"], history, title)
    metrics = {
        "title": title,
        **metrics,
        "extra": extra,
        "files": {name: str(path) for name, path in files.items()},
    }
    with atomic_write(files["summary"], "w") as handle:
        handle.write(summary_text(metrics, extra, title=title))
    write_json(files["metrics"], metrics)
    return metrics
