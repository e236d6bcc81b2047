"""Registries: names in, specs as data, Keras models out.

`Registry` is the one mechanism behind every name transferkit resolves (image backbones, word
vectors, sentence encoders, text-encoder kinds): one normaliser, one "did you mean".

For image backbones, a family module (`efficientnet_lite.py`, `keras_applications.py`) describes
each backbone with a `BackboneSpec` and calls `register(spec)` at import. Family modules are
imported the first time the registry is asked anything, so `import transferkit` stays light.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
from typing import Any

from transferkit.backbones.spec import BackboneSpec
from transferkit.config import ImageTrainConfig
from transferkit.errors import InputError, UnknownBackboneError, WeightsError

__all__ = [
    "BACKBONES",
    "Registry",
    "check_input_size",
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
    "transferkit.testing",  # `test_cnn`: a tiny random backbone for tests, listed as such
)


class Registry:
    """Names in, specs out: one registry mechanism for every kind of pretrained asset.

    Image backbones, packaged word vectors, packaged sentence encoders and text-encoder kinds each
    keep one `Registry`. Names are matched case-insensitively with `-` and `_` alike; an unknown
    name raises `UnknownBackboneError` with the nearest registered names. Registering a name twice
    is an error.

    Args:
        what: what is registered, for messages (`"backbone"`, `"word vectors"`).
        modules: modules that register entries when imported; imported on the first query, so
            that creating the registry stays cheap. Default `()`.
        hint: the end of the unknown-name message: what to do instead; `{names}` in it becomes the
            registered names. Default `""`.
    """

    def __init__(self, what: str, modules: tuple[str, ...] = (), hint: str = ""):
        self.what = what
        self.hint = hint
        self._modules = modules
        self._loaded = not modules
        self._entries: dict[str, Any] = {}  # normalised name or alias -> entry
        self._names: dict[str, str] = {}  # normalised name -> display name (no aliases)

    @staticmethod
    def normalize(name: str) -> str:
        """The key a name is matched by: stripped, lower case, `-` read as `_`."""
        return str(name).strip().lower().replace("-", "_")

    def register(self, name: str, entry: Any, aliases: tuple[str, ...] = ()) -> Any:
        """Adds `entry` under `name` (and `aliases`); returns it. A name in use raises ValueError."""
        keys = [self.normalize(n) for n in (name, *aliases)]
        for key, shown in zip(keys, (name, *aliases)):
            if key in self._entries:
                raise ValueError(f"The {self.what} name {shown!r} is already registered.")
        for key in keys:
            self._entries[key] = entry
        self._names[keys[0]] = name
        return entry

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def find(self, name: str) -> Any | None:
        """The entry registered under `name` (or an alias), or None."""
        self._load()
        return self._entries.get(self.normalize(name))

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def get(self, name: str) -> Any:
        """The entry registered under `name`.

        Raises:
            UnknownBackboneError: no such name; the message lists the nearest names.
        """
        entry = self.find(name)
        if entry is not None:
            return entry
        close = self.nearest(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        tail = " " + self.hint.replace("{names}", ", ".join(self.names())) if self.hint else ""
        raise UnknownBackboneError(f"Unknown {self.what} {name!r}.{hint}{tail}")

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (not aliases) matching the shell-style `pattern`, sorted."""
        self._load()
        pattern = self.normalize(pattern)
        return sorted(shown for key, shown in self._names.items() if fnmatch.fnmatchcase(key, pattern))

    def nearest(self, name: str, n: int = 5, cutoff: float = 0.5) -> list[str]:
        """Up to `n` registered names most similar to `name`, best first, ties alphabetical."""
        self._load()
        key = self.normalize(name)
        scored = [
            (difflib.SequenceMatcher(None, key, candidate).ratio(), shown)
            for candidate, shown in self._names.items()
        ]
        ranked = sorted(scored, key=lambda t: (-t[0], t[1]))
        return [shown for score, shown in ranked if score >= cutoff][:n]

    def __len__(self) -> int:
        self._load()
        return len(self._names)


BACKBONES = Registry(
    "backbone", FAMILY_MODULES, hint="Run `transferkit backbones` to list all image backbones."
)


def register(spec: BackboneSpec) -> BackboneSpec:
    """Adds `spec` to the image backbone registry; a second spec under the same name is an error."""
    return BACKBONES.register(spec.name, spec)


def get_spec(name: str, input_range: str | None = None) -> BackboneSpec:
    """The spec registered under `name` (case and `-`/`_` insensitive), or the spec of a
    SavedModel folder, KerasHub preset folder or handle (`transferkit.backbones.sources`).

    Args:
        name: a registered name, a folder or an `hf://` / `kaggle://` handle.
        input_range: the value range a SavedModel takes its pixels in (`"0,1"`, `"-1,1"`,
            `"0,255"`); default `None`: [0, 1]. Only for SavedModel folders.

    Raises:
        UnknownBackboneError: no such backbone; the message lists the nearest names.
        InputError: a folder that is no backbone, or `input_range` where it does not apply.
    """
    spec = BACKBONES.find(name)
    if spec is None:
        from transferkit.backbones.sources import is_source, source_spec

        if is_source(name):
            return source_spec(name, input_range)
        spec = BACKBONES.get(name)  # raises, with the nearest names
    if input_range is not None:
        raise InputError(
            f"`input_range` is for SavedModel folders; {spec.name} has its own preprocessing. "
            f"Leave it unset. Received: input_range={input_range!r}."
        )
    return spec


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching the shell-style `pattern` (default `"*"`), sorted."""
    return BACKBONES.names(pattern)


def backbone_table(pattern: str = "*") -> list[dict]:
    """One dict of plain data per backbone (see `BackboneSpec.as_dict`)."""
    return [get_spec(n).as_dict() for n in list_backbones(pattern)]


def offline_backbones() -> list[str]:
    """Names whose ImageNet weights load on this machine without a download."""
    return [n for n in list_backbones() if get_spec(n).weights_available()]


def size_unknown(spec: BackboneSpec) -> str:
    """The message for a backbone whose input size only the user knows."""
    return (
        f"{spec.weights_source} takes images of any size, and which size it was trained at is "
        "not in the folder: pass `image_size` (`--image-size`), e.g. 224 for most TF Hub models."
    )


def check_input_size(spec: BackboneSpec, image_size) -> tuple[int, int]:
    """`image_size` as `(height, width)` (`transferkit.checks.check_image_size`), refused when
    it is below the smallest input `spec`'s architecture takes: said before any data is read,
    rather than when the backbone is built.

    Raises:
        InputError: not a positive int or pair, or smaller than `spec.min_input_size`.
    """
    from transferkit.checks import check_image_size

    pair = check_image_size(image_size)
    if min(pair) < spec.min_input_size:
        raise InputError(
            f"`image_size` must be at least {spec.min_input_size} for {spec.name} (the smallest "
            f"input it takes). Received: image_size={image_size!r}."
        )
    return pair


def _check_input_shape(spec: BackboneSpec, input_shape) -> tuple[int, int, int]:
    if input_shape is None:
        if not spec.default_input_size:
            raise InputError(size_unknown(spec))
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
    weights: str | os.PathLike | None = ImageTrainConfig.weights,
    input_shape=None,
    classifier_activation: str | None = "softmax",
    input_range: str | None = None,
):
    """Builds a backbone with its preprocessing inside: a registered one, or a SavedModel folder,
    KerasHub preset folder or handle (see `transferkit.backbones.sources`).

    The returned `keras.Model` takes raw RGB images, floats in [0, 255], of `input_shape`, applies
    the backbone's own preprocessing (an `ImagePreprocessing` layer named `"preprocessing"`) and
    runs the architecture, a nested model named after the backbone (`model.get_layer(name)`).
    Without the top it returns the last feature map `(h, w, feature_dim)`.

    Args:
        name: a name from `list_backbones()`, a SavedModel folder, a KerasHub preset folder or
            an `hf://` / `kaggle://` handle.
        include_top: keep the 1000-class ImageNet classifier. Default `False`.
        weights: `"imagenet"` (default: packaged weights, or Keras's downloader for users online),
            `None` (random init), or a path to a `.weights.h5` file saved from the bare
            architecture (`model.get_layer(name).save_weights(path)`).
        input_shape: `(height, width, 3)`; default the spec's `default_input_size` square.
        classifier_activation: activation of the top (`include_top=True`); default `"softmax"`,
            `None` for logits.
        input_range: for a SavedModel folder, the range it takes pixels in: `"0,1"` (default,
            TF Hub's convention), `"-1,1"` or `"0,255"`.

    Returns:
        A `keras.Model` with the spec at `model.transferkit_spec`.

    Raises:
        UnknownBackboneError: `name` is not registered.
        InputError: a bad `input_shape` or a weights path that does not exist.
        WeightsUnavailableError: `"imagenet"` weights would need a download and none is possible.
    """
    import keras

    from transferkit.layers import ImagePreprocessing

    spec = get_spec(name, input_range)
    shape = _check_input_shape(spec, input_shape)
    weights_path = None
    if weights is not None and weights != "imagenet" and spec.kind == "registered":
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
    x = ImagePreprocessing.of(spec.preprocessing, name="preprocessing")(inputs)
    outputs = base(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name}_with_preprocessing")
    model.transferkit_spec = spec
    return model
