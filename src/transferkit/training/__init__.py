"""Training machinery the image and text pipelines share.

* `io`: atomic writes of files, JSON, models and weights.
* `run`: `RunDirectory`, the folder of one run (config, state, history, checkpoints, report).
* `callbacks`: `fit_phase`, the one call to `model.fit`, with early stopping, TensorBoard,
  `history.csv`, per-epoch checkpoints and resume.
* `feature_cache`: `FeatureCache`, backbone features stored on disk by content key.

`from transferkit.training import fit_phase` works; importing this package does not import Keras
until a name that needs it is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "atomic_write": "transferkit.training.io",
    "write_json": "transferkit.training.io",
    "read_json": "transferkit.training.io",
    "save_model_atomic": "transferkit.training.io",
    "save_weights_atomic": "transferkit.training.io",
    "load_weights": "transferkit.training.io",
    "RunDirectory": "transferkit.training.run",
    "default_run_dir": "transferkit.training.run",
    "fit_phase": "transferkit.training.callbacks",
    "FeatureCache": "transferkit.training.feature_cache",
    "default_cache_root": "transferkit.training.feature_cache",
    "file_digest": "transferkit.training.feature_cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'transferkit.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
