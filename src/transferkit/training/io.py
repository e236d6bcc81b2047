"""Saving Keras models and weights atomically (see `transferkit.files.atomic_path`).

A process killed mid-save leaves the previous `.keras` or `.weights.h5` file, never half of one.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from transferkit.errors import InputError
from transferkit.files import atomic_path

__all__ = ["load_model", "load_weights", "save_model_atomic", "save_weights_atomic"]


def _save_via_temp(path: str | os.PathLike, suffix: str, save) -> None:
    path = Path(path)
    if not path.name.endswith(suffix):
        raise ValueError(f"The file name must end in `{suffix}`. Received: path={str(path)!r}.")
    with atomic_path(path) as temp:
        save(temp)


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """`model.save(path)` that never leaves a half-written `.keras` file.

    Args:
        model: a Keras model. If it is compiled but its optimizer is not built yet (no training
            since `compile`), the optimizer is built first so that the file loads with
            `keras.saving.load_model(path)` as well as with `compile=False`.
        path: where the `.keras` file goes (must end in `.keras`).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built and model.built:
        # A compiled model that has not trained yet (or was recompiled) saves an optimizer with no
        # slots, which `keras.saving.load_model` then refuses to restore; build it first.
        optimizer.build(model.trainable_variables)
    _save_via_temp(path, ".keras", lambda temp: model.save(temp))


def _skip_optimizer(model) -> dict:
    optimizer = getattr(model, "optimizer", None)
    return {"objects_to_skip": [optimizer]} if optimizer is not None else {}


def save_weights_atomic(
    model, path: str | os.PathLike, include_optimizer: bool = False, **attrs: Any
) -> None:
    """`model.save_weights(path)` that never leaves a half-written `.weights.h5` file.

    Keras 3 writes the optimizer's variables into `.weights.h5` files of compiled models, and then
    refuses to load the file into a model whose optimizer has a different number of variables
    (a fresh, unbuilt one, say). By default these files hold the model's weights only; read them
    with `load_weights`.

    Args:
        model: a built Keras model.
        path: where the weights go (must end in `.weights.h5`).
        include_optimizer: also store the optimizer's variables, as `model.save_weights` does.
            Default `False`.
        **attrs: numbers or strings stored as HDF5 attributes of the file (for bookkeeping such as
            the epoch); read them back with `h5py.File(path).attrs`.
    """

    def save(temp: Path) -> None:
        import keras

        skip = {} if include_optimizer else _skip_optimizer(model)
        keras.saving.save_weights(model, temp, **skip)
        if attrs:
            import h5py  # a Keras dependency

            with h5py.File(temp, "a") as handle:
                for key, value in attrs.items():
                    handle.attrs[key] = value

    _save_via_temp(path, ".weights.h5", save)


def load_weights(model, path: str | os.PathLike) -> None:
    """Loads the model's weights from a `.weights.h5` file, leaving its optimizer alone.

    Works whether or not the file holds optimizer variables, and whether the model is compiled or
    not, unlike `model.load_weights` in Keras 3 (see `save_weights_atomic`).
    """
    model.load_weights(path, **_skip_optimizer(model))


def load_model(model):
    """The Keras model in a `.keras` file written by transferkit, loaded with `safe_mode=True`
    and not compiled (transferkit's layers registered; KerasHub imported when the file uses it).

    Args:
        model: a path, or a `transferkit.model_ref.ModelRef` (its `config.json`, already read,
            is what the checks look at).

    Raises:
        InputError: the file is not a whole Keras model file, holds code that would run on
            load (`transferkit.model_files`), or a SavedModel graph not trusted here
            (`transferkit.trusted_graphs`).
        MissingDependencyError: the file uses KerasHub layers and KerasHub is not installed.
    """
    import keras

    import transferkit.layers  # noqa: F401  (registers the layers the file names)
    from transferkit.extras import require
    from transferkit.model_files import check_model_file, load_failure
    from transferkit.model_ref import ModelRef
    from transferkit.trusted_graphs import is_trusted, untrusted_message

    ref = ModelRef.resolve(model)
    path = ref.model_path
    # KerasHub registers its layers on import; Keras imports it when a file names it, but a
    # missing KerasHub should say how to install it, not fail deep inside deserialisation.
    if ref.uses_keras_hub:
        require("keras_hub", f"{path} (it holds KerasHub layers)")
        transferkit.layers.register_keras_hub_layers()  # MPNet's, on KerasHub's
    check_model_file(ref.model_path, ref.config)
    # A SavedModel graph loads only when trusted here: said in one line before Keras says it.
    untrusted = [d for d in ref.graph_digests if not is_trusted(d)]
    if untrusted:
        raise InputError(untrusted_message(path, untrusted))
    try:
        with warnings.catch_warnings():
            # A model trained data-parallel keeps `jit_compile=True` in its nested network's
            # compile config, which Keras re-applies on load (even with compile=False) and then
            # declines for the augmentation layers; the loaded model only predicts.
            warnings.filterwarnings("ignore", message="Model doesn't support `jit_compile=True`")
            # Nested networks come back compiled, with an optimizer that a resumed, already
            # finished phase never built; transferkit never uses a loaded model's optimizer.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # zip, h5py and deserialisation errors all mean "not our model file"
        raise load_failure(path, exc) from exc
