"""Image backbones from outside the registry: SavedModel folders and KerasHub presets.

`--backbone` (and `get_backbone`, `ImageClassifier(backbone=...)`) takes, besides a registered
name (Keras applications, EfficientNet-Lite):

* a **SavedModel folder** (`saved_model.pb` inside): a TF Hub / Kaggle image feature vector or a
  Keras `model.export`, run by `transferkit.layers.SavedModelFeatures` (see
  `transferkit.backbones.saved_model`);
* a **KerasHub preset folder** (`config.json` naming a KerasHub backbone, `image_converter.json`,
  `model.weights.h5`; what `save_to_preset` writes, or a Hugging Face timm folder), with the
  preset's image converter as the preprocessing (its size, scale and offset, crop or stretch);
* a KerasHub **handle**: `hf://timm/resnet50.a1_in1k`, `kaggle://keras/resnetv2/...`: downloaded by
  KerasHub when online; offline, one line says so.

Each is described by a `BackboneSpec` made on the fly, so the classifier, the feature cache and the
report treat it like a registered backbone. The spec of a folder is remembered per process (the
folder's files are read once).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from transferkit.backbones.spec import BackboneSpec
from transferkit.errors import InputError, WeightsUnavailableError
from transferkit.extras import require

__all__ = ["is_image_backbone_folder", "is_source", "source_kinds", "source_spec"]

_SPECS: dict[tuple, BackboneSpec] = {}
_HANDLES = ("hf://", "kaggle://", "gs://", "modelscope://")


def is_source(name) -> bool:
    """Whether `name` names a folder or a KerasHub handle rather than a registered backbone."""
    text = os.fspath(name)
    return (text.startswith(_HANDLES) or os.sep in text or text.startswith(".")
            or Path(text).expanduser().exists())


def is_image_backbone_folder(path) -> bool:
    """Whether `path` is a SavedModel folder or a KerasHub preset folder of an image model (an
    image converter, or a timm config), as opposed to a text encoder's folder."""
    from transferkit.backbones.saved_model import is_saved_model

    folder = Path(os.fspath(path)).expanduser()
    if not folder.is_dir():
        return False
    return is_saved_model(folder) or (folder / "image_converter.json").is_file() or _is_timm(
        str(folder))


def source_kinds() -> list[dict]:
    """The kinds of backbone source, with an example each (for `transferkit backbones`)."""
    return [
        {"kind": "registered", "example": "efficientnet_lite0",
         "loader": "transferkit.backbones.registry", "what": "Keras applications and "
         "EfficientNet-Lite, by name (the table above)"},
        {"kind": "SavedModel folder", "example": "path/to/feature_vector/",
         "loader": "transferkit.backbones.saved_model", "what": "TF Hub / Kaggle image feature "
         "vector or Keras model.export; pixels in [0, 1] unless --input-range"},
        {"kind": "KerasHub preset folder", "example": "path/to/preset/",
         "loader": "transferkit.backbones.sources", "what": "a folder save_to_preset wrote (or a "
         "Hugging Face timm folder); its image converter preprocesses"},
        {"kind": "KerasHub handle", "example": "hf://timm/resnet50.a1_in1k",
         "loader": "transferkit.backbones.sources", "what": "hf:// or kaggle://, downloaded by "
         "KerasHub (online only)"},
    ]


def source_spec(source, input_range: str | None = None) -> BackboneSpec:
    """The `BackboneSpec` of a SavedModel folder, a KerasHub preset folder or a KerasHub handle.

    Raises:
        InputError: a path that is neither kind, or a model that gives no image features.
        WeightsUnavailableError: a handle that needs a download on a machine without network.
    """
    text = os.fspath(source)
    if text.startswith(_HANDLES):
        return _remember(("hub", text, input_range), lambda: _keras_hub_spec(text, input_range))
    folder = Path(text).expanduser()
    if not folder.exists():
        raise InputError(
            f"{folder}: no such backbone folder. Pass a registered name (`transferkit "
            "backbones`), a SavedModel folder, a KerasHub preset folder or an hf:// handle."
        )
    if not folder.is_dir():
        raise InputError(
            f"{folder}: a file, not a backbone folder. Pass the folder that holds saved_model.pb "
            "(SavedModel) or config.json (KerasHub preset)."
        )
    from transferkit.backbones.saved_model import is_saved_model

    folder = folder.resolve()
    stamp = max((p.stat().st_mtime_ns for p in folder.iterdir()), default=0)
    if is_saved_model(folder):
        return _remember(("saved_model", str(folder), stamp, input_range),
                         lambda: _saved_model_spec(folder, input_range))
    if (folder / "config.json").is_file():
        return _remember(("hub", str(folder), stamp, input_range),
                         lambda: _keras_hub_spec(str(folder), input_range))
    raise InputError(
        f"{folder}: neither a SavedModel folder (no saved_model.pb) nor a KerasHub preset folder "
        "(no config.json). Pass the folder that holds one of them."
    )


def _remember(key, make) -> BackboneSpec:
    if key not in _SPECS:
        _SPECS[key] = make()
    return _SPECS[key]


def _always() -> bool:
    return True


def _saved_model_spec(folder: Path, input_range: str | None) -> BackboneSpec:
    from transferkit.backbones.saved_model import inspect_saved_model, preprocessing_for
    from transferkit.trusted_graphs import trust

    info = inspect_saved_model(folder)
    trust(info.digest)  # the user named this folder: its graph is theirs to run

    def builder(include_top, weights, input_shape, classifier_activation):
        import keras

        from transferkit.layers import SavedModelFeatures

        _refuse_top(include_top, folder)
        if weights != "imagenet":
            raise InputError(
                f"{folder}: a SavedModel carries its own weights; `weights` must stay the default "
                f"('imagenet', meaning pretrained). Received: weights={weights!r}."
            )
        if info.input_size is not None and tuple(input_shape[:2]) != info.input_size:
            raise InputError(
                f"{folder} takes {info.input_size[0]}x{info.input_size[1]} images (its "
                f"signature). Leave `image_size` unset or pass {info.input_size[0]}."
            )
        inputs = keras.Input(input_shape, name="pixels")
        layer = SavedModelFeatures(
            info.digest, info.endpoint, info.output_shape[1:], input_key=info.input_key,
            output_key=info.output_key, training_endpoint=info.training_endpoint,
            source=str(folder), folder=folder, name="saved_model",
        )
        return keras.Model(inputs, layer(inputs), name=info.name)

    size = info.input_size
    return BackboneSpec(
        name=info.name, family="SavedModel", builder=builder,
        default_input_size=0 if size is None else size[0],
        preprocessing=preprocessing_for(input_range), feature_dim=int(info.output_shape[-1]),
        weights_source=str(folder), license="see where the SavedModel came from",
        weights_available=_always, description=f"endpoint {info.endpoint}",
        why_frozen=info.why_frozen, kind="saved_model",
    )


def _refuse_top(include_top: bool, source) -> None:
    if include_top:
        raise InputError(
            f"{source}: `include_top` is for registered backbones; a SavedModel or KerasHub "
            "backbone gives features only."
        )


def _keras_hub_spec(preset: str, input_range: str | None) -> BackboneSpec:
    from transferkit.backbones.preprocessing import Preprocessing

    if input_range is not None:
        raise InputError(
            f"{preset}: `input_range` is for SavedModel folders; a KerasHub preset's image "
            "converter says how its pixels are scaled. Leave `input_range` unset."
        )
    keras_hub = require("keras_hub", "A KerasHub backbone")
    local = Path(preset).is_dir()
    if local and not is_image_backbone_folder(preset):
        raise InputError(
            f"{preset}: a KerasHub preset without an image converter (no image_converter.json): "
            "not an image backbone. A text model goes to `train text --encoder FOLDER`."
        )
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=False)
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except Exception as exc:  # KerasHub raises ValueError, OSError, HTTP errors...
        _raise_preset_error(preset, exc, local)
    rank = len(backbone.output.shape)
    if rank not in (3, 4):
        raise InputError(
            f"{preset}: {type(backbone).__name__} outputs shape {tuple(backbone.output.shape)}, "
            "not an image feature map or token sequence."
        )
    scale, offset = _per_channel(converter.scale, 1.0), _per_channel(converter.offset, 0.0)
    preprocessing = Preprocessing(
        "keras_hub", tuple(-o / s for o, s in zip(offset, scale)), tuple(1.0 / s for s in scale),
        resize="center_crop" if getattr(converter, "crop_to_aspect_ratio", True) else "stretch",
    )
    size = converter.image_size or (224, 224)
    shape = tuple(getattr(backbone, "image_shape", None) or (None, None, 3))
    name = _keras_name(f"keras_hub_{Path(preset.rstrip('/')).name}")

    def builder(include_top, weights, input_shape, classifier_activation):
        import keras

        _refuse_top(include_top, preset)
        if weights not in ("imagenet", None):
            raise InputError(
                f"{preset}: a KerasHub preset carries its own weights; pass weights='imagenet' "
                f"(pretrained) or None (random). Received: weights={weights!r}."
            )
        if shape[0] is not None and tuple(input_shape[:2]) != tuple(shape[:2]):
            raise InputError(
                f"{preset} takes {shape[0]}x{shape[1]} images. Leave `image_size` unset or pass "
                f"{shape[0]}."
            )
        try:
            model = keras_hub.models.Backbone.from_preset(preset, load_weights=weights is not None)
        except Exception as exc:
            _raise_preset_error(preset, exc, local)
        inputs = keras.Input(input_shape, name="pixels")
        return keras.Model(inputs, model(inputs), name=name)

    return BackboneSpec(
        name=name, family=f"KerasHub {type(backbone).__name__}", builder=builder,
        default_input_size=int(size[0]), preprocessing=preprocessing,
        feature_dim=int(backbone.output.shape[-1]), weights_source=preset,
        license="see the preset's metadata", weights_available=_always,
        description="KerasHub preset", kind="keras_hub",
    )


def _is_timm(preset: str) -> bool:
    import json

    try:
        config = json.loads((Path(preset) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "architecture" in config


# Keras's reason for weights that do not fit ends by printing the variable, values and all.
_VALUE_DUMP = re.compile(r"\s*Target variable: <Variable.*", re.DOTALL)
# Keras's words for weights that do not fit the model built from the config.
_WEIGHTS_MISFIT = re.compile(r"could not be loaded|expected \d+ variables")
_MOST = 400  # characters of an outside library's reason kept in our one line


def _reason(exc: Exception) -> str:
    """`exc`'s message on one line, whole (Keras puts the reason for weights that do not fit
    after a line that ends in a colon), without a dump of values, cut at `_MOST` characters."""
    text = " ".join(_VALUE_DUMP.sub("", str(exc)).split())
    return text if len(text) <= _MOST else text[:_MOST - 3].rstrip() + "..."


def _raise_preset_error(preset: str, exc: Exception, local: bool):
    first = _reason(exc).rstrip(".")
    if not local:  # KerasHub reports a failed download as a preset "without config.json"
        raise WeightsUnavailableError(
            f"Could not download the KerasHub preset {preset!r} ({type(exc).__name__}: {first}). "
            "A handle is fetched from the network; offline, download it where there is one "
            "(`keras_hub.models.Backbone.from_preset(...).save_to_preset(FOLDER)`, also "
            "`ImageConverter`) and pass the folder."
        ) from exc
    fix = ""
    if _WEIGHTS_MISFIT.search(first):
        fix = (" Its model.weights.h5 does not fit its config.json: save the preset again from "
               "one model (`save_to_preset` writes both), or pass another folder.")
    raise InputError(
        f"{preset}: could not load it as a KerasHub image backbone ({type(exc).__name__}: "
        f"{first}).{fix}"
    ) from exc


def _per_channel(value, default: float) -> tuple[float, float, float]:
    if value is None:
        return (default,) * 3
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return tuple(values * 3)[:3] if len(values) == 1 else tuple(values[:3])


def _keras_name(text: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]+", "_", text).strip("_").lower()
