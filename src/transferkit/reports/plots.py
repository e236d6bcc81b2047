"""The report's pictures: confusion matrix, training curves, image mistakes, image grids.

Figures are drawn with matplotlib's Agg canvas directly (no `pyplot`), so plotting works on servers
without a display, never opens a window, and leaves the user's pyplot state alone. Every PNG is
written atomically.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import InputError
from transferkit.files import atomic_write

__all__ = [
    "plot_confusion_matrix",
    "plot_curves",
    "plot_image_mistakes",
    "plot_image_grid",
    "phase_spans",
]

_DPI = 110
# A confusion matrix of more classes shows only those with the most mistakes.
PLOTTED_CLASSES = 40
_TRAIN_COLOR = "#1f77b4"
_VAL_COLOR = "#d62728"
_PHASE_COLORS = ("#ffffff", "#fdf1d8", "#e3f0e3", "#e8e4f4")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=_DPI, bbox_inches="tight")
    return path


def _short(text: Any, limit: int) -> str:
    """`text` cut to `limit` characters in the middle, so names that share a long prefix or
    suffix (`photos_of_class_1`, `photos_of_class_2`) stay distinct."""
    text = str(text)
    if len(text) <= limit:
        return text
    tail = (limit - 1) // 2
    return text[: limit - 1 - tail] + "…" + text[-tail:]


# -- confusion matrix ---------------------------------------------------------------------------


def plot_confusion_matrix(
    path: str | os.PathLike, matrix, class_names: Sequence[str], title: str = ""
) -> Path:
    """Draws a confusion matrix: colour and percentages normalised per true class (row), counts
    in each cell. Sized for 2 to ~30 classes; beyond ~30 the cells are left unlabelled, and
    beyond `PLOTTED_CLASSES` (40) only the classes with the most mistakes are drawn (the title
    says so; n and accuracy stay those of all classes).

    Args:
        path: the PNG to write.
        matrix: `(k, k)` counts, rows = true class, columns = predicted class; or
            `[true, predicted, count]` rows (the non-zero cells).
        class_names: the `k` class names.
        title: the figure title. Default `""`.
    """
    k = len(class_names)
    cells = _cells(matrix, k)
    n, right = int(cells[:, 2].sum()), int(cells[cells[:, 0] == cells[:, 1], 2].sum())
    keep, shown = np.arange(k), ""
    if k > PLOTTED_CLASSES:
        keep = _most_confused(cells, k, PLOTTED_CLASSES)
        shown = f"\nthe {PLOTTED_CLASSES} of {k} classes with the most mistakes"
    # Shares are of all the true class's examples, also those predicted as a class not drawn.
    totals = np.bincount(cells[:, 0], cells[:, 2], k)[keep].reshape(-1, 1)
    matrix, class_names, k = _sub_matrix(cells, k, keep), [class_names[i] for i in keep], len(keep)
    fractions = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    names = [_short(name, 24) for name in class_names]
    longest = max(len(name) for name in names)
    cell = 0.9 if k <= 6 else 0.55 if k <= 15 else 0.42
    side = max(4.0, cell * k) + 0.07 * longest
    figure = _figure(side + 1.2, side)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("share of the true class")
    colorbar.ax.yaxis.set_major_formatter(_percent_formatter())
    axes.set_xticks(range(k))
    axes.set_yticks(range(k))
    tick_size = 10 if k <= 10 else 8 if k <= 20 else 6.5
    axes.set_xticklabels(names, rotation=45 if k > 3 or longest > 8 else 0, ha="right"
                         if k > 3 or longest > 8 else "center", rotation_mode="anchor",
                         fontsize=tick_size)
    axes.set_yticklabels(names, fontsize=tick_size)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if k <= 30:
        font = 10 if k <= 6 else 8 if k <= 12 else 6.5 if k <= 20 else 5.5
        for row in range(k):
            for column in range(k):
                count = matrix[row, column]
                if k > 12 and count == 0:
                    continue  # keep big matrices readable: empty cells stay blank
                share = fractions[row, column]
                label = f"{count}\n{share:.0%}" if k <= 12 else f"{count}"
                axes.text(
                    column,
                    row,
                    label,
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if share > 0.55 else "black",
                )
    accuracy = right / n if n else 0.0
    heading = f"{title}\n" if title else ""
    axes.set_title(f"{heading}confusion matrix, n={n}, accuracy {accuracy:.1%}{shown}")
    return _save(figure, path)


def _cells(matrix, k: int) -> np.ndarray:
    """The non-zero cells `[true, predicted, count]` of a `(k, k)` count matrix, or the matrix
    itself when given as such rows (what `classification_metrics` keeps for many classes)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.shape == (k, k):
        rows, columns = np.nonzero(matrix)
        return np.stack([rows, columns, matrix[rows, columns]], axis=1)
    if matrix.ndim != 2 or matrix.shape[1] != 3 or (matrix.size and matrix[:, :2].max() >= k):
        raise InputError(
            f"`matrix` must be ({k}, {k}) for {k} class names, or [true, predicted, count] "
            f"rows naming classes below {k}. Received: shape {matrix.shape}."
        )
    return matrix


def _most_confused(cells: np.ndarray, k: int, limit: int) -> np.ndarray:
    """The indices (sorted) of the `limit` classes with the most mistakes, as the true or the
    predicted class; ties go to the class with more examples."""
    true, predicted, count = cells.T
    wrong = count * (true != predicted)
    mistakes = np.bincount(true, wrong, k) + np.bincount(predicted, wrong, k)
    order = np.lexsort((-np.bincount(true, count, k), -mistakes))
    return np.sort(order[:limit])


def _sub_matrix(cells: np.ndarray, k: int, keep: np.ndarray) -> np.ndarray:
    position = np.full(k, -1)
    position[keep] = np.arange(len(keep))
    rows, columns = position[cells[:, 0]], position[cells[:, 1]]
    inside = (rows >= 0) & (columns >= 0)
    matrix = np.zeros((len(keep), len(keep)), dtype=np.int64)
    np.add.at(matrix, (rows[inside], columns[inside]), cells[inside, 2])
    return matrix


def _percent_formatter():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


# -- training curves ----------------------------------------------------------------------------


def phase_spans(history: Sequence[Mapping]) -> tuple[list[int], list[tuple[str, int, int]]]:
    """Continuous epoch numbers for history rows, and each phase's span.

    Returns:
        `(x, spans)`: `x[i]` is the 1-based epoch of row `i` counted across all phases, and each
        span is `(phase, first_x, last_x)` in the order the phases ran.
    """
    x: list[int] = []
    spans: list[tuple[str, int, int]] = []
    offset = 0
    current = None
    last = 0
    for row in history:
        phase = str(row.get("phase") or "train")
        epoch = int(row.get("epoch") or (last - offset + 1))
        if phase != current:
            offset = last  # a new phase starts after the last epoch so far
            current = phase
            spans.append([phase, offset + epoch, offset + epoch])
        value = offset + epoch
        spans[-1][2] = value
        x.append(value)
        last = value
    return x, [tuple(span) for span in spans]


def _accuracy_key(history: Sequence[Mapping]) -> str | None:
    keys = [k for row in history for k in row if k not in ("phase", "epoch")]
    train = [k for k in dict.fromkeys(keys) if not k.startswith("val_") and k != "loss"]
    for preferred in ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy",
                      "binary_accuracy", "acc"):
        if preferred in train:
            return preferred
    accuracies = [k for k in train if "acc" in k]
    return accuracies[0] if accuracies else None


def plot_curves(path: str | os.PathLike, history: Sequence[Mapping], title: str = "") -> Path:
    """Loss and accuracy per epoch, training vs validation, with each phase shaded and named.

    Args:
        path: the PNG to write.
        history: rows of `history.csv` (`phase`, `epoch`, metrics), in the order they ran.
        title: the figure title. Default `""`.

    Raises:
        InputError: `history` is empty.
    """
    from matplotlib.patches import Patch

    history = list(history)
    if not history:
        raise InputError("No training history to plot: `history` is empty.")
    x, spans = phase_spans(history)
    panels = [("loss", "loss")]
    accuracy = _accuracy_key(history)
    if accuracy:
        panels.append((accuracy, "accuracy"))
    figure = _figure(5.2 * len(panels) + 0.6, 4.0)
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (key, label) in zip(axes_list, panels):
        phase_handles = []
        for index, (phase, first, last) in enumerate(spans):
            color = _PHASE_COLORS[index % len(_PHASE_COLORS)]
            axes.axvspan(first - 0.5, last + 0.5, color=color, alpha=1.0, zorder=0, lw=0)
            if index:
                axes.axvline(first - 0.5, color="#555555", ls="--", lw=1, zorder=1)
            phase_handles.append(Patch(facecolor=color, edgecolor="#999999", label=phase))
        lines = []
        for metric, name, color in ((key, "train", _TRAIN_COLOR),
                                    (f"val_{key}", "validation", _VAL_COLOR)):
            points = [(xi, row.get(metric)) for xi, row in zip(x, history)]
            points = [(xi, float(v)) for xi, v in points if isinstance(v, (int, float))
                      and np.isfinite(v)]
            if points:
                xs, ys = zip(*points)
                (line,) = axes.plot(xs, ys, marker="o", ms=3.5, color=color, label=name, zorder=3)
                lines.append(line)
        axes.set_xlabel("epoch (all phases)")
        axes.set_ylabel(label)
        axes.set_title(label if key == label else f"{label} ({key})")
        axes.set_xlim(0.5, max(x) + 0.5)
        axes.xaxis.get_major_locator().set_params(integer=True)
        if label == "accuracy":
            axes.yaxis.set_major_formatter(_percent_formatter())
        axes.grid(True, alpha=0.3, zorder=2)
        axes.legend(handles=lines + phase_handles, loc="best", fontsize=8, framealpha=0.9)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


# -- images -------------------------------------------------------------------------------------


def _as_image(image, max_side: int = 256) -> np.ndarray:
    """An RGB uint8 array no larger than `max_side`, from an array or an image path."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        from transferkit.data.images import load_image

        image = load_image(image)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"Images must be (height, width, 3) arrays or file paths. Received: shape "
            f"{array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 4:
        array = array[..., :3]
    if array.dtype != np.uint8:
        high = float(np.nanmax(array)) if array.size else 0.0
        scale = 255.0 if high <= 1.0 else 1.0  # floats in [0, 1] or [0, 255]
        array = np.clip(np.nan_to_num(array.astype(np.float64)) * scale, 0, 255).astype(np.uint8)
    if max(array.shape[:2]) > max_side:
        picture = Image.fromarray(array)
        picture.thumbnail((max_side, max_side))
        array = np.asarray(picture)
    return array


def plot_image_grid(
    path: str | os.PathLike,
    images: Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    title: str = "",
) -> Path:
    """Draws images in a grid, each with an optional title (e.g. an augmentation preview).

    Args:
        path: the PNG to write.
        images: uint8 `(height, width, 3)` arrays (floats in [0, 1] or [0, 255] work too) or paths.
        titles: one title per image. Default `None` (no titles).
        ncols: images per row. Default `4`.
        title: the figure title. Default `""`.
    """
    images = list(images)
    if not images:
        raise InputError("`images` is empty: nothing to draw.")
    if titles is not None and len(titles) != len(images):
        raise InputError(
            f"`titles` must have one title per image ({len(images)}). Received: {len(titles)}."
        )
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise InputError(f"`ncols` must be an int >= 1. Received: ncols={ncols!r}.")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    title_lines = max((len(_wrap(t)) for t in titles), default=0) if titles else 0
    tile = 2.4
    figure = _figure(tile * ncols, (tile + 0.18 * title_lines) * nrows + (0.4 if title else 0))
    axes_grid = figure.subplots(nrows, ncols, squeeze=False)
    for index, axes in enumerate(axes_grid.flat):
        axes.set_axis_off()
        if index >= len(images):
            continue
        axes.imshow(_as_image(images[index]))
        if titles is not None:
            axes.set_title("\n".join(_wrap(titles[index])), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    return _save(figure, path)


def _wrap(text: str, width: int = 30) -> list[str]:
    return textwrap.wrap(str(text), width=width, max_lines=3, placeholder="…") or [""]


def plot_image_mistakes(
    path: str | os.PathLike,
    images: Sequence,
    true_labels: Sequence,
    predicted_labels: Sequence,
    scores: Sequence[float],
    max_items: int = 16,
    beside: Callable[[list], list] | None = None,
) -> Path:
    """A grid of the most confident wrong predictions, titled `true: X / pred: Y (0.97)`.

    Args:
        path: the PNG to write.
        images: the images (uint8 arrays or file paths); only the shown ones are read.
        true_labels: the true class of each image (names read best).
        predicted_labels: the predicted class of each image.
        scores: the model's score for its prediction (e.g. the max probability).
        max_items: at most this many tiles. Default `16`.
        beside: given the shown images, a picture to draw beside each (its heat map:
            `transferkit.explain.images.overlays`), or None for one without. Default `None`.
    """
    from transferkit.reports.metrics import mistake_order

    order = mistake_order(true_labels, predicted_labels, scores, images, "images")
    shown = order[:max_items]
    if not len(shown):
        figure = _figure(4, 1.2)
        figure.text(0.5, 0.5, f"No mistakes on {len(images)} images.", ha="center", va="center")
        return _save(figure, path)
    titles = [
        f"true: {_short(true_labels[i], 24)} / pred: {_short(predicted_labels[i], 24)} "
        f"({float(scores[i]):.2f})"
        for i in shown
    ]
    heading = f"Most confident mistakes: {len(shown)} of {len(order)} wrong ({len(images)} images)"
    pictures = [images[i] for i in shown]
    if beside is not None:
        pictures = [_side_by_side(picture, extra)
                    for picture, extra in zip(pictures, beside(pictures))]
        heading += "; beside each, where the evidence for the prediction lies"
    return plot_image_grid(path, pictures, titles, ncols=4, title=heading)


def _side_by_side(picture, extra):
    """`picture` and `extra` (same height) in one tile, a white gap between; `picture` alone
    when `extra` is None."""
    if extra is None:
        return picture
    if isinstance(picture, (str, os.PathLike)):
        from transferkit.data.images import load_image

        picture = load_image(picture)
    picture = np.asarray(picture)
    gap = np.full((picture.shape[0], max(2, picture.shape[1] // 40), 3), 255, dtype=np.uint8)
    return np.concatenate([picture[..., :3], gap, np.asarray(extra)[..., :3]], axis=1)
