"""Backbone features kept on disk, so a frozen backbone runs over a dataset once.

Training a head on a frozen backbone spends nearly all its time computing the backbone's features;
they only change when the images (or texts), the backbone, its weights or the preprocessing change.
`FeatureCache` stores one `.npy` file per key, where the key is a hash of exactly those things:

    cache = FeatureCache(cache_dir("features", "images"))
    key = cache.key(backbone="efficientnet_lite0", weights=sha256_file(weights_path),
                    image_size=224, files=[sha256_file(p) for p in paths])
    features = cache.get(key)
    if features is None:
        features = backbone.predict(images)
        cache.put(key, features)

Files are written atomically; a truncated or corrupt file (a crash, a full disk, a hand edit) reads
as a miss and is replaced by the next `put`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import InputError
from transferkit.files import atomic_write, remove_partial_files

__all__ = ["FeatureCache", "weights_digest"]

_STALE_S = 24 * 3600


def _canonical(value: Any) -> Any:
    """Plain JSON data for a key part; arrays, paths, tuples and numpy scalars included."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__array__": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(),
                "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InputError(
        f"Feature cache key parts must be JSON data (str, numbers, lists, dicts), arrays or paths. "
        f"Received: {type(value).__name__} {value!r}."
    )


def weights_digest(model) -> str:
    """The sha256 (hex) of a Keras model's or layer's weights, in order: a key part that changes
    when the weights do (a fine-tuned backbone gets new keys)."""
    import keras

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Arrays on disk under content keys, one `<key>.npy` file each.

    Args:
        root: the cache folder (created on the first `put`), usually a sub-folder of
            `transferkit.files.cache_dir()`.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._swept = False

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    @staticmethod
    def key(**parts: Any) -> str:
        """The sha256 (hex) of the sorted JSON of `parts`; same parts, same key, in any order.

        Put everything the features depend on in the parts: backbone name, a digest of its weights
        (`transferkit.files.sha256_file`), image size or sequence length, preprocessing, and the inputs' digests.
        """
        if not parts:
            raise InputError(
                "`key` needs at least one part, e.g. key(backbone='...', files=[...])."
            )
        text = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        """The file that holds (or would hold) the array of `key`."""
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise InputError(
                f"A cache key must be letters, digits, '-' or '_' (use `FeatureCache.key(...)`). "
                f"Received: key={key!r}."
            )
        return self.root / f"{key}.npy"

    def __contains__(self, key: str) -> bool:
        """Whether a complete array is stored under `key` (reads the header, not the data)."""
        path = self.path(key)
        readers = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                if version not in readers:
                    return self.get(key) is not None
                shape, _, dtype = readers[version](handle)
                offset = handle.tell()
        except (OSError, ValueError, EOFError):
            return False
        if dtype.hasobject:
            return False
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return path.stat().st_size == offset + size

    def get(self, key: str) -> np.ndarray | None:
        """The array stored under `key`, or None if there is none or the file is unreadable
        (a corrupt file is deleted so that the next `put` replaces it)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def put(self, key: str, array: Any) -> Path:
        """Stores `array` under `key` (atomically) and returns the file's path.

        Raises:
            InputError: `array` holds Python objects, which `.npy` files cannot store safely.
        """
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise InputError(
                "The feature cache stores numeric arrays only. Received an array of dtype object; "
                "convert it with np.asarray(features, dtype='float32')."
            )
        path = self.path(key)
        with atomic_write(path, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        if not self._swept:
            # Temporary files of killed processes, once per cache object. Other processes may be
            # writing to a shared cache right now, so only files idle for a day go.
            remove_partial_files(self.root, older_than_s=_STALE_S)
            self._swept = True
        return path
