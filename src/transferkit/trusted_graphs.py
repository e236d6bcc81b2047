"""Trusted graphs: which TensorFlow SavedModel graphs this machine may run from a model file.

A `.keras` file trained on a SavedModel backbone carries the SavedModel's files
(`transferkit.layers.SavedModelFeatures`). A SavedModel graph is code: it can read and write
files, which is why Keras's `safe_mode` refuses `keras.layers.TFSMLayer`. transferkit keeps
`safe_mode`'s promise this way: a graph loads in safe mode only when its sha256 (over its files'
paths and contents) is in the trust store, a folder of empty files named by digest in the
transferkit cache (`trusted-graphs/`). Naming a SavedModel folder as a backbone trusts it (you
chose to run it); `transferkit trust MODEL` trusts the graphs of a model file from elsewhere.
Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from transferkit.errors import InputError

__all__ = [
    "folder_digest",
    "is_trusted",
    "read_files",
    "trust",
    "trust_model_file",
    "untrusted_message",
]


def read_files(folder: str | os.PathLike) -> dict[str, bytes]:
    """Every file under `folder`, by its path relative to it (`/`-separated), sorted."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


def folder_digest(files: dict[str, bytes]) -> str:
    """The sha256 of a SavedModel's files: relative paths and contents, in path order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8") + b"\x00")
        digest.update(hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def _trust_dir() -> Path:
    from transferkit.files import cache_dir

    return cache_dir("trusted-graphs")


def trust(digest: str) -> None:
    """Marks the SavedModel graph with sha256 `digest` as trusted on this machine."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise InputError(f"Not a sha256 digest: {digest!r}.")
    (_trust_dir() / digest).touch()


def is_trusted(digest: str) -> bool:
    """Whether the graph with sha256 `digest` was trained with or trusted on this machine."""
    return bool(re.fullmatch(r"[0-9a-f]{64}", str(digest))) and (_trust_dir() / digest).is_file()


def untrusted_message(path, digests: list[str]) -> str:
    return (
        f"{path} contains a TensorFlow SavedModel graph (sha256 {digests[0][:12]}...) that this "
        "machine has not trained with. A graph can read and write files, so transferkit, like "
        "Keras's safe_mode, runs one only once you trust it. If you trust where the file came "
        f"from, run: transferkit trust {path}"
    )


def trust_model_file(model) -> list[str]:
    """Trusts every SavedModel graph inside the `.keras` file `model` (a path or a
    `transferkit.model_ref.ModelRef`); returns their digests.

    Raises:
        InputError: `model` is missing or is not a whole `.keras` file (a text file, an empty,
            truncated or foreign archive), or holds code that transferkit never loads (a Lambda
            layer, an unknown class): trusting its graphs would not make it load.
    """
    from transferkit.model_files import check_model_file
    from transferkit.model_ref import ModelRef

    ref = ModelRef.resolve(model)
    if ref.keras_file is None or not ref.keras_file.is_file():
        raise InputError(f"{ref.given}: no such file. Pass a `.keras` file written by transferkit.")
    check_model_file(ref.model_path, ref.config)
    for digest in ref.graph_digests:
        trust(digest)
    return ref.graph_digests
