"""A model folder shipped as a zip cut into chunks, one package each (`transferkit.weights.parts`):
read as one file, extracted whole or not at all, found through installed packages' metadata."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from transferkit.errors import WeightsError
from transferkit.weights.parts import JoinedChunks, chunk_files, extract_folder


def _zip_in_chunks(folder, sizes=(700, 1000)) -> tuple[list, dict]:
    """A zip of `model/` (three files, one of them larger than a chunk) cut at `sizes`:
    `(chunk paths, {name: bytes})`."""
    rng = np.random.default_rng(0)
    files = {"config.json": b'{"model_type": "mpnet"}', "weights.bin": rng.bytes(3000),
             "sub/vocab.txt": b"<s>\n<pad>\n</s>\n"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model/", b"")
        for name, data in files.items():
            archive.writestr(f"model/{name}", data)
        archive.writestr("elsewhere.txt", b"not in the folder")
    data, cuts = buffer.getvalue(), [0, *np.cumsum(sizes), None]
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for i, (start, end) in enumerate(zip(cuts[:-1], cuts[1:], strict=True), start=1):
        chunks.append(folder / f"model.zip.{i:03d}")
        chunks[-1].write_bytes(data[start:end])
    return chunks, files


def test_joined_chunks_read_and_seek_as_the_whole_file(tmp_path):
    chunks, _ = _zip_in_chunks(tmp_path)
    whole = b"".join(path.read_bytes() for path in chunks)
    rng = np.random.default_rng(1)
    with JoinedChunks(chunks) as joined:
        assert joined.read() == whole
        for _ in range(200):  # reads that start in one chunk and end in another
            start, size = int(rng.integers(0, len(whole))), int(rng.integers(0, 1500))
            joined.seek(start)
            assert joined.read(size) == whole[start:start + size]
            assert joined.tell() == min(start + size, len(whole))
        joined.seek(-10, io.SEEK_END)
        assert joined.read() == whole[-10:]


def test_the_folder_is_extracted_once_and_whole(tmp_path):
    chunks, files = _zip_in_chunks(tmp_path / "installed")
    target = tmp_path / "cache" / "encoders" / "tiny"
    assert extract_folder(chunks, "model", target) == target
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*")
            if p.is_file()} == files  # the folder only, not the zip's other files
    (target / "config.json").write_bytes(b"kept")
    extract_folder(chunks, "model", target)  # already there: not extracted again
    assert (target / "config.json").read_bytes() == b"kept"
    assert [p.name for p in target.parent.iterdir()] == ["tiny"]  # no scratch folder left


def test_chunks_that_do_not_make_the_zip_lose_nothing_and_say_so(tmp_path):
    chunks, _ = _zip_in_chunks(tmp_path / "installed")
    chunks[-1].write_bytes(chunks[-1].read_bytes()[:-200])  # the zip's directory cut off
    target = tmp_path / "cache" / "tiny"
    with pytest.raises(WeightsError, match="do not join into a zip"):
        extract_folder(chunks, "model", target)
    assert not target.exists() and list(target.parent.iterdir()) == []
    good, _ = _zip_in_chunks(tmp_path / "other")
    with pytest.raises(WeightsError, match="hold no absent/"):
        extract_folder(good, "absent", target)
    assert list(target.parent.iterdir()) == []


def _install(site, name: str, chunk) -> None:
    """A distribution `name` whose RECORD lists one chunk file, as pip leaves a data package."""
    info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    relative = chunk.relative_to(site).as_posix()
    (info / "RECORD").write_text(f"{relative},,\n{info.name}/METADATA,,\n")


def test_chunk_files_come_from_the_installed_packages_in_order(tmp_path, monkeypatch):
    site = tmp_path / "site"
    chunks, files = _zip_in_chunks(site / "tiny-model-part_data")
    names = [f"tiny-model-part-{i:03d}" for i in range(1, 4)]
    for name, chunk in zip(reversed(names), reversed(chunks), strict=True):
        _install(site, name, chunk)
    monkeypatch.syspath_prepend(str(site))
    assert chunk_files(tuple(names)) == chunks
    assert chunk_files((*names, "tiny-model-part-004")) is None  # one not installed
    chunks[1].unlink()
    assert chunk_files(tuple(names)) is None  # installed, its file gone
