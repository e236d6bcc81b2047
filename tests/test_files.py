"""The ground floor: atomic writes, JSON, content hashes and the cache folder."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transferkit.errors import DiskFullError, InputError
from transferkit.files import (
    CACHE_DIR_ENV,
    PAUSE_ENV,
    PAUSE_FILE_ENV,
    atomic_path,
    atomic_write,
    cache_dir,
    copy_file,
    pause_point,
    raise_if_disk_full,
    read_json,
    remove_partial_files,
    sha256_file,
    write_json,
)

SRC = Path(__file__).resolve().parents[1] / "src"


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


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    # h5py keeps only the text; Keras may wrap the OSError in its own error
    OSError("Can't write data (file write failed: errno = 28, error message = 'No space left "
            "on device')"),
    RuntimeError("saving failed"),  # raised from an ENOSPC below (see the chain)
])
def test_a_full_disk_is_one_error_naming_the_file_and_the_old_file_stays(tmp_path, error):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    if isinstance(error, RuntimeError):
        error.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DiskFullError) as caught:
        with atomic_path(target) as temp:
            temp.write_bytes(b"half")
            raise error
    assert str(caught.value) == (
        f"no space left on device while writing {target}; free space on that disk"
    )
    assert caught.value.path == str(target) and isinstance(caught.value, OSError)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.keras"]


def test_other_write_errors_pass_through(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_write(tmp_path / "x") as handle:
            handle.write(b"1")
            raise PermissionError(errno.EACCES, "Permission denied")
    assert raise_if_disk_full(OSError(errno.EIO, "I/O error"), tmp_path / "x") is None


def test_a_full_cache_disk_names_the_cache_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    with pytest.raises(DiskFullError, match=rf"; free space on that disk, or set {CACHE_DIR_ENV} "
                                            r"to a folder on another disk$"):
        raise_if_disk_full(OSError(errno.ENOSPC, "full"), cache_dir("features") / "a.npy")


def test_copy_file_is_atomic(tmp_path):
    (tmp_path / "a.txt").write_text("new")
    copy_file(tmp_path / "a.txt", tmp_path / "out" / "b.txt")
    assert (tmp_path / "out" / "b.txt").read_text() == "new"
    with pytest.raises(FileNotFoundError):
        copy_file(tmp_path / "missing.txt", tmp_path / "out" / "b.txt")
    assert (tmp_path / "out" / "b.txt").read_text() == "new"
    assert os.listdir(tmp_path / "out") == ["b.txt"]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_pause_point_stops_at_the_nth_match_for_a_test_to_kill(tmp_path):
    marker = tmp_path / "paused"
    script = (
        "from transferkit.files import pause_point\n"
        "for n in range(1, 4):\n"
        "    print(n, flush=True)\n"
        "    pause_point(f'epoch:head:{n}')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC), **{PAUSE_ENV: "epoch:head:*#2",
                                                  PAUSE_FILE_ENV: str(marker)})
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert [child.stdout.readline() for _ in range(2)] == [b"1\n", b"2\n"]
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == "epoch:head:2" and child.poll() is None  # paused there
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.stdout.read() == b""  # never went on to 3
    child.stdout.close()
    pause_point("epoch:head:2")  # unset here: nothing happens
