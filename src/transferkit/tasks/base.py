"""What every saved transferkit classifier shares: labels inside the `.keras` file, and `load`.

A saved classifier is one `.keras` file. Its last layer is `ClassLabels` (named `"labels"`), an
identity on the logits whose config carries the task (`"image"` or `"text"`), the class names and
plain-data metadata (backbone, image size, ...). So the labels travel with the model, the file loads
with `safe_mode=True`, and `load(path)` knows which task class to wrap it in.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import keras

from transferkit.errors import InputError

__all__ = ["ClassLabels", "load", "TASK_CLASSES"]

# task name -> "module:Class"; each class has `from_keras_model(model)`.
TASK_CLASSES = {
    "image": "transferkit.tasks.image_classifier:ImageClassifier",
    "text": "transferkit.tasks.text_classifier:TextClassifier",
}


@keras.saving.register_keras_serializable(package="transferkit")
class ClassLabels(keras.layers.Layer):
    """Identity on logits that stores what the outputs mean.

    Args:
        class_names: the label of each class, in output order.
        task: `"image"` or `"text"`.
        metadata: plain JSON-serialisable data about how the model was made. Default `{}`.
    """

    def __init__(self, class_names, task: str, metadata: dict | None = None, **kwargs):
        kwargs.setdefault("name", "labels")
        super().__init__(**kwargs)
        self.class_names = [str(c) for c in class_names]
        self.task = task
        self.metadata = dict(metadata or {})

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"class_names": self.class_names, "task": self.task, "metadata": self.metadata}
        )
        return config


def labels_layer(model) -> ClassLabels:
    """The `ClassLabels` layer of a transferkit model (raises InputError if there is none)."""
    for layer in reversed(model.layers):
        if isinstance(layer, ClassLabels):
            return layer
    raise InputError(
        f"{model.name!r} is not a transferkit classifier: it has no `ClassLabels` layer. "
        "Load models saved by transferkit (`transferkit train ...` or `.save(path)`)."
    )


# transferkit's own serialisable layers and the modules that register them: `load` imports the
# ones a model file names, so that loading works in a process that has not imported them yet.
_LAYER_MODULES = {
    "transferkit>ImagePreprocessing": "transferkit.backbones.preprocessing",
    "transferkit>InferenceMode": "transferkit.tasks.image_classifier",
}


def load(path: str | os.PathLike) -> Any:
    """Loads a classifier saved by transferkit (`.keras` file) with `safe_mode=True`.

    Args:
        path: the `.keras` file written by `transferkit train` or `Classifier.save`.

    Returns:
        An `ImageClassifier` or a `TextClassifier`, ready to `predict` and `evaluate`.

    Raises:
        InputError: the path is missing, not a `.keras` file, or not a transferkit model.
    """
    path = Path(path)
    if path.is_dir() and (path / "model.keras").is_file():
        path = path / "model.keras"  # a run directory
    if not path.is_file():
        raise InputError(
            f"{path}: no such model file. Pass the `.keras` file (or the run folder) written by "
            "`transferkit train`."
        )
    if _mentions(path, b"keras_hub"):
        # keras-hub registers its layers on import; it is heavy, so only for models that use it.
        _import_optional("keras_hub")
    for registered_name, module_name in _LAYER_MODULES.items():
        if _mentions(path, registered_name.encode()):
            importlib.import_module(module_name)  # registers the layer for deserialisation
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # zip, h5py and deserialisation errors all mean "not our model file"
        raise InputError(
            f"{path}: could not load it as a Keras model ({type(exc).__name__}: {exc}). "
            "Pass a `.keras` file written by transferkit."
        ) from exc
    task = labels_layer(model).task
    if task not in TASK_CLASSES:
        raise InputError(f"{path}: unknown task {task!r} in its labels layer.")
    module_name, class_name = TASK_CLASSES[task].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.from_keras_model(model)


def _mentions(path: Path, needle: bytes) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return needle in archive.read("config.json")
    except (zipfile.BadZipFile, KeyError, OSError):
        return False


def _import_optional(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
