"""Writing files so that a crash never leaves half of one behind.

Every file a run writes (models, weights, checkpoints, JSON state, cached features) goes through
`atomic_write`: the bytes go to a temporary file in the same folder, are flushed to disk, and only
then `os.replace` puts the file in place. A process killed mid-write (Ctrl-C, SIGKILL, a full disk)
leaves either the old file or the new one, never a truncated mix, so a rerun can trust what it
finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "write_json",
    "read_json",
    "save_model_atomic",
    "save_weights_atomic",
    "load_weights",
    "remove_partial_files",
]

# Temporary files are named `.<target name>.tmp-<random><suffix>`: hidden, and easy to find again.
_TEMP_MARK = ".tmp-"


def _temp_path(path: Path, suffix: str) -> Path:
    """A fresh, unused path beside `path` whose name ends with `suffix`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}{_TEMP_MARK}", suffix=suffix
    )
    os.close(handle)
    return Path(name)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(temp: Path, path: Path) -> None:
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Opens a temporary file that replaces `path` only when the `with` block succeeds.

    Args:
        path: the file to write. Its folder is created if needed.
        mode: `"wb"` (default) or `"w"` for text.
        **open_kwargs: passed to `open` (for example `encoding="utf-8"`, `newline=""`).

    Yields:
        The open temporary file. On success it is flushed, fsynced and renamed onto `path`; if the
        block raises, the temporary file is deleted and an existing `path` is left untouched.

    Example:
        >>> with atomic_write("scores.txt", "w") as handle:
        ...     handle.write("0.97\\n")
    """
    if mode not in ("w", "wb", "wt"):
        # Appending or updating would start from an empty temporary file, not the old content.
        raise ValueError(f"`mode` must be 'wb' or 'w'. Received: mode={mode!r}.")
    path = Path(path)
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    temp = _temp_path(path, ".tmp")
    try:
        with open(temp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def remove_partial_files(folder: str | os.PathLike, older_than_s: float = 0.0) -> int:
    """Deletes the temporary files a killed process left in `folder` (not its sub-folders).

    A process killed by SIGKILL cannot clean up; its half-written temporary file stays beside the
    target (the target itself is intact). Call this where only one process writes, or with
    `older_than_s` so that files other processes are writing right now are spared.

    Args:
        folder: the folder to clean. A missing folder is fine.
        older_than_s: only delete files not modified for this many seconds. Default `0`.

    Returns:
        How many files were deleted.
    """
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for path in folder.glob(f".*{_TEMP_MARK}*"):
        try:
            if path.is_file() and now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes `data` as indented JSON, atomically. Values JSON cannot hold are written as `str`."""
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n"
    with atomic_write(path, "w") as handle:
        handle.write(text)


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file written by `write_json`."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _save_via_temp(path: str | os.PathLike, suffix: str, save) -> None:
    path = Path(path)
    if not path.name.endswith(suffix):
        raise ValueError(f"The file name must end in `{suffix}`. Received: path={str(path)!r}.")
    # Keras checks the extension of the file it writes, so the temporary name keeps it.
    temp = _temp_path(path, suffix)
    try:
        temp.unlink()  # Keras (h5py) wants to create the file itself
        save(temp)
        _commit(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


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
