"""What a `.keras` file must be before Keras reads it, and what to say when Keras refuses it.

transferkit loads model files with Keras's `safe_mode=True`, which refuses a Lambda layer (its
Python bytecode is in the file) and cannot build a class it does not know. Keras's own message
then tells the user how to turn safe mode off; a damaged file gets a "File not found" and an
unknown class a page of config. `check_model_file` looks at the archive first (plain `zipfile`
and `json`, no Keras) and says in one line what is wrong: a truncated or foreign file, or code
that would run on load, which transferkit never loads (it loads the files it wrote, and
SavedModel graphs you trust: `transferkit.trusted_graphs`). `load_failure` turns whatever Keras
still raises into one line of the same kind. Keras's `safe_mode` stays on either way.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

from transferkit.errors import InputError

__all__ = ["check_model_file", "keras_objects", "load_failure", "read_config"]

_OURS = "transferkit loads only model files it wrote (and SavedModel graphs you trust)"
_AGAIN = ("save or copy it again (`transferkit train` and `Classifier.save` write it whole); "
          "transferkit loads `.keras` files written by transferkit")
_LAMBDA_CLASSES = ("Lambda", "__lambda__")
_MESSAGE_LIMIT = 240
# Packages whose classes Keras itself finds (or refuses, said by `load_failure`); `package>Name`
# registered names from anywhere else must be registered in this process.
_KNOWN_PACKAGES = ("transferkit", "keras_hub")


def check_model_file(path: str | os.PathLike, config: dict | None = None) -> None:
    """Raises InputError unless `path` is a whole `.keras` archive with nothing in it that
    would run code on load (a Lambda layer, a class that is not registered in this process).

    Call it once the layers a file may name are registered (`import transferkit.layers`, and
    KerasHub for files that use it).

    Args:
        path: the `.keras` file.
        config: its `config.json`, when already read (`ModelRef.config`). Default `None`: read.
    """
    path = Path(path)
    for node in keras_objects(read_config(path) if config is None else config):
        refusal = _code_in(node)
        if refusal:
            raise InputError(
                f"Refusing to load {path}: it has {refusal}: code that would run on load. "
                f"{_OURS}, with Keras's safe_mode on. Rebuild the model from Keras, KerasHub and "
                "transferkit layers (or train it with `transferkit train`)."
            )


def load_failure(path: str | os.PathLike, exc: Exception) -> InputError:
    """One line for an exception Keras raised while loading `path` (safe mode refusals, damage)."""
    detail = " ".join(str(exc).split())
    if "safe_mode" in detail or "arbitrary code" in detail or "Could not locate" in detail:
        return InputError(
            f"Refusing to load {path}: it asks Keras to run code from the file, or to build a "
            f"class this process does not have. {_OURS}, with Keras's safe_mode on."
        )
    detail = re.split(r" Full object config| config=\{", detail)[0]
    if len(detail) > _MESSAGE_LIMIT:
        detail = detail[: _MESSAGE_LIMIT - 3] + "..."
    return InputError(
        f"{path}: could not load it as a Keras model ({type(exc).__name__}: {detail}); the file "
        f"is damaged or not a transferkit model: {_AGAIN}."
    )


def read_config(path: str | os.PathLike) -> dict:
    """`config.json` of the `.keras` archive at `path`, or InputError saying what the file is
    instead (not a `.keras` file, empty, truncated, unreadable, not a Keras archive)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise InputError(
            f"{path} is not a `.keras` file. Pass the `model.keras` (or the run folder) written "
            "by transferkit: `transferkit train` or `Classifier.save`."
        )
    if os.path.getsize(path) == 0:
        raise InputError(f"{path} is empty (0 bytes), truncated when written: {_AGAIN}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise InputError(
                    f"{path} is a zip archive without the `config.json` of a Keras model file. "
                    "Pass a `.keras` file written by transferkit."
                )
            text = archive.read("config.json")
    except OSError as exc:  # unreadable: permissions, a device error
        raise InputError(
            f"{path}: cannot read it ({exc.strerror or exc}). Check that the file is readable "
            "by this user."
        ) from None
    except zipfile.BadZipFile:
        raise InputError(
            f"{path} is not a whole `.keras` file: it is not a readable zip archive (truncated, "
            f"damaged, or another kind of file): {_AGAIN}."
        ) from None
    try:
        config = json.loads(text)
    except ValueError:
        raise InputError(f"{path}: its `config.json` is not valid JSON: {_AGAIN}.") from None
    return config if isinstance(config, dict) else {}


def keras_objects(node):
    """Every serialised Keras object (a dict with `class_name`) in a config, depth first."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from keras_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from keras_objects(value)


def _code_in(node: dict) -> str:
    """What in `node` would be code from the file (`""`: nothing)."""
    class_name = str(node.get("class_name"))
    if class_name in _LAMBDA_CLASSES:
        config = node.get("config")
        name = config.get("name") if isinstance(config, dict) else None
        return f"a Lambda layer {name!r}" if name else "a Lambda layer's function"
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered and (
        registered.split(">")[0] not in _KNOWN_PACKAGES
    ):
        import keras  # only for a file naming a class from outside: the Ray driver has none

        if keras.saving.get_registered_object(registered) is None:
            return (f"the class {registered!r}, which is no Keras, KerasHub or transferkit "
                    "class, nor one registered in this process")
    return ""
