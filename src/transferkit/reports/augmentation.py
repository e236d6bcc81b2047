"""The augmentation preview: a grid of augmented versions of one image, to check the choice."""

from __future__ import annotations

import os

import numpy as np

from transferkit.checks import check_int
from transferkit.config import ImageTrainConfig
from transferkit.data.augmentation import DEFAULT_AUGMENT, augment_views, parse_augment
from transferkit.reports.plots import plot_image_grid

__all__ = ["preview_augmentation"]


def preview_augmentation(
    image,
    path: str | os.PathLike,
    augment=DEFAULT_AUGMENT,
    *,
    image_size,
    policy: str = "center_crop",
    count: int = 12,
    seed: int = ImageTrainConfig.seed,
    title: str = "",
):
    """Writes a grid of augmented versions of one image (the first panel is the original).

    Args:
        image: an image file or an RGB array.
        path: the `.png` to write (refused before any work if it is a folder or ends otherwise).
        augment: as `parse_augment`. Default `flip,rotate,zoom`.
        image_size: the size the classifier sees (side, or `(height, width)`).
        policy: `"center_crop"` (default) or `"stretch"`.
        count: panels in the grid, original included. Default 12.
        seed: seed of the random layers. Default `ImageTrainConfig.seed` (0).
        title: figure title. Default: the augmentations used.

    Returns:
        The path written.
    """
    from transferkit.checks import check_image_size, check_output_file
    from transferkit.data.images import load_resized, resize_image

    check_output_file(path, "path", ".png")
    check_int(count, "count", minimum=1)
    size = check_image_size(image_size)
    if isinstance(image, (str, os.PathLike)):
        base = load_resized(image, size, policy).astype(np.float32)
    else:
        base = resize_image(np.asarray(image, dtype=np.uint8), size, policy)
    names = parse_augment(augment)
    panels = [base]
    titles = ["original"]
    if names and count > 1:
        views = augment_views(base[None], names, count - 1, seed=seed)[0]
        panels.extend(views)
        titles.extend(f"view {i + 1}" for i in range(count - 1))
    label = ", ".join(names) if names else "none"
    plot_image_grid(
        path,
        np.clip(np.stack(panels), 0, 255).astype(np.uint8),
        titles=titles,
        ncols=4,
        title=title or f"Augmentation: {label}",
    )
    return path
