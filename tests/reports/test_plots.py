"""The report's pictures: confusion matrix, curves, image mistakes, image grids."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import HISTORY, png_size
from transferkit.errors import InputError
from transferkit.reports.plots import (
    phase_spans,
    plot_confusion_matrix,
    plot_curves,
    plot_image_grid,
    plot_image_mistakes,
)


@pytest.mark.parametrize("k", [2, 12, 30])
def test_confusion_matrix_scales_with_the_number_of_classes(tmp_path, k):
    rng = np.random.default_rng(k)
    matrix = rng.integers(0, 20, (k, k)) + np.eye(k, dtype=int) * 30
    path = plot_confusion_matrix(tmp_path / "cm.png", matrix, [f"class_{i}" for i in range(k)])
    width, _ = png_size(path)
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
    width, height = png_size(plot_curves(tmp_path / "c.png", history))
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
    png_size(path)
    none = plot_image_mistakes(tmp_path / "none.png", images[:2], true[:2], true[:2], [0.5, 0.5])
    png_size(none)
    with pytest.raises(InputError, match="same length"):
        plot_image_mistakes(tmp_path / "x.png", images, true, pred, [0.5])


def test_image_grid(tmp_path):
    images = [np.full((32, 32, 3), 20 * i, dtype=np.uint8) for i in range(12)]
    images[1] = np.linspace(0, 1, 32 * 32).reshape(32, 32)  # grayscale floats in [0, 1]
    width, height = png_size(plot_image_grid(tmp_path / "g.png", images,
                                         [f"augmented {i}" for i in range(12)], title="preview"))
    assert width > height  # 4 columns, 3 rows
    with pytest.raises(InputError, match=r"one title per image \(12\)\. Received: 2"):
        plot_image_grid(tmp_path / "x.png", images, ["a", "b"])
    with pytest.raises(InputError, match=r"`ncols` must be an int >= 1"):
        plot_image_grid(tmp_path / "x.png", images, ncols=0)
    with pytest.raises(InputError, match=r"\(height, width, 3\) arrays or file paths"):
        plot_image_grid(tmp_path / "x.png", [np.zeros((2, 2, 2, 2))])


def test_many_classes_draw_those_with_the_most_mistakes(tmp_path):
    # Issue 16: 10,000 classes sized the figure at 4,200 inches and ran out of memory.
    from transferkit.reports.plots import PLOTTED_CLASSES, _cells, _most_confused

    k = 500
    matrix = np.diag(np.full(k, 10))
    matrix[7, 300] = matrix[300, 7] = 5  # the most confused pair
    matrix[42, 42] = 0
    matrix[42, 43] = 3
    keep = _most_confused(_cells(matrix, k), k, PLOTTED_CLASSES)
    assert len(keep) == PLOTTED_CLASSES and {7, 300, 42, 43} <= set(keep.tolist())
    path = plot_confusion_matrix(tmp_path / "cm.png", matrix, [f"c{i}" for i in range(k)])
    assert max(png_size(path)) < 2500
    # The same from the non-zero cells only (what metrics keep for many classes).
    rows, columns = np.nonzero(matrix)
    cells = np.stack([rows, columns, matrix[rows, columns]], axis=1)
    plot_confusion_matrix(tmp_path / "cells.png", cells, [f"c{i}" for i in range(k)])
    assert np.array_equal(_cells(cells, k), _cells(matrix, k))
    with pytest.raises(InputError, match="naming classes below 500"):
        plot_confusion_matrix(tmp_path / "x.png", [[0, 500, 1]], [f"c{i}" for i in range(k)])
