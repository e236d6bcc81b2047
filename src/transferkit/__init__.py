"""transferkit: transfer learning on images and text with Keras 3.

The public names are listed in `__all__` and imported on first use, so `import transferkit` does
not load Keras or TensorFlow or build any model (it works with `KERAS_BACKEND=jax` or `torch`
too). It does register transferkit's Keras layers as soon as Keras is imported, so that a saved
classifier loads with `keras.saving.load_model(path, safe_mode=True)`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys

# TensorFlow's C++ start-up banner is noise for our users; keep their setting if they chose one.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
importlib.import_module("transferkit.quiet").install()  # TensorFlow's Keras retracing warning

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "TransferkitError": "transferkit.errors",
    "InputError": "transferkit.errors",
    "ImageReadError": "transferkit.errors",
    "DataError": "transferkit.errors",
    "UnknownBackboneError": "transferkit.errors",
    "WeightsError": "transferkit.errors",
    "WeightsUnavailableError": "transferkit.errors",
    "UnsafeCheckpointError": "transferkit.errors",
    "MissingDependencyError": "transferkit.errors",
    "BackboneSpec": "transferkit.backbones.spec",
    "ImageEncoder": "transferkit.backbones.image_encoder",
    "ModelRef": "transferkit.model_ref",
    "RunFolder": "transferkit.run_folder",
    "list_backbones": "transferkit.backbones.registry",
    "get_backbone": "transferkit.backbones.registry",
    "get_spec": "transferkit.backbones.registry",
    "backbone_table": "transferkit.backbones.registry",
    "load_image": "transferkit.data.images",
    "predict_imagenet": "transferkit.imagenet",
    "ImageTrainConfig": "transferkit.config",
    "TextTrainConfig": "transferkit.config",
    "load": "transferkit.tasks.base",
    "ImageClassifier": "transferkit.tasks.image_classifier",
    "extract_features": "transferkit.tasks.features",
    "check_data": "transferkit.pipelines.check",
    "rank_backbones": "transferkit.pipelines.rank",
    "tune": "transferkit.tuning.study",
    "TextClassifier": "transferkit.tasks.text_classifier",
    "pipeline": "transferkit.tasks.text_classifier",
    "train_images": "transferkit.pipelines.images",
    "train_text": "transferkit.pipelines.text",
    "batch_predict": "transferkit.batch.jobs",
    "batch_embed": "transferkit.batch.jobs",
}
# Earlier names that users' code has, kept: the batch jobs were `transferkit.predict` and
# `transferkit.embed`, which read as `Classifier.predict` (in memory) does.
_ALIASES = {"predict": "batch_predict", "embed": "batch_embed"}

__all__ = sorted([*_EXPORTS, *_ALIASES]) + ["__version__"]


def __getattr__(name: str):
    target = _ALIASES.get(name, name)
    module = _EXPORTS.get(target)
    if module is None:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), target)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _RegisterLayersAfterKeras(importlib.abc.MetaPathFinder):
    """Imports `transferkit.layers` right after `keras` is imported, once.

    Keras finds a saved model's custom layers in its registry; ours register when
    `transferkit.layers` is imported, which needs Keras. Importing Keras here would make
    `import transferkit` slow (TensorFlow loads with it), so this finder wraps the loader of the
    `keras` package instead: when Keras has loaded, the layers are registered.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # one shot; and the search below must not find us again
        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegisterLayers(spec.loader)
        return spec


class _ThenRegisterLayers(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        importlib.import_module("transferkit.layers")


if "keras" in sys.modules:
    importlib.import_module("transferkit.layers")
elif not any(isinstance(finder, _RegisterLayersAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersAfterKeras())
