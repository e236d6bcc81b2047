"""transferkit: transfer learning on images and text with Keras 3.

The public names are listed in `__all__` and imported on first use, so `import transferkit` does
not load TensorFlow or build any model (it works with `KERAS_BACKEND=jax` or `torch` too).
"""

from __future__ import annotations

import importlib
import os

# TensorFlow's C++ start-up banner is noise for our users; keep their setting if they chose one.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
    "BackboneSpec": "transferkit.backbones.registry",
    "list_backbones": "transferkit.backbones.registry",
    "get_backbone": "transferkit.backbones.registry",
    "get_spec": "transferkit.backbones.registry",
    "backbone_table": "transferkit.backbones.registry",
    "load_image": "transferkit.data.images",
    "predict_imagenet": "transferkit.imagenet",
    "load": "transferkit.tasks.base",
    "ImageClassifier": "transferkit.tasks.image_classifier",
    "extract_features": "transferkit.tasks.image_classifier",
    "TextClassifier": "transferkit.tasks.text_classifier",
    "pipeline": "transferkit.tasks.text_classifier",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
