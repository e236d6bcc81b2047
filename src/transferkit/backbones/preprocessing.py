"""Image preprocessing bound to a backbone.

Each backbone declares how raw RGB pixels (floats in [0, 255]) become its inputs: a per-channel
mean and std on the 0-255 scale, and the channel order. The Keras layer
`transferkit.layers.ImagePreprocessing.of(preprocessing)` applies it inside the model, so the right
`preprocess_input` travels with the backbone and with every model saved from it (the most common
transfer-learning bug is the wrong one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Preprocessing", "PRESETS"]


@dataclass(frozen=True)
class Preprocessing:
    """How a backbone wants its pixels.

    Args:
        mode: a short name (`"tf"`, `"torch"`, `"caffe"`, `"lite"`, `"builtin"`), for humans.
        mean: per-channel mean, 0-255 scale, in the backbone's channel order. Default `(0, 0, 0)`.
        std: per-channel std, 0-255 scale. Default `(1, 1, 1)`.
        channel_order: `"rgb"` (default) or `"bgr"`; inputs are always RGB.
        resize: `"center_crop"` (resize the shorter side, crop the centre; default) or `"stretch"`.
    """

    mode: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "rgb"
    resize: str = "center_crop"

    def as_dict(self) -> dict:
        return asdict(self)


# The modes of keras.applications' `imagenet_utils.preprocess_input`, expressed as mean/std on the
# 0-255 scale, plus EfficientNet-Lite's `(x - 127) / 128` and models that preprocess inside.
PRESETS: dict[str, Preprocessing] = {
    "tf": Preprocessing("tf", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "torch": Preprocessing(
        "torch", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    ),
    "caffe": Preprocessing("caffe", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), "bgr"),
    "lite": Preprocessing("lite", (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
    "builtin": Preprocessing("builtin"),
}
