"""Images as a classifier takes them: file paths or RGB arrays, with a content digest each.

`ImageInputs` holds one list of either; `dataset(...)` is the tf.data pipeline over it (decoded
and resized in parallel threads for files, already in memory for arrays). The digests are the
feature cache's keys: the same picture gets the same features whatever its file is called.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Sequence

import numpy as np

from transferkit.data.epoch_order import EpochOrder
from transferkit.errors import ImageReadError, InputError

__all__ = ["ImageInputs", "filtered_dataset_warnings", "image_list", "to_uint8", "unreadable_error"]


def is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def to_uint8(image) -> np.ndarray:
    """An RGB `uint8` array `(h, w, 3)` from a grey, RGB or RGBA array of any number type."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputError(
            "Images must be RGB arrays of shape (height, width, 3) with values in [0, 255]. "
            f"Received: shape {array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.asarray(array, dtype=np.float64)), 0, 255).astype(np.uint8)
    return array


def image_list(inputs) -> list:
    """A list of paths or of RGB arrays, from one path, paths, one image or a batch array."""
    if is_path(inputs):
        return [inputs]
    if isinstance(inputs, np.ndarray) or hasattr(inputs, "numpy"):
        array = np.asarray(inputs)
        if array.ndim == 3:
            return [array]
        if array.ndim == 4:
            return list(array)
        raise InputError(
            "An image array must be (height, width, 3) or a batch (n, height, width, 3). "
            f"Received: shape {array.shape}."
        )
    try:
        items = list(inputs)
    except TypeError:
        raise InputError(
            "Pass image file paths, or RGB arrays of shape (height, width, 3). "
            f"Received: {type(inputs).__name__}."
        ) from None
    if not items:
        raise InputError("No images given. Pass one or more image files or arrays.")
    return items


def _array_digest(image: np.ndarray) -> str:
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _resized_arrays(images: Sequence, size: tuple[int, int], policy: str) -> np.ndarray:
    from transferkit.data.images import resize_image

    out = np.empty((len(images), *size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        array = to_uint8(image)
        if array.shape[:2] != tuple(size):
            array = np.clip(np.rint(resize_image(array, size, policy)), 0, 255).astype(np.uint8)
        out[i] = array
    return out


def unreadable_error(items: list[dict]) -> ImageReadError:
    """One error naming the files that could not be read (`{"path", "reason"}` each)."""
    shown = "; ".join(item["reason"] for item in items[:3])
    more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
    return ImageReadError(f"{len(items)} image(s) could not be read: {shown}{more}")


@contextlib.contextmanager
def filtered_dataset_warnings():
    """Keras warns "Your input ran out of data" at the end of the first epoch of any dataset whose
    length is unknown, as a filtered one (unreadable files dropped) is; that is expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        yield


class ImageInputs:
    """Images given as file paths or as arrays (not a mix), with a content digest each.

    Args:
        items: image paths, or RGB arrays.
        digests: path -> sha256 already known (from `ImageFolder`). Default `None`.
    """

    def __init__(self, items: list, digests: dict | None = None):
        self.items = list(items)
        self.are_paths = all(is_path(i) for i in self.items)
        if not self.are_paths and any(is_path(i) for i in self.items):
            raise InputError("Pass either image paths or image arrays, not a mix of both.")
        if self.are_paths:
            self.items = [os.fspath(p) for p in self.items]
        self._known = digests or {}
        self._digests: list[str] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def subset(self, indices) -> ImageInputs:
        """The inputs at `indices`, keeping the known digests."""
        return ImageInputs([self.items[i] for i in indices], self._known)

    def digests(self) -> list[str]:
        """The content digest of each image (the sha256 of a file, or of an array's pixels)."""
        if self._digests is None:
            if self.are_paths:
                from transferkit.files import sha256_file

                self._digests = [
                    self._known.get(p) or (sha256_file(p) if os.path.isfile(p) else "missing:" + p)
                    for p in self.items
                ]
            else:
                self._digests = [_array_digest(to_uint8(a)) for a in self.items]
        return self._digests

    def displayable(self) -> list:
        """Paths as they are, arrays as uint8 RGB: what the report's pictures can show."""
        return [item if is_path(item) else to_uint8(item) for item in self.items]

    def batches(self, size, policy, *, batch_size: int, decode_log=None):
        """`(uint8 images, ok flags)` numpy batches in order, files decoded ahead in threads
        (`transferkit.data.images.image_batches`); what feature extraction runs on."""
        if self.are_paths:
            from transferkit.data.images import image_batches

            yield from image_batches(self.items, image_size=size, batch_size=batch_size,
                                     policy=policy, decode_log=decode_log)
            return
        for start in range(0, len(self.items), batch_size):
            arrays = _resized_arrays(self.items[start:start + batch_size], size, policy)
            yield arrays, np.ones(len(arrays), dtype=bool)

    def dataset(self, size, policy, *, batch_size: int, labels=None, shuffle=False, seed=None,
                decode_log=None, keep_unreadable=False, drop_remainder=False):
        """A tf.data pipeline of `uint8` images resized to `size` (and labels, and `ok` flags with
        `keep_unreadable`; see `transferkit.data.images.image_dataset`, also for `shuffle`)."""
        import tensorflow as tf

        from transferkit.data.images import image_dataset

        if self.are_paths:
            return image_dataset(
                self.items, labels, image_size=size, policy=policy, batch_size=batch_size,
                shuffle=shuffle, seed=seed, decode_log=decode_log,
                keep_unreadable=keep_unreadable, drop_remainder=drop_remainder,
            )
        arrays = _resized_arrays(self.items, size, policy)
        parts = (arrays,) if labels is None else (arrays, np.asarray(labels))
        if keep_unreadable:  # arrays are always readable; same element shape as for files
            parts += (np.ones(len(arrays), dtype=bool),)
        parts = parts if len(parts) > 1 else arrays
        order = EpochOrder(len(arrays), seed) if shuffle else None
        dataset = tf.data.Dataset.from_tensor_slices(parts) if order is None else order.slices(parts)
        dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        return dataset if order is None else order.attach(dataset)
