"""Files on disk: atomic writes, JSON, content hashes, and the cache folder. The ground floor.

Every file transferkit writes (models, weights, checkpoints, JSON state, cached features, report
pictures) goes through `atomic_path` or `atomic_write`: the bytes go to a temporary file in the
same folder, are flushed to disk, and only then `os.replace` puts the file in place. A process
killed mid-write (Ctrl-C, SIGKILL, a full disk) leaves either the old file or the new one, never a
truncated mix, so a rerun can trust what it finds. Temporary files are named
`.<target name>.tmp-<random><suffixes>`: hidden, keeping the target's suffixes (Keras checks them),
and easy to find again for `remove_partial_files`.

This module imports nothing heavier than the standard library (platformdirs on first use).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from transferkit.errors import InputError

__all__ = [
    "CACHE_DIR_ENV",
    "atomic_path",
    "atomic_write",
    "cache_dir",
    "read_json",
    "remove_partial_files",
    "sha256_file",
    "write_json",
]

#: Environment variable that overrides the cache folder (tests point it at a temporary folder).
CACHE_DIR_ENV = "TRANSFERKIT_CACHE_DIR"

_TEMP_MARK = ".tmp-"
_CHUNK = 1 << 20


def cache_dir(*parts: str) -> Path:
    """A folder inside the transferkit cache, created if needed.

    Args:
        *parts: sub-folders, e.g. `cache_dir("features", "images")`. None: the cache root.

    Returns:
        `$TRANSFERKIT_CACHE_DIR` when set and not empty, else the user cache folder
        (`~/.cache/transferkit` on Linux, from platformdirs), joined with `parts`.
    """
    root = os.environ.get(CACHE_DIR_ENV, "").strip()
    if root:
        path = Path(root).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("transferkit"))
    path = path.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks.

    Raises:
        InputError: the path is missing or is a folder.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; cannot compute its sha256.")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _suffixes(name: str) -> str:
    # Keras insists on `.weights.h5` and `.keras`, so a temporary name keeps every suffix.
    stem = name.lstrip(".")
    return stem[stem.index(".") :] if "." in stem else ""


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary path to write to; it replaces `path` when the block ends without error.

    For writers that take a path (`model.save`, `np.save`, h5py). The temporary path does not
    exist yet, is in `path`'s folder (so the rename is atomic) and keeps its suffixes. On success
    the file is fsynced and renamed onto `path`; if the block raises, it is deleted and an existing
    `path` is left untouched.

    Example:
        >>> with atomic_path("model.keras") as temp:  # doctest: +SKIP
        ...     model.save(temp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}{_TEMP_MARK}", suffix=_suffixes(path.name)
    )
    os.close(handle)
    temp = Path(name)
    temp.unlink()  # writers such as h5py want to create the file themselves
    try:
        yield temp
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Opens a temporary file that replaces `path` only when the `with` block succeeds.

    Args:
        path: the file to write. Its folder is created if needed.
        mode: `"wb"` (default) or `"w"` for text (UTF-8 unless `encoding` is given).
        **open_kwargs: passed to `open` (for example `newline=""`).

    Yields:
        The open temporary file (see `atomic_path` for what happens after the block).

    Example:
        >>> with atomic_write("scores.txt", "w") as handle:  # doctest: +SKIP
        ...     handle.write("0.97\\n")
    """
    if mode not in ("w", "wb", "wt"):
        # Appending or updating would start from an empty temporary file, not the old content.
        raise ValueError(f"`mode` must be 'wb' or 'w'. Received: mode={mode!r}.")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as temp, open(temp, mode, **open_kwargs) as handle:
        yield handle


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
    """Reads a JSON file (as `write_json` writes them)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
