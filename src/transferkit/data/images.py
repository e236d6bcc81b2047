"""Reading images from disk the way users keep them.

`load_image` decodes one file with Pillow into an RGB uint8 array: EXIF orientation applied;
grayscale, RGBA, palette, CMYK and 16-bit images converted to RGB. Anything wrong with the path
raises `ImageReadError` with one line that names the path and what to do.

For models: `load_resized` reads straight to the model's input size (fast for large JPEGs), and
`image_dataset` is the tf.data pipeline (parallel decode and resize, prefetch) that training and
evaluation share; `image_batches` reads numpy batches ahead in a thread pool, for feature
extraction on any runtime (faster than tf.data in front of ONNX Runtime, and without TensorFlow).
Unreadable files go to a `DecodeLog`, never silently away.
"""

from __future__ import annotations

import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np

from transferkit.checks import check_image_size
from transferkit.data.epoch_order import EpochOrder
from transferkit.errors import ImageReadError

__all__ = [
    "IMAGE_EXTENSIONS",
    "DecodeLog",
    "image_batches",
    "image_dataset",
    "load_image",
    "load_resized",
    "resize_image",
    "decode_rgb",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def _to_rgb(image):
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the actual range to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        high = array.max() if array.size else 0
        scale = 255.0 / high if high > 255 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparency over white, as a viewer shows it, instead of dropping alpha.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file into an RGB `uint8` array of shape `(height, width, 3)`.

    Args:
        path: a JPEG, PNG, BMP, GIF (first frame) or WebP file.

    Returns:
        The pixels, with EXIF orientation applied.

    Raises:
        ImageReadError: the path does not exist, is a folder, or is not a readable image.
    """
    return np.asarray(_open_rgb(path), dtype=np.uint8).copy()


def _open_rgb(path: str | os.PathLike, draft: tuple[int, int] | None = None):
    """The image at `path` as a loaded RGB Pillow image, EXIF orientation applied; a JPEG at least
    twice `draft` is decoded at a reduced scale. Every failure is an `ImageReadError`."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_regular_file(path)
    try:
        with _open_image(path) as image:
            return decode_rgb(image, draft)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: {_not_an_image(path)}") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied. Make the file readable.") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: {_too_many_pixels(path)}") from None
    except Exception as exc:  # noqa: BLE001 - a decoder fed hostile bytes raises anything
        # (OSError, SyntaxError, ValueError, struct.error, IndexError, ...): all mean "corrupt".
        raise ImageReadError(
            f"{path}: the image is corrupt or truncated ({type(exc).__name__}: {exc}). "
            "Re-export or remove the file."
        ) from None


_OPEN_LOCK = threading.Lock()


def _open_image(path: Path):
    """`Image.open(path)`, with Pillow's `DecompressionBombWarning` silenced: from
    `MAX_IMAGE_PIXELS` to twice that, Pillow only warns, and a big real photo (a 108 Mpx phone
    camera's) is loaded on purpose; above, `DecompressionBombError` is a skip.

    Pillow checks the size when it opens (reads the header), not when it decodes. The warning
    filters are global, and `catch_warnings` from parallel decoding threads would restore each
    other's filters, so opening holds a lock (a header read, short) and decoding does not.
    """
    from PIL import Image

    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _check_regular_file(path: Path) -> None:
    """Refuses what cannot be opened as an image file, before opening it: opening a named pipe
    waits for a writer forever, and a device never ends."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        why = "a broken link" if os.path.islink(path) else "no such file"
        raise ImageReadError(f"{path}: {why}. Check the path and try again.") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(
            f"{path}: is a folder, expected an image file. Pass the image files inside it "
            f"(for example {path}/*.jpg)."
        )
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(f"{path}: {special_file_reason(info.st_mode)}. Pass image files.")
    if info.st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes). Re-export or remove the file.")


def special_file_reason(mode: int) -> str:
    """Why a path that is not a regular file (`os.stat(...).st_mode`) is not read."""
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _not_an_image(path: Path) -> str:
    """What a file Pillow does not recognise is, when its first bytes say (a saved web page)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512).lstrip().lower()
    except OSError:
        head = b""
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in head:
        return ("an HTML page, not an image (a web page saved under an image name?). Download "
                "the image itself, or remove the file.")
    return "not an image Pillow can read. Use JPEG, PNG, BMP, GIF or WebP files."


def _too_many_pixels(path: Path) -> str:
    """The reason an image over Pillow's pixel limit is skipped, with its size."""
    from PIL import Image

    size = _header_size(path)
    shown = f"{size[0]}x{size[1]} pixels" if size else "the image"
    return (f"{shown} is over Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS:,} pixels (2 x "
            "PIL.Image.MAX_IMAGE_PIXELS), a guard against decompression bombs. Resize the image, "
            "or remove it.")


def _header_size(path: Path) -> tuple[int, int] | None:
    """`(width, height)` from the file's header, without the pixel limit and without decoding.

    `Image.open` checks the limit before it hands the image back, and lifting
    `Image.MAX_IMAGE_PIXELS` for a moment would lift it for the other decoding threads too, so
    the format's own opener (what `Image.open` calls) reads the header here.
    """
    from PIL import Image

    Image.init()
    with open(path, "rb") as handle:
        prefix = handle.read(16)
        for name in Image.ID:
            factory, accept = Image.OPEN[name]
            if accept and not accept(prefix):
                continue
            handle.seek(0)
            try:
                return tuple(factory(handle, os.fspath(path)).size)
            except Exception:  # noqa: BLE001, S112 - not this format; try the next
                continue
    return None


def decode_rgb(image, draft: tuple[int, int] | None = None):
    """An opened Pillow image decoded for a model: a JPEG at least twice `draft` at a reduced
    scale, EXIF orientation applied, any mode to RGB (what `load_image` and `load_resized` do
    after opening a file; the server calls it on uploads)."""
    from PIL import ImageOps

    if draft is not None and image.format == "JPEG":
        # Square request: both sides stay >= the larger target side whatever the EXIF
        # rotation, so the crop never has to upscale.
        image.draft(None, (max(draft), max(draft)))
    image = ImageOps.exif_transpose(image)
    image.load()
    return _to_rgb(image)


def resize_image(image: np.ndarray, size: int | tuple[int, int], policy: str = "center_crop"):
    """Resizes an RGB array to `size` (an int for a square, or `(height, width)`).

    Args:
        image: `uint8` array `(h, w, 3)`.
        size: target side or `(height, width)`.
        policy: `"center_crop"` (default) resizes the shorter side to fit, then crops the centre,
            keeping the aspect ratio; `"stretch"` resizes to `size` directly.

    Returns:
        A `float32` array `(height, width, 3)` with values in [0, 255].
    """
    from PIL import Image

    pair = (size, size) if isinstance(size, int) else tuple(size)
    return np.asarray(_resize_pil(Image.fromarray(image), pair, policy), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Sizes, fast loading for models, and tf.data pipelines.


def _resize_pil(pil, size: tuple[int, int], policy: str):
    from PIL import Image

    height, width = size
    if policy == "stretch":
        return pil.resize((width, height), Image.BICUBIC)
    if policy == "center_crop":
        scale = max(height / pil.height, width / pil.width)
        new_w = max(width, round(pil.width * scale))
        new_h = max(height, round(pil.height * scale))
        left, top = (new_w - width) // 2, (new_h - height) // 2
        pil = pil.resize((new_w, new_h), Image.BICUBIC)
        return pil.crop((left, top, left + width, top + height))
    raise ValueError(f"`policy` must be 'center_crop' or 'stretch'. Received: policy={policy!r}.")


def load_resized(
    path: str | os.PathLike, image_size, policy: str = "center_crop"
) -> np.ndarray:
    """Reads an image and resizes it for a model: RGB `uint8` `(height, width, 3)`.

    The same conversions as `load_image` (EXIF orientation, any mode to RGB). A JPEG at least twice
    the target size is decoded at a reduced scale (Pillow's `draft`, as `thumbnail` does), which makes
    loading phone photos many times faster and changes no pixel of images near the target size.

    Args:
        path: an image file.
        image_size: an int (square) or `(height, width)`.
        policy: `"center_crop"` (default) or `"stretch"`, as in `resize_image`.

    Raises:
        ImageReadError: as `load_image`.
    """
    size = check_image_size(image_size)
    if policy not in ("center_crop", "stretch"):
        raise ValueError(
            f"`policy` must be 'center_crop' or 'stretch'. Received: policy={policy!r}."
        )
    return np.asarray(_resize_pil(_open_rgb(path, draft=size), size, policy), dtype=np.uint8)


class DecodeLog:
    """Collects the files a pipeline could not read, so they are reported instead of dropped.

    Thread-safe: tf.data decodes in parallel threads.
    """

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self.errors: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        with self._lock:
            self.errors[path] = message

    def __len__(self) -> int:
        return len(self.errors)

    def items(self) -> list[dict]:
        """`[{"path": ..., "reason": ...}]`, sorted by path."""
        with self._lock:
            return [{"path": p, "reason": self.errors[p]} for p in sorted(self.errors)]


def image_dataset(
    paths,
    labels=None,
    *,
    image_size,
    batch_size: int,
    policy: str = "center_crop",
    shuffle: bool = False,
    seed: int | None = None,
    decode_log: DecodeLog | None = None,
    keep_unreadable: bool = False,
    drop_remainder: bool = False,
):
    """A `tf.data.Dataset` of resized images, decoded in parallel threads and prefetched.

    Each file is read with `load_resized` (Pillow releases the GIL while it decodes and resizes, so
    the threads run in parallel). A file that cannot be read is recorded in `decode_log` and
    dropped, or, with `keep_unreadable=True`, kept as a black image with `ok=False`, so that row
    `i` of the output is always `paths[i]`.

    Args:
        paths: image files.
        labels: one int per path, or `None` for unlabelled images. Default `None`.
        image_size: an int or `(height, width)`.
        policy: `"center_crop"` (default) or `"stretch"`.
        batch_size: images per batch.
        shuffle: shuffle the files each epoch, epoch `e` in an order drawn from `(seed, e)`;
            the dataset then has `set_epoch(e)` (`transferkit.data.epoch_order`). Default `False`.
        seed: shuffle seed. Default `None`: a new order each run.
        decode_log: where unreadable files are recorded. Default `None` (a new, private log).
        keep_unreadable: keep rows of unreadable files, with an `ok` flag. Default `False`.
        drop_remainder: leave out a last batch smaller than `batch_size` (data-parallel
            training). Default `False`.

    Returns:
        Batches of `uint8` images `(b, h, w, 3)`, with the labels when given (`(images, labels)`);
        with `keep_unreadable=True` each element ends with the `ok` flags.
    """
    import tensorflow as tf

    height, width = check_image_size(image_size)
    paths = [os.fspath(p) for p in paths]
    decode = _decoder((height, width), policy, decode_log if decode_log is not None else DecodeLog())
    parts = (tf.constant(paths, dtype=tf.string),)
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels.")
        parts += (labels,)
    parts = parts if len(parts) > 1 else parts[0]
    order = EpochOrder(len(paths), seed) if shuffle else None
    index = tf.data.Dataset.from_tensor_slices(parts) if order is None else order.slices(parts)

    def element(path, *label):  # (image, ok) or (image, label, ok)
        image, ok = decode(path)
        return (image, *label, ok)

    def readable(*parts):
        return parts[-1]

    def drop_flag(*parts):
        return parts[0] if len(parts) == 2 else parts[:-1]

    dataset = index.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not keep_unreadable:
        dataset = dataset.filter(readable).map(drop_flag)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    return dataset if order is None else order.attach(dataset)


def _load_or_log(path: str, size: tuple[int, int], policy: str, log: DecodeLog):
    """`(uint8 image, True)`, or for an unreadable file a black image, `False` and a line in
    `log`."""
    try:
        return load_resized(path, size, policy), True
    except ImageReadError as exc:
        log.add(path, str(exc))
        return np.zeros((*size, 3), np.uint8), False


def image_batches(paths, *, image_size, batch_size: int, policy: str = "center_crop",
                  decode_log: DecodeLog | None = None, workers: int | None = None):
    """Batches of resized images as numpy, decoded ahead in a thread pool, in order.

    Pillow releases the GIL while it decodes and resizes, so `workers` threads decode the next
    batches while the caller runs a model on this one. Every row is kept: an unreadable file is a
    black image with `ok=False`, and a line in `decode_log`.

    Args:
        paths: image files.
        image_size: an int or `(height, width)`.
        batch_size: images per batch.
        policy: `"center_crop"` (default) or `"stretch"`.
        decode_log: where unreadable files are recorded. Default `None` (a new, private log).
        workers: decoding threads. Default `None`: one per core.

    Yields:
        `(images, ok)`: `uint8` `(b, h, w, 3)` and `bool` `(b,)`.
    """
    import itertools
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    size = check_image_size(image_size)
    paths = [os.fspath(p) for p in paths]
    log = decode_log if decode_log is not None else DecodeLog()
    workers = workers or os.cpu_count() or 1

    def read(start: int):
        rows = [_load_or_log(p, size, policy, log) for p in paths[start:start + batch_size]]
        return (np.stack([image for image, _ in rows]),
                np.array([ok for _, ok in rows], dtype=bool))

    starts = iter(range(0, len(paths), batch_size))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        ahead = deque(pool.submit(read, start) for start in itertools.islice(starts, workers + 1))
        while ahead:
            batch = ahead.popleft().result()
            start = next(starts, None)
            if start is not None:
                ahead.append(pool.submit(read, start))
            yield batch


def _decoder(size: tuple[int, int], policy: str, log: DecodeLog):
    """A tf.data function: path -> (uint8 image, ok), decoded with Pillow in a worker thread; an
    unreadable file gives a black image, `ok=False`, and a line in `log`."""
    import tensorflow as tf

    height, width = size

    def load(path_bytes):
        path = path_bytes.decode("utf-8") if isinstance(path_bytes, bytes) else str(path_bytes)
        return _load_or_log(path, size, policy, log)

    def decode(path):
        image, ok = tf.numpy_function(load, [path], (tf.uint8, tf.bool), stateful=False)
        image.set_shape((height, width, 3))
        ok.set_shape(())
        return image, ok

    return decode
