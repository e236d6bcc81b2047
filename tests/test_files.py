"""The ground floor: atomic writes, JSON, content hashes and the cache folder."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from transferkit.errors import InputError
from transferkit.files import (
    CACHE_DIR_ENV,
    atomic_path,
    atomic_write,
    cache_dir,
    read_json,
    remove_partial_files,
    sha256_file,
    write_json,
)


def test_atomic_write_replaces_the_file_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target, "w") as handle:
        handle.write("new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_write_keeps_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as handle:
            handle.write(b"half of the new cont")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]  # no temporary file left


def test_atomic_write_rejects_a_read_mode(tmp_path):
    for mode in ("r", "a", "r+b"):
        message = re.escape(f"`mode` must be 'wb' or 'w'. Received: mode='{mode}'")
        with pytest.raises(ValueError, match=message):
            with atomic_write(tmp_path / "x", mode):
                pass
    assert not (tmp_path / "x").exists()


def test_write_json_round_trips_and_writes_unknown_types_as_str(tmp_path):
    path = tmp_path / "data.json"
    write_json(path, {"a": [1, 2.5], "path": tmp_path, "name": "é"})
    assert read_json(path) == {"a": [1, 2.5], "path": str(tmp_path), "name": "é"}
    assert path.read_text(encoding="utf-8").startswith('{\n  "a"')  # indent 2


def test_atomic_path_keeps_suffixes_and_cleans_up(tmp_path):
    target = tmp_path / "model.weights.h5"
    with atomic_path(target) as temp:
        assert not temp.exists() and temp.parent == tmp_path  # the writer creates it
        assert temp.name.startswith(".model.weights.h5.tmp-") and temp.name.endswith(".weights.h5")
        temp.write_bytes(b"weights")
    assert target.read_bytes() == b"weights" and os.listdir(tmp_path) == ["model.weights.h5"]
    with pytest.raises(FileNotFoundError):  # a writer that wrote nothing does not replace it
        with atomic_path(target):
            pass
    assert target.read_bytes() == b"weights" and os.listdir(tmp_path) == ["model.weights.h5"]


def test_remove_partial_files_spares_recent_ones(tmp_path):
    (tmp_path / ".a.json.tmp-123.json").write_text("half")
    (tmp_path / "a.json").write_text("{}")
    assert remove_partial_files(tmp_path, older_than_s=3600) == 0
    assert remove_partial_files(tmp_path) == 1
    assert os.listdir(tmp_path) == ["a.json"]
    assert remove_partial_files(tmp_path / "missing") == 0


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir("features", "text").is_dir()
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("weights") == tmp_path / "xdg" / "transferkit" / "weights"


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    content = os.urandom(3 * (1 << 20) + 5)  # more than one chunk
    path.write_bytes(content)
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()
    with pytest.raises(InputError, match="no such file"):
        sha256_file(tmp_path / "missing")
