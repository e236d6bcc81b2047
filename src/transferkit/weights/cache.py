"""The user cache: where converted weights live, written atomically and checked by hash.

Files are written to a temporary name in their final folder and moved into place with
`os.replace`, so a reader never sees half a file, even if the writer is killed. Next to each file
`record_hash` writes `<file>.sha256` in `sha256sum` format; `is_valid` recomputes the hash, so a
truncated or corrupted file is noticed and rebuilt rather than loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

__all__ = [
    "CACHE_DIR_ENV",
    "cache_dir",
    "sha256_file",
    "sha256_bytes",
    "atomic_path",
    "atomic_write_bytes",
    "record_hash",
    "recorded_hash",
    "is_valid",
    "invalidate",
    "cached",
]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the cache folder (tests point it at a temporary folder).
CACHE_DIR_ENV = "TRANSFERKIT_CACHE_DIR"

_CHUNK = 1 << 20


def cache_dir(subdir: str | None = None) -> Path:
    """The cache folder, created if needed.

    Args:
        subdir: a folder inside the cache (`"weights"`). Default `None`, the cache root.

    Returns:
        `$TRANSFERKIT_CACHE_DIR` when set and non-empty, else
        `platformdirs.user_cache_dir("transferkit")`, joined with `subdir`.
    """
    root = os.environ.get(CACHE_DIR_ENV, "").strip()
    if root:
        path = Path(root).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("transferkit"))
    if subdir:
        path = path / subdir
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def _full_suffix(path: Path) -> str:
    # Keras insists on `.weights.h5`, so keep every suffix, not just the last.
    return "".join(path.suffixes)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write to; moved over `path` when the block ends without error.

    The temporary file is in `path`'s folder (so `os.replace` is an atomic rename) and keeps its
    suffixes (`x.weights.h5` -> `.x.<random>.tmp.weights.h5`). On an exception it is removed and
    `path` is left as it was.

    Example:
        >>> with atomic_path(cache_dir("weights") / "m.weights.h5") as tmp:  # doctest: +SKIP
        ...     model.save_weights(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = _full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_hash(path: str | os.PathLike) -> str:
    """Hashes `path` and writes `<path>.sha256` (`sha256sum -c` format); returns the hash."""
    path = Path(path)
    digest = sha256_file(path)
    atomic_write_bytes(_hash_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def recorded_hash(path: str | os.PathLike) -> str | None:
    """The hash recorded for `path` by `record_hash`, or `None` when there is no valid record."""
    try:
        text = _hash_path(Path(path)).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.split(" ", 1)[0].strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest


def is_valid(path: str | os.PathLike) -> bool:
    """Whether `path` exists and its bytes still hash to the recorded sha256."""
    path = Path(path)
    expected = recorded_hash(path)
    if expected is None or not path.is_file():
        return False
    return sha256_file(path) == expected


def invalidate(path: str | os.PathLike) -> None:
    """Forgets the hash recorded for `path`, so that the next `cached` call rebuilds it."""
    with contextlib.suppress(FileNotFoundError):
        _hash_path(Path(path)).unlink()


def cached(path: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Returns `path` once it holds a verified file, calling `build(tmp)` to write it if needed.

    Args:
        path: the cache file.
        build: writes the file's contents to the temporary path it is given. Called only when
            `path` is missing, has no hash record, or no longer matches it (then logged).

    Returns:
        `path`.
    """
    path = Path(path)
    if is_valid(path):
        return path
    if path.exists():
        logger.warning("Cached file %s does not match its recorded sha256; rebuilding it.", path)
    with atomic_path(path) as tmp:
        build(tmp)
    record_hash(path)
    return path
