"""The shared training machinery: atomic files, run folders, fit_phase (resume!), feature cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.errors import InputError
from transferkit.training import (
    FeatureCache,
    RunDirectory,
    atomic_write,
    default_cache_root,
    default_run_dir,
    file_digest,
    fit_phase,
    load_weights,
    read_json,
    save_model_atomic,
    save_weights_atomic,
    write_json,
)
from transferkit.training.interrupts import catch_interrupts, interrupt_received, on_sigint
from transferkit.training.io import remove_partial_files

SRC = str(Path(__file__).resolve().parents[1] / "src")


# -- helpers ------------------------------------------------------------------------------------


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    return x, y


def _model(seed=0, learning_rate=0.05, metrics=("accuracy",)):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics),
    )
    return model


class _EpochLog(keras.callbacks.Callback):
    """Records which epochs ran, and the weights at the end of each."""

    def __init__(self):
        super().__init__()
        self.begun = []
        self.weights = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [w.copy() for w in self.model.get_weights()]


class _InterruptAfter(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the end of epoch `n` (1-based), as Ctrl-C would mid-run. With
    `swallowed`, the Ctrl-C comes through the CLI's handler and is then dropped, as Python drops
    one raised in a finalizer."""

    def __init__(self, n, swallowed=False):
        super().__init__()
        self.n = n
        self.swallowed = swallowed

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 != self.n:
            return
        if not self.swallowed:
            raise KeyboardInterrupt
        with contextlib.suppress(KeyboardInterrupt):
            on_sigint(signal.SIGINT, None)


def _fit(model, run, x, y, val=None, **kwargs):
    kwargs.setdefault("epochs", 4)
    kwargs.setdefault("phase", "head")
    kwargs.setdefault("tensorboard", False)
    kwargs.setdefault("verbose", 0)
    return fit_phase(
        model, x, val, y=y, run=run, batch_size=16, shuffle=False, **kwargs
    )


def _assert_weights_equal(a, b, **tolerance):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_allclose(left, right, **tolerance)


# -- io -----------------------------------------------------------------------------------------


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


def test_save_model_and_weights_atomic(tmp_path):
    model = _model()
    save_model_atomic(model, tmp_path / "model.keras")
    save_weights_atomic(model, tmp_path / "model.weights.h5")
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "model.weights.h5"]
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    _assert_weights_equal(loaded.get_weights(), model.get_weights())
    # The file holds the model's weights only, so it loads into a compiled, an uncompiled and an
    # already trained model alike.
    for other in (_model(seed=1), keras.Sequential.from_config(model.get_config())):
        load_weights(other, tmp_path / "model.weights.h5")
        _assert_weights_equal(other.get_weights(), model.get_weights())
    trained = _model(seed=2)
    trained.fit(*_data(8), verbose=0)
    load_weights(trained, tmp_path / "model.weights.h5")
    _assert_weights_equal(trained.get_weights(), model.get_weights())
    with pytest.raises(ValueError, match=r"must end in `\.keras`"):
        save_model_atomic(model, tmp_path / "model.h5")
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`"):
        save_weights_atomic(model, tmp_path / "model.h5")


def test_failed_weights_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"previous weights")
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not yet been built"):
        save_weights_atomic(unbuilt, path)
    assert os.listdir(tmp_path) == ["w.weights.h5"]
    assert path.read_bytes() == b"previous weights"


def _run_child(script: str, tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"child exited early: {process.stderr.read().decode()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_during_saves_never_leaves_a_partial_file(tmp_path):
    # The child saves a ~8 MB model over and over; the parent kills it at arbitrary moments in the
    # middle of those saves. The target must always load, and partial temporary files are hidden
    # and removable.
    child = _run_child(
        """
        import pathlib, keras
        from transferkit.training.io import save_weights_atomic, atomic_write
        model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(2000)])
        target = pathlib.Path("big.weights.h5")
        save_weights_atomic(model, target)
        pathlib.Path("ready").touch()
        i = 0
        while True:
            i += 1
            model.layers[0].kernel.assign(model.layers[0].kernel + 1.0)
            save_weights_atomic(model, target)
            with atomic_write("counter.txt", "w") as handle:
                handle.write("%d " % i * 20000)
        """,
        tmp_path,
    )
    _wait_for(tmp_path / "ready", child)
    time.sleep(1.0)  # several saves in flight
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(2000)])
    model.load_weights(tmp_path / "big.weights.h5")  # complete, whatever the moment of the kill
    kernel = model.layers[0].kernel.numpy()
    assert np.ptp(kernel - kernel[0, 0]) < 1.5  # one consistent save, not a mix of two
    if (tmp_path / "counter.txt").exists():
        words = (tmp_path / "counter.txt").read_text().split()
        assert len(words) == 20000 and len(set(words)) == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert all(".tmp-" in name for name in leftovers)
    assert remove_partial_files(tmp_path) == len(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) in (
        ["big.weights.h5", "ready"],
        ["big.weights.h5", "counter.txt", "ready"],
    )


# -- run folder ---------------------------------------------------------------------------------


def test_run_directory_layout_config_and_state(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert run.path.is_dir()
    assert run.report_dir == run.path / "report"
    assert run.checkpoint_dir == run.path / "checkpoints"
    assert run.log_dir == run.path / "logs"
    assert run.model_path == run.path / "model.keras"
    assert run.config_path == run.path / "config.json"
    assert run.state_path == run.path / "state.json"
    assert run.state() == {} and run.history_rows() == []
    run.save_config({"backbone": "x", "epochs": 3})
    assert RunDirectory(run.path).load_config() == {"backbone": "x", "epochs": 3}
    run.update_state(head={"epochs_done": 1})
    run.update_state(fine_tune={"epochs_done": 0})
    assert json.loads(run.state_path.read_text()) == {
        "head": {"epochs_done": 1},
        "fine_tune": {"epochs_done": 0},
    }


def test_load_config_of_a_folder_that_is_not_a_run(tmp_path):
    message = r"is not a transferkit run folder: it has no config\.json"
    with pytest.raises(InputError, match=message):
        RunDirectory(tmp_path).load_config()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"config\.json: not valid JSON"):
        RunDirectory(tmp_path).load_config()


def test_run_directory_on_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file, expected a run folder"):
        RunDirectory(tmp_path / "f")


def test_default_run_dir(tmp_path):
    path = default_run_dir("images", root=tmp_path)
    assert path.parent == tmp_path
    assert path.name.startswith("images-") and len(path.name) == len("images-20240501-120000")
    path.mkdir()
    assert default_run_dir("images", root=tmp_path) != path or path.name.endswith("-2")
    assert default_run_dir("text").parts[0] == "runs"


# -- fit_phase ----------------------------------------------------------------------------------


def test_fit_phase_records_history_checkpoints_and_state(tmp_path):
    x, y = _data()
    run = RunDirectory(tmp_path / "run")
    model = _model()
    rows = _fit(model, run, x, y, val=(x, y), epochs=3, tensorboard=True)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and {r["phase"] for r in rows} == {"head"}
    header = run.history_path.read_text().splitlines()[0]
    assert header == "phase,epoch,loss,accuracy,val_loss,val_accuracy"
    assert rows == run.history_rows()
    state = run.state()["head"]
    assert state["finished"] is True and state["epochs_done"] == 3
    assert state["best"]["monitor"] == "val_loss"
    assert state["best"]["value"] == min(r["val_loss"] for r in rows)
    other = _model(seed=5)
    load_weights(other, run.checkpoint_dir / "head.weights.h5")
    _assert_weights_equal(other.get_weights(), model.get_weights())
    # Only the final weights stay: the optimizer and best-epoch files were for resuming.
    assert os.listdir(run.checkpoint_dir) == ["head.weights.h5"]
    assert list((run.log_dir / "head").rglob("events.out.tfevents.*"))


def test_resume_after_ctrl_c_trains_only_the_remaining_epochs(tmp_path):
    x, y = _data()
    # Reference: 4 epochs in one go.
    reference = _model()
    _fit(reference, RunDirectory(tmp_path / "reference"), x, y, val=(x, y), epochs=4)

    run = RunDirectory(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), run, x, y, val=(x, y), extra_callbacks=[_InterruptAfter(2)])
    assert run.state()["head"]["epochs_done"] == 2
    assert run.state()["head"]["finished"] is False
    assert [r["epoch"] for r in run.history_rows()] == [1, 2]

    log = _EpochLog()
    model = _model(seed=123)  # a fresh model: every weight must come from the checkpoint
    rows = _fit(model, run, x, y, val=(x, y), extra_callbacks=[log])
    assert log.begun == [2, 3]  # 0-based: epochs 3 and 4 only
    assert [(r["phase"], r["epoch"]) for r in run.history_rows()] == [
        ("head", 1), ("head", 2), ("head", 3), ("head", 4)
    ]
    assert rows == run.history_rows()
    # Weights, Adam moments and step count restored: same result as the uninterrupted run.
    assert int(model.optimizer.iterations.numpy()) == 4 * 4
    _assert_weights_equal(model.get_weights(), reference.get_weights(), rtol=1e-5, atol=1e-6)


def test_a_swallowed_ctrl_c_still_stops_the_run(tmp_path):
    x, y = _data()
    run = RunDirectory(tmp_path / "run")
    with catch_interrupts(), pytest.raises(KeyboardInterrupt):
        _fit(_model(), run, x, y, val=(x, y), extra_callbacks=[_InterruptAfter(2, swallowed=True)])
    assert run.state()["head"]["epochs_done"] == 2  # the epoch it came in was still saved
    assert run.state()["head"]["finished"] is False
    assert not interrupt_received()  # forgotten once the command is over
    # Outside the CLI's block nothing is remembered, so an in-process fit is not stopped.
    assert len(_fit(_model(), RunDirectory(tmp_path / "free"), x, y, epochs=2)) == 2


def test_resume_trusts_the_weights_file_when_the_state_write_was_lost(tmp_path):
    # Killed after the epoch-2 weights were committed but before state.json said so: the weights
    # file carries its epoch count, so the rerun neither repeats epoch 2 nor duplicates its row.
    x, y = _data()
    run = RunDirectory(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), run, x, y, val=(x, y), extra_callbacks=[_InterruptAfter(2)])
    state = run.state()
    state["head"]["epochs_done"] = 1
    run.update_state(**state)
    log = _EpochLog()
    _fit(_model(), run, x, y, val=(x, y), extra_callbacks=[log])
    assert log.begun == [2, 3]
    assert [r["epoch"] for r in run.history_rows()] == [1, 2, 3, 4]


def test_a_finished_phase_is_loaded_not_trained_again(tmp_path):
    x, y = _data()
    run = RunDirectory(tmp_path / "run")
    trained = _model()
    first_rows = _fit(trained, run, x, y, val=(x, y), epochs=2)
    log = _EpochLog()
    model = _model(seed=9)
    rows = _fit(model, run, x, y, val=(x, y), epochs=2, extra_callbacks=[log])
    assert log.begun == []
    assert rows == first_rows
    _assert_weights_equal(model.get_weights(), trained.get_weights())


def _diverging_data():
    # Validation labels are the opposite of the training labels: validation loss is best early
    # and gets worse as the model learns the training set.
    x, y = _data()
    return x, y, (x, 1 - y)


def test_early_stopping_leaves_the_best_weights_in_the_model_and_the_file(tmp_path):
    x, y, val = _diverging_data()
    run = RunDirectory(tmp_path / "run")
    log = _EpochLog()
    model = _model(learning_rate=0.1)
    rows = _fit(model, run, x, y, val=val, epochs=20, patience=2, extra_callbacks=[log])
    state = run.state()["head"]
    assert state["stopped_early"] is True and len(rows) < 20
    best = state["best"]["epoch"]
    assert best == min(rows, key=lambda r: r["val_loss"])["epoch"]
    assert len(rows) == best + 2  # patience 2
    _assert_weights_equal(model.get_weights(), log.weights[best - 1])
    saved = _model(seed=3)
    load_weights(saved, run.checkpoint_dir / "head.weights.h5")
    _assert_weights_equal(saved.get_weights(), log.weights[best - 1])


@pytest.fixture(scope="module")
def early_stopped_reference(tmp_path_factory):
    """An uninterrupted run that stops early: (model, run, rows)."""
    x, y, val = _diverging_data()
    model = _model(learning_rate=0.1)
    run = RunDirectory(tmp_path_factory.mktemp("reference"))
    rows = _fit(model, run, x, y, val=val, epochs=20, patience=2)
    assert 3 <= len(rows) < 20
    return model, run, rows


@pytest.mark.parametrize("before_stop", [1, 0], ids=["killed-before-stop", "killed-at-stop"])
def test_resume_keeps_early_stopping_state(tmp_path, early_stopped_reference, before_stop):
    reference, reference_run, reference_rows = early_stopped_reference
    x, y, val = _diverging_data()
    stop = len(reference_rows)
    run = RunDirectory(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(learning_rate=0.1), run, x, y, val=val, epochs=20, patience=2,
             extra_callbacks=[_InterruptAfter(stop - before_stop)])
    log = _EpochLog()
    model = _model(seed=77, learning_rate=0.1)
    rows = _fit(model, run, x, y, val=val, epochs=20, patience=2, extra_callbacks=[log])
    # The resumed run stops where the uninterrupted one did, with its best weights.
    assert log.begun == list(range(stop - before_stop, stop))
    assert [r["epoch"] for r in rows] == list(range(1, stop + 1))
    best, reference_best = run.state()["head"]["best"], reference_run.state()["head"]["best"]
    assert best["epoch"] == reference_best["epoch"] == stop - 2
    assert best["value"] == pytest.approx(reference_best["value"], rel=1e-5)
    assert run.state()["head"]["stopped_early"] is True
    _assert_weights_equal(model.get_weights(), reference.get_weights(), rtol=1e-5, atol=1e-6)
    assert os.listdir(run.checkpoint_dir) == ["head.weights.h5"]


def test_two_phases_share_one_history_with_a_union_header(tmp_path):
    x, y = _data()
    run = RunDirectory(tmp_path / "run")
    model = _model()
    _fit(model, run, x, y, val=(x, y), epochs=2, phase="head")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top1")],
    )
    rows = _fit(model, run, x, y, val=(x, y), epochs=3, phase="fine_tune")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    all_rows = run.history_rows()
    assert [(r["phase"], r["epoch"]) for r in all_rows] == [
        ("head", 1), ("head", 2), ("fine_tune", 1), ("fine_tune", 2), ("fine_tune", 3)
    ]
    header = run.history_path.read_text().splitlines()[0].split(",")
    assert header == ["phase", "epoch", "loss", "accuracy", "top1", "val_loss", "val_accuracy",
                      "val_top1"]
    assert all_rows[0]["top1"] is None and all_rows[-1]["top1"] is not None
    assert set(run.state()) == {"head", "fine_tune"}


def test_without_validation_data_the_training_metric_is_monitored(tmp_path):
    x, y = _data()
    run = RunDirectory(tmp_path / "run")
    rows = _fit(_model(), run, x, y, epochs=2)
    assert len(rows) == 2 and "val_loss" not in rows[0]
    assert run.state()["head"]["best"]["monitor"] == "loss"


def test_a_monitor_the_model_does_not_log_is_a_clear_error(tmp_path):
    x, y = _data()
    with pytest.raises(InputError, match=r"monitor='val_auc'.*available: accuracy, loss, "):
        _fit(_model(), RunDirectory(tmp_path), x, y, val=(x, y), monitor="val_auc", epochs=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": -1}, r"`epochs` must be an int >= 0\. Received: epochs=-1"),
        ({"epochs": 2.0}, r"`epochs` must be an int >= 0"),
        ({"phase": "a/b"}, r"`phase` must be a non-empty name without slashes"),
        ({"initial_epoch": 1}, r"`initial_epoch` is set by fit_phase"),
    ],
)
def test_fit_phase_argument_errors(tmp_path, kwargs, message):
    x, y = _data()
    with pytest.raises(InputError, match=message):
        _fit(_model(), RunDirectory(tmp_path), x, y, **kwargs)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_resume_after_sigkill(tmp_path):
    # A real kill: the child trains and hangs after epoch 2; the parent SIGKILLs it and resumes.
    x, y = _data()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    child = _run_child(
        """
        import pathlib, time, keras, numpy as np
        from transferkit.training import RunDirectory, fit_phase
        data = np.load("data.npz")
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.Adam(0.05), metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        class Hang(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    pathlib.Path("killme").touch()
                    time.sleep(600)
        fit_phase(model, data["x"], (data["x"], data["y"]), y=data["y"], epochs=4,
                  run=RunDirectory("run"), phase="head", verbose=0, tensorboard=False,
                  batch_size=16, shuffle=False, extra_callbacks=[Hang()])
        """,
        tmp_path,
    )
    _wait_for(tmp_path / "killme", child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    run = RunDirectory(tmp_path / "run")
    assert run.state()["head"]["epochs_done"] == 2
    log = _EpochLog()
    model = _model()
    _fit(model, run, x, y, val=(x, y), extra_callbacks=[log])
    assert log.begun == [2, 3]
    assert [r["epoch"] for r in run.history_rows()] == [1, 2, 3, 4]
    reference = _model()
    _fit(reference, RunDirectory(tmp_path / "reference"), x, y, val=(x, y))
    _assert_weights_equal(model.get_weights(), reference.get_weights(), rtol=1e-5, atol=1e-6)


# -- feature cache ------------------------------------------------------------------------------


def test_feature_cache_keys():
    key = FeatureCache.key(backbone="b", size=224, files=["a", "b"])
    assert key == FeatureCache.key(files=["a", "b"], size=224, backbone="b")
    assert key != FeatureCache.key(backbone="b", size=225, files=["a", "b"])
    assert key != FeatureCache.key(backbone="b", size=224, files=["b", "a"])
    assert len(key) == 64 and int(key, 16) >= 0
    assert FeatureCache.key(a=np.arange(3)) != FeatureCache.key(a=np.arange(4))
    assert FeatureCache.key(p=Path("x")) == FeatureCache.key(p="x")
    with pytest.raises(InputError, match="key parts must be JSON data"):
        FeatureCache.key(a=object())
    with pytest.raises(InputError, match="needs at least one part"):
        FeatureCache.key()


def test_feature_cache_put_get(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    key = cache.key(name="x")
    assert cache.get(key) is None and key not in cache
    features = np.arange(12, dtype="float32").reshape(3, 4)
    path = cache.put(key, features)
    assert path == cache.path(key) == tmp_path / "cache" / f"{key}.npy"
    assert key in cache
    np.testing.assert_array_equal(cache.get(key), features)
    assert cache.get(key).dtype == np.float32
    with pytest.raises(InputError, match="numeric arrays only"):
        cache.put(key, np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="A cache key must be letters"):
        cache.path("../escape")


def test_a_truncated_cache_file_is_a_miss_and_is_replaced(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key(name="x")
    features = np.random.default_rng(0).normal(size=(50, 8)).astype("float32")
    path = cache.put(key, features)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert key not in cache  # checked from the header and the file size
    assert cache.get(key) is None
    assert not path.exists()
    cache.put(key, features)
    np.testing.assert_array_equal(cache.get(key), features)
    path.write_bytes(b"garbage")
    assert key not in cache


def test_default_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFERKIT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    monkeypatch.delenv("TRANSFERKIT_CACHE_DIR")
    root = default_cache_root()
    assert root.name == "features" and "transferkit" in root.parts


def test_file_digest(tmp_path):
    path = tmp_path / "f.bin"
    content = os.urandom(3 * (1 << 20) + 5)  # more than one chunk
    path.write_bytes(content)
    assert file_digest(path) == hashlib.sha256(content).hexdigest()
    with pytest.raises(InputError, match="no such file"):
        file_digest(tmp_path / "missing")
