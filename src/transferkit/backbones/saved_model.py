"""TensorFlow SavedModel folders as image backbones: TF Hub feature vectors, `model.export` output.

TF Hub's models now live on Kaggle Models as SavedModel folders, and `hub.KerasLayer` does not fit
a Keras 3 model. `--backbone FOLDER` (`get_backbone(FOLDER)`) takes such a folder:

* the call endpoint is found, in this order: `serve` (Keras `model.export`), `__call__` (TF Hub's
  reusable SavedModel: `obj(images, training)`), the `serving_default` signature (TF1 Hub
  modules, other exporters; a dict output needs one entry, or one named like a feature vector);
* the input size comes from the signature (`(None, H, W, 3)`), or from `image_size` when the
  signature takes any size; the value range is TF Hub's convention, [0, 1], unless
  `input_range` says `-1,1` or `0,255`;
* a 2-D output of 1000 or 1001 values is a classifier, refused: features are wanted;
* it can be fine-tuned when it has trainable variables and a training endpoint (`__call__` with
  `training`, or a `call_training` endpoint as `keras.layers.TFSMLayer` documents); a Keras
  `model.export` folder has only `serve`, which runs in inference mode, so it stays frozen.

The layer (`transferkit.layers.SavedModelFeatures`) carries the folder's files inside the saved
`.keras` file, and loads them in safe mode only when the graph is trusted on this machine (see
`transferkit.trusted_graphs`: a graph is code).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from transferkit.checks import INPUT_RANGE_NAMES, check_input_range
from transferkit.errors import InputError
from transferkit.trusted_graphs import folder_digest, read_files

__all__ = [
    "INPUT_RANGES",
    "SavedModelInfo",
    "check_input_range",
    "inspect_saved_model",
    "is_saved_model",
    "load_saved_model",
    "preprocessing_for",
]

#: `input_range` -> (mean, std) on the 0-255 scale, for `transferkit.layers.ImagePreprocessing`.
INPUT_RANGES = {"0,1": (0.0, 255.0), "-1,1": (127.5, 127.5), "0,255": (0.0, 1.0)}
DEFAULT_INPUT_RANGE = "0,1"  # TF Hub's convention for image models
assert tuple(INPUT_RANGES) == INPUT_RANGE_NAMES
CLASSIFIER_OUTPUTS = (1000, 1001)  # ImageNet classes, with TF-Slim's background class
_TRAINING_ENDPOINT = "call_training"


def is_saved_model(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder holding a SavedModel (`saved_model.pb`)."""
    folder = Path(path)
    return folder.is_dir() and (folder / "saved_model.pb").is_file()


@dataclass(frozen=True)
class SavedModelInfo:
    """What a SavedModel folder offers as a backbone (see the module docstring)."""

    folder: str
    digest: str
    endpoint: str
    input_key: str | None
    output_key: str | None
    input_size: tuple[int, int] | None
    output_shape: tuple[int | None, ...]
    training_endpoint: str | None
    why_frozen: str

    @property
    def name(self) -> str:
        """A Keras-safe name: the folder's name and the start of its digest."""
        stem = re.sub(r"[^0-9a-zA-Z_]+", "_", Path(self.folder).name).strip("_").lower()
        return f"saved_model_{stem or 'folder'}_{self.digest[:8]}"


def _endpoint(obj, signatures: dict):
    """(name, function) of the inference endpoint, or `(None, None)`."""
    if hasattr(obj, "serve"):
        return "serve", obj.serve
    if callable(obj) and hasattr(obj.__call__, "concrete_functions"):  # a saved `__call__`
        return "__call__", obj.__call__
    if "serving_default" in signatures:
        return "serving_default", signatures["serving_default"]
    return None, None


def _image_spec(function) -> tuple[object, str | None]:
    """The image input `TensorSpec` of an endpoint, and the keyword it is passed by (signatures
    take keywords only), or `(None, None)`."""
    if hasattr(function, "structured_input_signature"):  # a signature (concrete function)
        args, kwargs = function.structured_input_signature
    else:
        concrete = function.concrete_functions
        if concrete:
            args, kwargs = concrete[0].structured_input_signature
            return _one_image([s for s in list(args) + list(kwargs.values())]), None
        return None, None
    spec = _one_image(list(args) + list(kwargs.values()))
    key = next((k for k, v in kwargs.items() if v is spec), None)
    return spec, key


def _one_image(specs):
    images = [s for s in specs if hasattr(s, "shape") and len(s.shape) == 4]
    return images[0] if len(images) == 1 else None


def _outputs(function):
    if hasattr(function, "structured_outputs"):
        return function.structured_outputs
    concrete = function.concrete_functions
    return concrete[0].structured_outputs if concrete else None


def _choose_output(outputs, folder) -> tuple[str | None, tuple]:
    """The feature output: the tensor itself, or one entry of a dict."""
    if hasattr(outputs, "shape"):
        return None, tuple(outputs.shape)
    if isinstance(outputs, dict) and outputs:
        if len(outputs) == 1:
            key = next(iter(outputs))
        else:
            named = [k for k in outputs if k in ("feature_vector", "default", "pooled_output",
                                                  "features", "output_0")]
            if not named:
                raise InputError(
                    f"{folder}: its endpoint returns {sorted(outputs)}; transferkit needs one "
                    "image feature output. Export a model that returns the feature vector only."
                )
            key = named[0]
        return key, tuple(outputs[key].shape)
    raise InputError(f"{folder}: its endpoint's output ({type(outputs).__name__}) is not a tensor.")


def inspect_saved_model(folder: str | os.PathLike) -> SavedModelInfo:
    """Loads the SavedModel at `folder` and reads what it offers.

    Raises:
        InputError: no usable endpoint (the message lists its signatures), an input that is not a
            batch of RGB images, or a classifier's 1000/1001-way output.
    """
    import tensorflow as tf

    folder = str(folder)
    obj = load_saved_model(folder)
    signatures = dict(getattr(obj, "signatures", {}) or {})
    name, function = _endpoint(obj, signatures)
    if function is None:
        raise InputError(
            f"{folder}: a SavedModel without a usable endpoint (no `serve`, `__call__` or "
            f"`serving_default`). Its signatures: {sorted(signatures) or 'none'}. Export it with "
            "`model.export(path)`, or save the feature-vector model with a `serving_default` "
            "signature."
        )
    spec, input_key = _image_spec(function)
    if spec is None or spec.shape[-1] not in (3, None) or spec.dtype != tf.float32:
        raise InputError(
            f"{folder}: its `{name}` endpoint does not take one float32 batch of RGB images "
            f"(batch, height, width, 3); it takes {_image_spec_text(function)}. Pass an image "
            "feature-vector SavedModel."
        )
    key, shape = _choose_output(_outputs(function), folder)
    if len(shape) == 2 and shape[-1] in CLASSIFIER_OUTPUTS:
        raise InputError(
            f"{folder}: its output has {shape[-1]} values per image: a classification SavedModel "
            "(ImageNet classes), not image features. Use the model's feature-vector variant (TF "
            "Hub/Kaggle publish both: `.../feature-vector/...`), or train with a registered "
            "backbone (`transferkit backbones`)."
        )
    if len(shape) not in (2, 3, 4):
        raise InputError(f"{folder}: its output shape {shape} is not image features.")
    height, width = spec.shape[1], spec.shape[2]
    size = (int(height), int(width)) if height is not None and width is not None else None
    trainable = len(getattr(obj, "trainable_variables", ()) or ())
    training = None
    if hasattr(obj, _TRAINING_ENDPOINT) or _TRAINING_ENDPOINT in signatures:
        training = _TRAINING_ENDPOINT
    elif name == "__call__":
        training = "__call__"
    why = ""
    if not trainable:
        why = "it has no trainable variables"
    elif training is None:
        why = (f"it has no training endpoint (only `{name}`, which runs in inference mode; "
               "`model.export` writes no other)")
    return SavedModelInfo(folder, folder_digest(read_files(folder)), name, input_key, key, size,
                          shape, training, why)


def _image_spec_text(function) -> str:
    try:
        return str(function.structured_input_signature)
    except AttributeError:
        concrete = function.concrete_functions
        return str(concrete[0].structured_input_signature) if concrete else "nothing"


def load_saved_model(folder: str | os.PathLike):
    """`tf.saved_model.load(folder)`, with one error line when it is not a SavedModel."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise InputError(
            f"A SavedModel backbone ({folder}) runs only on the TensorFlow backend; this process "
            f"uses {keras.backend.backend()!r}. Unset KERAS_BACKEND or set it to tensorflow."
        )
    import tensorflow as tf

    try:
        return tf.saved_model.load(str(folder))
    except Exception as exc:  # TensorFlow raises OSError, ValueError, its own errors
        raise InputError(
            f"{folder}: could not load it as a TensorFlow SavedModel ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})."
        ) from exc


def preprocessing_for(input_range: str | None):
    """The `Preprocessing` that maps RGB in [0, 255] to `input_range` (default [0, 1])."""
    from transferkit.backbones.preprocessing import Preprocessing

    text = DEFAULT_INPUT_RANGE if input_range is None else check_input_range(input_range)
    mean, std = INPUT_RANGES[text]
    return Preprocessing(f"range {text}", (mean,) * 3, (std,) * 3)
