"""`BackboneSpec`: everything transferkit knows about one image backbone, as plain data.

A family module (`efficientnet_lite.py`, `keras_applications.py`) or a source
(`transferkit.backbones.sources`: SavedModel folders, KerasHub presets) makes one; the registry
(`registry.py`) keeps them by name. Its own module so that the registry and the sources both
depend on it, and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from transferkit.backbones.preprocessing import Preprocessing

__all__ = ["BackboneSpec"]


@dataclass(frozen=True)
class BackboneSpec:
    """Everything transferkit knows about one pretrained image backbone.

    Args:
        name: registry name, lower case with underscores (`"efficientnet_lite0"`).
        family: architecture family (`"EfficientNet-Lite"`, `"MobileNetV2"`).
        builder: `builder(include_top, weights, input_shape, classifier_activation) -> keras.Model`;
            `weights` is `None` or `"imagenet"`; the model takes *preprocessed* inputs and is
            named `name`.
        default_input_size: side of the square input the weights were trained at.
        preprocessing: how raw RGB in [0, 255] becomes the model's input.
        feature_dim: channels of the last feature map (`include_top=False`).
        weights_source: where `weights="imagenet"` comes from, for humans.
        license: the weights' license.
        weights_available: callable answering whether `"imagenet"` weights are on this machine
            (packaged, or already in the Keras cache), so they load without a network.
        min_input_size: the smallest square input the architecture accepts. Default 32.
        description: one line for the table. Default `""`.
        why_frozen: why the backbone cannot be fine-tuned; `""` (default) when it can.
        kind: `"registered"` (default), `"saved_model"` or `"keras_hub"` (see
            `transferkit.backbones.sources`: those builders load their own weights).
    """

    name: str
    family: str
    builder: Callable[..., Any] = field(repr=False, compare=False)
    default_input_size: int
    preprocessing: Preprocessing
    feature_dim: int
    weights_source: str
    license: str
    weights_available: Callable[[], bool] = field(repr=False, compare=False)
    min_input_size: int = 32
    description: str = ""
    why_frozen: str = ""
    kind: str = "registered"

    def as_dict(self) -> dict:
        return {
            "modality": "image",
            "name": self.name,
            "family": self.family,
            "default_input_size": self.default_input_size,
            "preprocessing": self.preprocessing.as_dict(),
            "feature_dim": self.feature_dim,
            "weights_source": self.weights_source,
            "license": self.license,
            "available_offline": bool(self.weights_available()),
            "min_input_size": self.min_input_size,
            "description": self.description,
        }
