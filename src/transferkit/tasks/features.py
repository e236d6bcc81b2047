"""Mode 2 of a pretrained model, the feature extractor: pooled backbone features of images."""

from __future__ import annotations

import os

import numpy as np

from transferkit.config import ImageTrainConfig
from transferkit.errors import InputError

__all__ = ["extract_features"]

_D = ImageTrainConfig()


def extract_features(
    backbone: str,
    images,
    *,
    weights: str | os.PathLike | None = _D.weights,
    image_size=_D.image_size,
    input_range: str | None = _D.input_range,
    batch_size: int = _D.batch_size,
    cache: bool = True,
    runtime: str = _D.runtime,
) -> np.ndarray:
    """Pooled features of a pretrained backbone: one vector per image (mode 2, "feature extractor").

    Args:
        backbone: a registered backbone name (e.g. `"efficientnet_lite0"`), a SavedModel folder,
            a KerasHub preset folder or an `hf://` handle (`transferkit.backbones.sources`).
        images: image paths, an RGB array, a batch array, or a list of arrays (values 0-255).
        weights: `"imagenet"` (the default), `None` or a `.weights.h5` path.
        image_size: resize to this side or `(height, width)`; default `None`: the backbone's.
        input_range: the range a SavedModel folder takes pixels in (`"0,1"`, `"-1,1"`,
            `"0,255"`); default `None`: [0, 1].
        batch_size: images per forward pass. Default `ImageTrainConfig.batch_size` (32).
        cache: reuse and store features in the feature cache (not with `weights=None`).
            Default `True`.
        runtime: `"auto"`, `"onnx"` or `"keras"`: what runs the backbone (see
            `transferkit.runtimes`). Default `ImageTrainConfig.runtime` (`"auto"`).

    Returns:
        `float32` array `(n, feature_dim)`, global-average-pooled.

    Raises:
        ImageReadError: a file is missing or unreadable.
        UnknownBackboneError: `backbone` is not registered.
    """
    from transferkit.backbones.image_encoder import ImageEncoder

    if not isinstance(backbone, (str, os.PathLike)):
        raise InputError(
            "`backbone` must be a registered backbone name such as 'efficientnet_lite0' or a "
            "backbone folder. "
            f"Received: {type(backbone).__name__}."
        )
    encoder = ImageEncoder(backbone, image_size=image_size, input_range=input_range,
                           weights=weights, cache_dir=None if cache else False, runtime=runtime)
    return encoder.features(images, batch_size=batch_size)
