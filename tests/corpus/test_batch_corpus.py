"""Batch jobs (`predict --output`, `embed`) under stress: two jobs on one output at once, the
lock of a killed job, inputs whose content changed under the same path, rows written twice.

Nothing stale survives a rerun and nothing is written twice: a second job is refused in one line
naming the first, a rerun recomputes exactly the inputs whose content changed, and says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import transferkit
from conftest import _run_cli
from helpers import SRC
from transferkit.batch.inputs import read_inputs
from transferkit.batch.output import MANIFEST, ShardedParquet, read_output
from transferkit.errors import InputError
from transferkit.run_folder import LOCK_NAME


def content_digests(task: str, items: list[str]) -> list[str]:
    # Imported here, so that the other cases run (and fail by what they do) on older code.
    from transferkit.batch.inputs import content_digests

    return content_digests(task, items)


def _one_error_line(code: int, err: str) -> str:
    assert code == 1 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("transferkit: error: "), err
    return lines[-1].removeprefix("transferkit: error: ")


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def images(faces, tmp_path) -> Path:
    """Two faces and two non-faces in a folder of this test's own (so they can be changed)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("face/face_000", "face/face_001", "not_face/not_face_000",
                 "not_face/not_face_001"):
        shutil.copy(faces / f"{name}.png", folder / f"{Path(name).name}.png")
    return folder


def _predict(model, inputs, output, **options) -> dict:
    return transferkit.batch_predict(model, inputs, output, runtime="keras", progress=False, **options)


# -- one job at a time ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_workers_without_ray_are_refused_in_python_too(image_run, images, tmp_path, command):
    """`workers` sizes Ray's actor pool; a local run has one model, so the library refuses the
    pair as the command line does, before the inputs are read or the output is made."""
    output = tmp_path / "out.parquet"
    with pytest.raises(InputError, match=r"`workers` is for Ray: add `ray`"):
        if command == "predict":
            transferkit.batch_predict(image_run[3], images, output, workers=2, progress=False)
        else:
            transferkit.batch_embed("efficientnet_lite0", images, output, workers=2, progress=False)
    assert not output.exists()


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_a_second_job_on_an_output_in_use_is_refused(image_run, images, tmp_path, holder,
                                                     command):
    output = tmp_path / "out.parquet"
    first = holder(output)
    before = _snapshot(output)
    code, out, err = _run_cli([command, image_run[3], images, "--output", output])
    message = _one_error_line(code, err)
    assert re.fullmatch(
        rf"{re.escape(str(output))} is in use by process {first.pid} \(started [^)]+\); wait "
        r"for it to finish, or pass another --output\.", message), message
    assert _snapshot(output) == before  # no manifest, no piece: nothing written twice


def _dead_lock(folder: Path) -> int:
    """Writes the `.lock` a killed job leaves (its process is gone); returns that process id."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(gone.stdout)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "h", "started": "then"}))
    return pid


@pytest.mark.parametrize("killed", ["after its manifest", "before its manifest"])
def test_the_lock_of_a_killed_job_is_taken_over_with_a_line(tmp_path, capsys, killed):
    output = tmp_path / "out.parquet"
    output.mkdir()
    job = {"command": "predict", "model_sha256": "m", "inputs": 2, "inputs_sha256": "i"}
    if killed == "after its manifest":
        (output / MANIFEST).write_text(json.dumps(job))
    else:  # killed as it wrote the manifest: its lock and a temporary file only
        (output / f".{MANIFEST}.tmp-abc123").write_text('{"comm')
    pid = _dead_lock(output)
    sink = ShardedParquet(output, job)
    sink.open()
    assert capsys.readouterr().out.splitlines() == [
        f"{output}: process {pid} on h (started then) is no longer running (killed?); taking "
        "over its lock"]
    assert json.loads((output / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert json.loads((output / MANIFEST).read_text()) == job
    sink.release()
    assert sorted(p.name for p in output.iterdir()) == [MANIFEST]


# -- inputs whose content changed ----------------------------------------------------------------


def _piece(sink: ShardedParquet, index: list[int], paths: list[Path], digests=None):
    import pyarrow as pa

    columns = {"index": index, "path": [str(p) for p in paths]}
    if digests is not False:
        columns["sha256"] = digests or content_digests("image", columns["path"])
    sink.write(pa.table({**columns, "label": ["x"] * len(index)}))


@pytest.mark.parametrize("change", ["two names swapped", "replaced in place", "written twice",
                                    "rows without sha256", "unreadable, then fixed"])
def test_rows_of_inputs_changed_since_are_taken_out(images, faces, tmp_path, change):
    """`keep` (what a rerun does before computing): the rows of inputs whose content is not
    what they were computed from leave their pieces; the others stay, each input once."""
    paths = sorted(images.iterdir())
    sink = ShardedParquet(tmp_path / "out.parquet", {"command": "predict"})
    sink.open()
    if change == "unreadable, then fixed":
        paths[1].write_bytes(b"\x89PNG cut short")
    _piece(sink, [0, 1], paths[:2], digests=None if change != "rows without sha256" else False)
    _piece(sink, [2, 3], paths[2:])
    expected = {0, 1, 2, 3}
    if change == "two names swapped":
        first, second = paths[0].read_bytes(), paths[2].read_bytes()
        paths[0].write_bytes(second)
        paths[2].write_bytes(first)
        expected = {1, 3}
    elif change == "replaced in place":
        shutil.copy(faces / "face" / "face_009.png", paths[3])
        expected = {0, 1, 2}
    elif change == "written twice":  # two jobs at once, before the lock
        _piece(sink, [2, 3], paths[2:])
    elif change == "rows without sha256":  # an output of an older transferkit
        expected = {2, 3}
    else:
        shutil.copy(faces / "face" / "face_001.png", paths[1])
        expected = {0, 2, 3}
    found = read_inputs(images, "image")
    assert found.items == [str(p) for p in paths]
    try:
        kept, changed = sink.keep(found.content_digests)
    finally:
        sink.release()
    assert (kept, changed) == (expected, 4 - len(expected))
    table = read_output(sink.folder)
    assert sorted(table["index"]) == sorted(expected)  # once each: stale rows gone
    assert table["sha256"].tolist() == found.content_digests(table["index"].tolist())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_never_opened_for_its_digest(tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    started = time.monotonic()
    assert content_digests("image", [str(pipe), str(tmp_path / "gone.png")]) == [
        "not a regular file", "unreadable: No such file or directory"]
    assert time.monotonic() - started < 5  # reading it would wait for a writer forever


# -- the same, end to end (each loads the model and computes: 5-20 s) ---------------------------


@pytest.mark.slow  # three jobs, two of which load the model and compute (~5-20 s)
def test_inputs_changed_under_their_paths_are_computed_again(image_run, images, faces,
                                                             tmp_path):
    model = image_run[3]
    output = tmp_path / "out.parquet"
    _predict(model, images, output, shard_size=3)
    face, other = images / "face_000.png", images / "not_face_000.png"
    swapped = face.read_bytes()
    face.write_bytes(other.read_bytes())  # two files' names swapped
    other.write_bytes(swapped)
    shutil.copy(faces / "face" / "face_009.png", images / "face_001.png")  # replaced in place
    again = _predict(model, images, output, shard_size=3)
    fresh = tmp_path / "fresh.parquet"
    _predict(model, images, fresh)
    got, expected = read_output(output), read_output(fresh)
    assert got["index"].tolist() == [0, 1, 2, 3]  # each input once, the stale rows gone
    assert got.round(5).equals(expected.round(5))  # as if computed now, the sha256 included
    assert got["sha256"].tolist() == content_digests("image", got["path"].tolist())
    assert (again["resumed"], again["changed"], again["done"]) == (1, 3, 3)


@pytest.mark.slow  # two jobs through the command line, each loads the model (~5-20 s)
def test_an_unreadable_input_fixed_since_is_computed_again(image_run, images, faces, tmp_path):
    model = image_run[3]
    output = tmp_path / "out.parquet"
    broken = images / "face_001.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    code, out, err = _run_cli(["predict", model, images, "--output", output])
    assert code == 0 and "1 could not be read" in out, err
    shutil.copy(faces / "face" / "face_001.png", broken)
    code, out, err = _run_cli(["predict", model, images, "--output", output])
    assert code == 0, err
    assert ("1 of 4 inputs written" in out and "3 done before (resumed)" in out
            and "1 computed again: their input changed since the last run" in out), out
    table = read_output(output)
    assert table["error"].isna().all() and table["label"].notna().all()


@pytest.mark.slow  # loads the model and computes (~5-20 s)
def test_a_job_killed_before_its_manifest_does_not_block_the_next(image_run, images, tmp_path):
    output = tmp_path / "out.parquet"
    output.mkdir()
    pid = _dead_lock(output)
    (output / f".{MANIFEST}.tmp-abc123").write_text('{"comm')
    code, out, err = _run_cli(["predict", image_run[3], images, "--output", output, "--runtime",
                               "keras"])
    assert code == 0, err
    assert (f"{output}: process {pid} on h (started then) is no longer running (killed?); "
            "taking over its lock") in err.splitlines()
    assert "4 of 4 inputs written" in out
    assert not [p.name for p in output.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # a real first job in a child process, paused in its first piece (~20-60 s)
def test_two_jobs_at_once_write_each_row_once(image_run, images, tmp_path):
    """The reported case: a second `predict --output` on the folder a running one writes."""
    output, marker = tmp_path / "out.parquet", tmp_path / "paused"
    argv = ["predict", str(image_run[3]), str(images), "--output", str(output), "--shard-size",
            "2", "--runtime", "keras"]
    env = dict(os.environ, PYTHONPATH=str(SRC), TRANSFERKIT_TEST_PAUSE_AT="write:part-*",
               TRANSFERKIT_TEST_PAUSE_FILE=str(marker))
    first = subprocess.Popen([sys.executable, "-m", "transferkit.cli", *argv], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():  # its first piece written, not yet renamed into place
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first job did not reach its first piece"
            time.sleep(0.2)
        code, out, err = _run_cli(argv)
        message = _one_error_line(code, err)
        assert message.startswith(f"{output} is in use by process {first.pid} (started "), message
    finally:
        first.kill()
        first.wait(timeout=30)
        first.stderr.close()
    code, out, err = _run_cli(argv)  # the first one was killed: its lock is taken over
    assert code == 0 and "taking over its lock" in err, err
    assert read_output(output)["index"].tolist() == [0, 1, 2, 3]
