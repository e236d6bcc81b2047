"""The backbone registry: names in, specs as data, Keras models out.

A family module (`efficientnet_lite.py`, `keras_applications.py`) describes each backbone with a
`BackboneSpec` and calls `register(spec)` at import. Family modules are imported the first time the
registry is asked anything, so `import transferkit` stays light.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from transferkit.backbones.preprocessing import Preprocessing
from transferkit.errors import InputError, UnknownBackboneError, WeightsError

__all__ = [
    "BackboneSpec",
    "register",
    "get_spec",
    "list_backbones",
    "get_backbone",
    "backbone_table",
]

# Modules that register backbones when imported. Order sets the order of equal-family listings.
FAMILY_MODULES = (
    "transferkit.backbones.efficientnet_lite",
    "transferkit.backbones.keras_applications",
)


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

    def as_dict(self) -> dict:
        return {
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


_REGISTRY: dict[str, BackboneSpec] = {}
_loaded = False


def register(spec: BackboneSpec) -> BackboneSpec:
    """Adds `spec` to the registry; a second spec under the same name is an error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"A backbone named {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in FAMILY_MODULES:
            importlib.import_module(module)


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def get_spec(name: str) -> BackboneSpec:
    """The spec registered under `name` (case and `-`/`_` insensitive).

    Raises:
        UnknownBackboneError: no such backbone; the message lists the nearest names.
    """
    _ensure_loaded()
    key = _normalize(str(name))
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = _nearest(key, list(_REGISTRY))
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownBackboneError(
        f"Unknown backbone {name!r}.{hint} Run `transferkit backbones` to list all "
        f"{len(_REGISTRY)} backbones."
    )


def _nearest(key: str, names: list[str], n: int = 5) -> list[str]:
    """The `n` names most similar to `key`, best first, ties in alphabetical order."""
    scored = [(difflib.SequenceMatcher(None, key, name).ratio(), name) for name in names]
    return [name for score, name in sorted(scored, key=lambda t: (-t[0], t[1])) if score >= 0.5][:n]


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the shell-style `pattern` (default `"*"`), sorted."""
    _ensure_loaded()
    pattern = _normalize(pattern)
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def backbone_table(pattern: str = "*") -> list[dict]:
    """One dict of plain data per backbone (see `BackboneSpec.as_dict`)."""
    return [get_spec(n).as_dict() for n in list_backbones(pattern)]


def offline_backbones() -> list[str]:
    """Names whose ImageNet weights load on this machine without a download."""
    return [n for n in list_backbones() if get_spec(n).weights_available()]


def _check_input_shape(spec: BackboneSpec, input_shape) -> tuple[int, int, int]:
    if input_shape is None:
        return (spec.default_input_size, spec.default_input_size, 3)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape[2] != 3:
        raise InputError(
            "`input_shape` must be (height, width, 3) for RGB images. "
            f"Received: input_shape={input_shape!r}."
        )
    if min(shape[:2]) < spec.min_input_size:
        raise InputError(
            f"{spec.name} needs images of at least {spec.min_input_size}x{spec.min_input_size} "
            f"pixels. Received: input_shape={input_shape!r}."
        )
    return shape


def get_backbone(
    name: str,
    include_top: bool = False,
    weights: str | os.PathLike | None = "imagenet",
    input_shape=None,
    classifier_activation: str | None = "softmax",
):
    """Builds a registered backbone with its preprocessing inside.

    The returned `keras.Model` takes raw RGB images, floats in [0, 255], of `input_shape`, applies
    the backbone's own preprocessing (an `ImagePreprocessing` layer named `"preprocessing"`) and
    runs the architecture, a nested model named after the backbone (`model.get_layer(name)`).
    Without the top it returns the last feature map `(h, w, feature_dim)`.

    Args:
        name: a name from `list_backbones()`.
        include_top: keep the 1000-class ImageNet classifier. Default `False`.
        weights: `"imagenet"` (default: packaged weights, or Keras's downloader for users online),
            `None` (random init), or a path to a `.weights.h5` file saved from the bare
            architecture (`model.get_layer(name).save_weights(path)`).
        input_shape: `(height, width, 3)`; default the spec's `default_input_size` square.
        classifier_activation: activation of the top (`include_top=True`); default `"softmax"`,
            `None` for logits.

    Returns:
        A `keras.Model` with the spec at `model.transferkit_spec`.

    Raises:
        UnknownBackboneError: `name` is not registered.
        InputError: a bad `input_shape` or a weights path that does not exist.
        WeightsUnavailableError: `"imagenet"` weights would need a download and none is possible.
    """
    import keras

    spec = get_spec(name)
    shape = _check_input_shape(spec, input_shape)
    weights_path = None
    if weights is not None and weights != "imagenet":
        weights_path = os.fspath(weights)
        if not os.path.isfile(weights_path):
            raise InputError(
                f"Weights file not found: {weights_path}. Pass `weights='imagenet'`, `weights=None`, "
                "or the path of a `.weights.h5` file."
            )
    base = spec.builder(
        include_top=include_top,
        weights=None if weights_path else weights,
        input_shape=shape,
        classifier_activation=classifier_activation,
    )
    if weights_path:
        try:
            base.load_weights(weights_path)
        except Exception as exc:  # keras raises ValueError/KeyError/OSError for mismatches
            raise WeightsError(
                f"Could not load weights from {weights_path} into {spec.name}: {exc}. The file must "
                f"be a `.weights.h5` saved from the same architecture with include_top={include_top}."
            ) from exc
    inputs = keras.Input(shape=shape, name="image")
    x = spec.preprocessing.to_layer(name="preprocessing")(inputs)
    outputs = base(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name}_with_preprocessing")
    model.transferkit_spec = spec
    return model
