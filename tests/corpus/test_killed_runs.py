"""Killed runs resume to the same result (slow): `transferkit train images` and `train text`
(a transformer), each a real process killed with SIGKILL at five points, then rerun with `--resume`.

The kill points come from the test-only hook `transferkit.files.pause_point`: with
`TRANSFERKIT_TEST_PAUSE_AT` set, the process writes a marker file at that point and sleeps, and
the test kills it there (deterministic, unlike waiting for a log line). After each kill
`model.keras` must be absent or load; the resumed run must finish with the reference run's
classes, accuracy and weights (bit for bit; the one exception, a kill while image features are
cached, is within half a point of accuracy), leave no temporary file behind, and say that it took
over the killed run's lock. Below, one run of each kind of model (images, GloVe + BiLSTM, a tiny
transformer), with augmentation or dropout, is killed in its head phase and again in fine-tuning:
the same weights, bit for bit.

Small on purpose (the slow run's budget): 20 + 20 faces at 64x64 on the tiny `test_cnn` backbone
for images, 60 toy reviews at 16 tokens through a tiny random BERT (`transferkit.testing`) for
text: resuming does not depend on the model, and each process built EfficientNet-Lite0 or loaded
MiniLM before; one uninterrupted reference run per task. Each task's run is killed at the
points in turn (each resume killed at the next point: a process a point, not two), then resumed
to the end; an image run killed while caching its features has a run of its own. The reference
runs are trained once for all xdist workers (`helpers.once_across_workers`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import once_across_workers, weight_arrays, write_faces, write_table
from transferkit.testing import TINY_BACKBONE, tiny_bert_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX"),
]

SRC = Path(__file__).resolve().parents[2] / "src"

# where the run is killed -> the pause point (see transferkit.files.pause_point)
KILL_POINTS = {
    "feature caching": "write:*.npy",  # the first cached feature file, complete, not yet renamed
    "head epoch 2": "epoch:head:2",  # epoch 1 saved, epoch 2 under way
    "between phases": "phase:fine_tune",  # the head finished, fine-tuning not started
    "fine-tune epoch 1": "epoch:fine_tune:1",
    "saving": "write:model.keras",  # model.keras written to its temporary name, not renamed
}
TOLERANCE = 0.005  # half a point of accuracy

IMAGE_OPTIONS = ["--backbone", TINY_BACKBONE, "--image-size", "64", "--epochs", "4", "--patience", "50",
                 "--fine-tune-epochs", "1", "--fine-tune-patience", "50", "--unfreeze", "5",
                 "--augment", "none", "--no-calibrate"]
TEXT_OPTIONS = ["--max-length", "16", "--epochs", "4", "--patience", "50",
                "--fine-tune-epochs", "1", "--fine-tune-patience", "50", "--no-calibrate"]


def _env(cache: Path, pause: str | None = None, marker: Path | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(SRC), TRANSFERKIT_CACHE_DIR=str(cache))
    for key in ("TRANSFERKIT_TEST_PAUSE_AT", "TRANSFERKIT_TEST_PAUSE_FILE"):
        env.pop(key, None)
    if pause is not None:
        env.update(TRANSFERKIT_TEST_PAUSE_AT=pause, TRANSFERKIT_TEST_PAUSE_FILE=str(marker))
    return env


def _train(kind: str, args: list, cache: Path) -> tuple[dict, str]:
    """Runs `transferkit train KIND ... --json` to the end: (its result, its stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "train", kind, *map(str, args), "--json"],
        capture_output=True, text=True, env=_env(cache), timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _kill_at(kind: str, args: list, cache: Path, pause: str, marker: Path,
             while_paused=None) -> None:
    """Starts `transferkit train KIND ...`, waits until it pauses at `pause` (then calls
    `while_paused(pid)` if given), and SIGKILLs it."""
    with open(marker.with_suffix(".stderr"), "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "transferkit.cli", "train", kind, *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=stderr, env=_env(cache, pause, marker),
        )
        deadline = time.monotonic() + 600
        while not marker.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                raise AssertionError(f"never reached {pause}: "
                                     f"{marker.with_suffix('.stderr').read_text()[-3000:]}")
            time.sleep(0.05)
        try:
            if while_paused is not None:
                while_paused(child.pid)
        finally:
            child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL


def _files(run: Path) -> dict:
    # TensorBoard's writer thread may flush logs/ of the paused run; the rest must not change
    return {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and "logs" not in
            p.relative_to(run).parts}


def _second_run_refused(kind: str, args: list, run: Path, cache: Path):
    """A check for while the first run is paused: a second real `train` on the same folder
    exits 1 with the in-use line naming the first, and changes nothing."""

    def check(pid: int) -> None:
        before = _files(run)
        second = subprocess.run(
            [sys.executable, "-m", "transferkit.cli", "train", kind, *map(str, args)],
            capture_output=True, text=True, env=_env(cache), timeout=600,
        )
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith(f"transferkit: error: {run} is in use by process {pid} (started ")
        assert line.endswith("; wait for it to finish, or pass another --output.")
        assert _files(run) == before

    return check


def _model_after_kill(run: Path) -> str:
    """'absent', or 'loads' when model.keras is there and loads (a partial file fails here)."""
    if not (run / "model.keras").exists():
        return "absent"
    from transferkit.training.io import load_model

    load_model(run / "model.keras")
    return "loads"


def _accuracy(result: dict) -> float:
    return result[f"{result['report_split']}_accuracy"]


def _cold_cache(warm: Path, tmp_path: Path) -> Path:
    """A cache without features (converted weights copied: that is not what is tested)."""
    cold = tmp_path / "cold-cache"
    if (warm / "weights").is_dir():
        shutil.copytree(warm / "weights", cold / "weights")
    return cold


def _check_features(cache: Path) -> None:
    files = [p for p in (cache / "features").rglob("*.npy") if ".tmp-" not in p.name]
    assert files
    for path in files:
        np.load(path, allow_pickle=False)


@pytest.fixture(scope="module", autouse=True)
def _timing():
    """Prints the module's wall time and its child processes' CPU time (for the budget)."""
    import resource

    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    yield
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nkilled runs: {time.perf_counter() - started:.0f} s wall, "
          f"{after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime:.0f} s CPU in "
          "the training processes")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """`([the data], the warm cache, the uninterrupted reference run's (result, folder))`: 40
    faces."""
    cache = Path(os.environ["TRANSFERKIT_CACHE_DIR"])  # the worker's: weights converted once

    def reference(root: Path) -> dict:
        data = write_faces(root / "faces", per_class=20)
        return _train("images", [data, *IMAGE_OPTIONS, "--output", root / "reference"], cache)[0]

    result, root = once_across_workers(tmp_path_factory, "killed-images", reference)
    return [root / "faces"], cache, (result, root / "reference")


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """As `images`, with 60 toy reviews (30 a class, a cue word each) and the tiny BERT that
    encodes them (`--encoder FOLDER`), made once for all workers with the reference run."""
    cache = Path(os.environ["TRANSFERKIT_CACHE_DIR"])

    def reference(root: Path) -> dict:
        root.mkdir(parents=True, exist_ok=True)
        data = write_table(root / "reviews.csv", n=60, bad_rows=False)
        bert = tiny_bert_folder(root / "bert", hidden=32, intermediate=64, layer_scale=0.1)
        return _train("text", [data, "--encoder", bert, *TEXT_OPTIONS, "--output",
                               root / "reference"], cache)[0]

    result, root = once_across_workers(tmp_path_factory, "killed-text", reference)
    return [root / "reviews.csv", "--encoder", root / "bert"], cache, (result, root / "reference")


def test_an_image_run_killed_while_caching_features_resumes_to_the_same_result(images, tmp_path):
    """Features are cached only with a cold cache: this kill has a run of its own. The resumed
    run computes the rest of the features in other batches, and a backbone's float sums depend
    on the batch's size in the last bits (EfficientNet-Lite0 on the CPU: up to 7e-6 in a feature,
    1e-8 in the final weights): the same accuracy within half a point, not the same bits."""
    data, warm, (reference, reference_folder) = images
    run, cache = tmp_path / "run", _cold_cache(warm, tmp_path)
    _kill_at("images", [*data, *IMAGE_OPTIONS, "--output", run], cache,
             KILL_POINTS["feature caching"], tmp_path / "paused")
    model = _model_after_kill(run)
    assert (run / ".lock").is_file()  # SIGKILL leaves the lock behind, stale
    result, stderr = _train("images", ["--resume", run], cache)
    assert "no longer running (killed?); taking over its lock" in stderr
    assert result["classes"] == reference["classes"]
    accuracy, expected = _accuracy(result), _accuracy(reference)
    differences = _differences(run, reference_folder, "model.keras")
    print(f"\nimages killed while caching features: model.keras after the kill {model}; resumed "
          f"{result['report_split']} accuracy {accuracy:.4f} vs {expected:.4f} uninterrupted; "
          f"weights {differences or 'bit-identical'}")
    assert abs(accuracy - expected) <= TOLERANCE
    assert _model_after_kill(run) == "loads"
    assert not list(run.rglob("*.tmp-*")) and not (run / ".lock").exists()
    _check_features(cache)  # what the kill left in the cache reads


@pytest.mark.parametrize("kind", ["images", "text"])
def test_a_run_killed_at_each_point_in_turn_resumes_to_the_same_result(kind, request, tmp_path):
    """One run is killed at the points in turn (each resume killed at the next point), then
    resumed to the end: the uninterrupted run's accuracy and weights, bit for bit. Text from a
    cold cache, so its first kill is while caching features (cached as one array, computed whole
    again after a kill); images from the warm cache, from the second point on (a kill while
    caching them has its own test: they are computed again in other batches). While the image
    run is paused in its second head epoch, a second run on its folder is refused."""
    data, warm, (reference, reference_folder) = request.getfixturevalue(
        "images" if kind == "images" else "texts")
    options = IMAGE_OPTIONS if kind == "images" else TEXT_OPTIONS
    points = dict(list(KILL_POINTS.items())[1:]) if kind == "images" else KILL_POINTS
    run = tmp_path / "run"
    cache = warm if kind == "images" else _cold_cache(warm, tmp_path)
    first = [*data, *options, "--output", run]
    args, models = first, {}
    for n, (point, pause) in enumerate(points.items()):
        check = (_second_run_refused(kind, first, run, cache)
                 if kind == "images" and point == "head epoch 2" else None)
        _kill_at(kind, args, cache, pause, tmp_path / f"paused-{n}", while_paused=check)
        models[point] = _model_after_kill(run)
        assert (run / ".lock").is_file()  # SIGKILL leaves the lock behind, stale
        args = ["--resume", run]
    result, stderr = _train(kind, args, cache)
    assert "no longer running (killed?); taking over its lock" in stderr
    assert result["classes"] == reference["classes"]
    accuracy, expected = _accuracy(result), _accuracy(reference)
    print(f"\n{kind} killed at {', '.join(points)} in turn: model.keras after each kill "
          f"{', '.join(models.values())}; resumed {result['report_split']} accuracy "
          f"{accuracy:.4f} vs {expected:.4f} uninterrupted, validation "
          f"{result['validation_accuracy']:.4f} vs {reference['validation_accuracy']:.4f}")
    assert abs(accuracy - expected) <= TOLERANCE
    assert abs(result["validation_accuracy"] - reference["validation_accuracy"]) <= TOLERANCE
    assert not _differences(run, reference_folder, "model.keras")
    _check_features(cache)
    assert _model_after_kill(run) == "loads"
    assert not list(run.rglob("*.tmp-*")) and not (run / ".lock").exists()


# -- bit-identical weights ----------------------------------------------------------------------

# One run of each kind killed in the head phase (epochs 1-2 saved, 3 under way), resumed and
# killed again in fine-tuning (epoch 1 saved, 2 under way), then resumed to the end, must end
# with the uninterrupted run's weights, bit for bit: each epoch's batch order and random draws
# come from (seed, epoch) (`transferkit.data.epoch_order`, `transferkit.training.epoch_seeds`).
IDENTICAL_KILLS = ("epoch:head:3", "epoch:fine_tune:2")
PHASES = ["--epochs", "3", "--patience", "50", "--fine-tune-epochs", "2",
          "--fine-tune-patience", "50", "--no-calibrate"]


def _identical_case(kind: str, request, root: Path) -> tuple[str, list]:
    """`(train kind, data and options)` of each case: with augmentation and dropout, so that the
    random layers matter; tiny data (each process costs more than its training)."""
    if kind == "images":
        data = request.getfixturevalue("faces")
        return "images", [data, "--backbone", TINY_BACKBONE, "--image-size", "64", "--unfreeze",
                          "5", "--augment", "flip,zoom", "--augment-views", "1", *PHASES]
    data = write_table(root / "reviews.csv", n=60, bad_rows=False)
    if kind == "glove-bilstm":
        return "text", [data, "--word-vectors", request.getfixturevalue("vectors_file"), *PHASES]
    return "text", [data, "--encoder", request.getfixturevalue("bert_folder"), "--max-length",
                    "16", *PHASES]


def _differences(run: Path, reference: Path, name: str) -> str:
    """`""` when every array of `name` in `run` equals the reference's bit for bit; else what
    differs and by how much."""
    mine, theirs = weight_arrays(run / name), weight_arrays(reference / name)
    assert mine.keys() == theirs.keys() and mine, name
    different = [key for key in mine if not np.array_equal(mine[key], theirs[key])]
    if not different:
        return ""
    largest = max(float(np.max(np.abs(mine[k].astype(np.float64) - theirs[k]))) for k in different)
    return (f"{len(different)} of {len(mine)} arrays differ (largest difference "
            f"{largest:.3g}), e.g. {different[:3]}")


@pytest.mark.parametrize("kind", ["images", "glove-bilstm", "transformer"])
def test_a_run_killed_in_each_phase_resumes_to_bit_identical_weights(kind, request, tmp_path):
    train_kind, args = _identical_case(kind, request, tmp_path)
    cache = Path(os.environ["TRANSFERKIT_CACHE_DIR"])
    reference = tmp_path / "reference"
    _train(train_kind, [*args, "--output", reference], cache)
    run = tmp_path / "run"
    resume = [*args, "--output", run]
    for n, pause in enumerate(IDENTICAL_KILLS):
        _kill_at(train_kind, resume, cache, pause, tmp_path / f"paused-{n}")
        resume = ["--resume", run]
    _, stderr = _train(train_kind, resume, cache)
    assert "taking over its lock" in stderr
    history = (run / "history.csv").read_text().splitlines()
    rows = [(row["phase"], row["epoch"]) for row in csv.DictReader(history)]
    assert rows == [("head", "1"), ("head", "2"), ("head", "3"),
                    ("fine_tune", "1"), ("fine_tune", "2")]
    found = {name: _differences(run, reference, name)
             for name in ("checkpoints/head.weights.h5", "checkpoints/fine_tune.weights.h5",
                          "model.keras")}
    print(f"\n{kind}: " + "; ".join(f"{name} {why or 'bit-identical'}"
                                     for name, why in found.items()))
    assert not any(found.values()), found
