"""Data augmentation as Keras preprocessing layers, named on the command line as `flip,rotate,zoom`.

The layers live inside the classifier, between the resize and the backbone, so they are active only
while training (Keras random layers pass inputs through at inference) and travel with the saved
model without custom code. They work on RGB pixels in [0, 255].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from transferkit.config import ImageTrainConfig
from transferkit.errors import InputError

__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_AUGMENT",
    "parse_augment",
    "build_augmentation",
    "augment_views",
]

# name -> (layer factory taking a seed, what it does). The strengths follow the Keras
# transfer-learning guide: mild enough to keep a photo's label.
AUGMENTATIONS = {
    "flip": (
        lambda seed: _layers().RandomFlip("horizontal", seed=seed, name="flip"),
        "mirror left-right",
    ),
    "vflip": (
        lambda seed: _layers().RandomFlip("vertical", seed=seed, name="vflip"),
        "mirror top-bottom (for images without an up, e.g. microscopy)",
    ),
    "rotate": (
        lambda seed: _layers().RandomRotation(0.05, seed=seed, name="rotate"),
        "rotate up to 18 degrees either way",
    ),
    "zoom": (
        lambda seed: _layers().RandomZoom((-0.2, 0.0), seed=seed, name="zoom"),
        "zoom in up to 20%",
    ),
    "translate": (
        lambda seed: _layers().RandomTranslation(0.1, 0.1, seed=seed, name="translate"),
        "shift up to 10% of the size",
    ),
    "contrast": (
        lambda seed: _layers().RandomContrast(0.2, seed=seed, name="contrast"),
        "change contrast up to 20%",
    ),
    "brightness": (
        lambda seed: _layers().RandomBrightness(0.2, value_range=(0, 255), seed=seed,
                                                name="brightness"),
        "change brightness up to 20%",
    ),
}

# `transferkit.config.ImageTrainConfig.augment` is where the default is written.
DEFAULT_AUGMENT = tuple(ImageTrainConfig.augment.split(","))


def _layers():
    import keras

    return keras.layers


def parse_augment(augment) -> tuple[str, ...]:
    """Normalises an augmentation choice to a tuple of names.

    Args:
        augment: `None`, `""` or `"none"` (no augmentation), `"default"` (`flip,rotate,zoom`), a
            comma-separated string (`"flip,rotate"`) or a sequence of names.

    Raises:
        InputError: an unknown name; the message lists the known ones.
    """
    if augment is None:
        return ()
    if isinstance(augment, str):
        items = [a.strip().lower() for a in augment.split(",")]
    elif isinstance(augment, Sequence):
        items = [str(a).strip().lower() for a in augment]
    else:
        raise InputError(
            "`augment` must be a comma-separated string such as 'flip,rotate' or a list of names. "
            f"Received: augment={augment!r}."
        )
    items = [a for a in items if a]
    if items in ([], ["none"]):
        return ()
    if items == ["default"]:
        return DEFAULT_AUGMENT
    unknown = [a for a in items if a not in AUGMENTATIONS]
    if unknown:
        raise InputError(
            f"Unknown augmentation {', '.join(map(repr, unknown))}. Choose from "
            f"{', '.join(AUGMENTATIONS)} (comma-separated), 'default' or 'none'."
        )
    return tuple(dict.fromkeys(items))  # drop repeats, keep order


def build_augmentation(augment, seed: int | None = None):
    """A `keras.Sequential` named `"augmentation"` of the chosen layers, or `None` if none.

    Args:
        augment: as `parse_augment`.
        seed: base seed of the random layers (layer `i` gets `seed + i`). Default `None`.
    """
    import keras

    names = parse_augment(augment)
    if not names:
        return None
    layers = [
        AUGMENTATIONS[name][0](None if seed is None else seed + i) for i, name in enumerate(names)
    ]
    return keras.Sequential(layers, name="augmentation")


def augment_views(images: np.ndarray, augment, count: int, *, seed: int) -> np.ndarray:
    """`count` augmented versions of each image: `(n, count, h, w, 3)` float32 in [0, 255].

    Args:
        images: `(n, h, w, 3)` RGB in [0, 255].
        augment: as `parse_augment`; must name at least one augmentation.
        count: views per image.
        seed: seed of the random layers.
    """
    layer = build_augmentation(augment, seed=seed)
    if layer is None:
        raise InputError("`augment_views` needs at least one augmentation, e.g. augment='flip'.")
    images = np.asarray(images, dtype=np.float32)
    views = [np.asarray(layer(images, training=True)) for _ in range(count)]
    return np.stack(views, axis=1)
