"""`fit_phase`: history, checkpoints and state every epoch, and resuming after Ctrl-C or SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal

import keras
import numpy as np
import pytest

from helpers import assert_weights_equal, run_child, tiny_data, tiny_model, wait_for
from transferkit.errors import InputError
from transferkit.run_folder import RunFolder
from transferkit.training.callbacks import fit_phase
from transferkit.training.interrupts import catch_interrupts, interrupt_received, on_sigint
from transferkit.training.io import load_weights

# -- helpers ------------------------------------------------------------------------------------


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
    kwargs.setdefault("patience", 5)
    return fit_phase(
        model, x, val, y=y, run=run, batch_size=16, shuffle=False, **kwargs
    )






















# -- fit_phase ----------------------------------------------------------------------------------


def test_fit_phase_records_history_checkpoints_and_state(tmp_path):
    x, y = tiny_data()
    run = RunFolder(tmp_path / "run").create()
    model = tiny_model()
    rows = _fit(model, run, x, y, val=(x, y), epochs=3, tensorboard=True)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and {r["phase"] for r in rows} == {"head"}
    header = run.history_path.read_text().splitlines()[0]
    assert header == "phase,epoch,loss,accuracy,val_loss,val_accuracy"
    assert rows == run.history_rows()
    state = run.state()["head"]
    assert state["finished"] is True and state["epochs_done"] == 3
    assert state["best"]["monitor"] == "val_loss"
    assert state["best"]["value"] == min(r["val_loss"] for r in rows)
    other = tiny_model(seed=5)
    load_weights(other, run.checkpoint_dir / "head.weights.h5")
    assert_weights_equal(other.get_weights(), model.get_weights())
    # Only the final weights stay: the optimizer and best-epoch files were for resuming.
    assert os.listdir(run.checkpoint_dir) == ["head.weights.h5"]
    assert list((run.log_dir / "head").rglob("events.out.tfevents.*"))


def _dropout_model(seed=0):
    """A compiled model for `tiny_data` with two `Dropout` layers, seeded apart from `seed`."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.3, seed=1),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.3, seed=2), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit_shuffled(model, run, x, y, **kwargs):
    """`fit_phase` on batches of 16 in a new order each epoch (`transferkit.data.epoch_order`)."""
    from transferkit.data.epoch_order import EpochOrder

    order = EpochOrder(len(x), seed=0)
    data = order.attach(order.slices((x, y)).batch(16))
    return fit_phase(model, data, (x, y), epochs=4, run=run, phase="head", patience=5,
                     verbose=0, tensorboard=False, shuffle=False, **kwargs)


def test_resume_after_ctrl_c_trains_only_the_remaining_epochs_to_the_same_weights(tmp_path):
    x, y = tiny_data()
    # Reference: 4 epochs in one go.
    reference = _dropout_model()
    _fit_shuffled(reference, RunFolder(tmp_path / "reference").create(), x, y)

    run = RunFolder(tmp_path / "run").create()
    with pytest.raises(KeyboardInterrupt):
        _fit_shuffled(_dropout_model(), run, x, y, extra_callbacks=[_InterruptAfter(2)])
    assert run.state()["head"]["epochs_done"] == 2
    assert run.state()["head"]["finished"] is False
    assert [r["epoch"] for r in run.history_rows()] == [1, 2]

    log = _EpochLog()
    model = _dropout_model(seed=123)  # a fresh model: every weight must come from the checkpoint
    rows = _fit_shuffled(model, run, x, y, extra_callbacks=[log])
    assert log.begun == [2, 3]  # 0-based: epochs 3 and 4 only
    assert [(r["phase"], r["epoch"]) for r in run.history_rows()] == [
        ("head", 1), ("head", 2), ("head", 3), ("head", 4)
    ]
    assert rows == run.history_rows()
    # Weights, Adam moments and step count restored, and epochs 3 and 4 take their own batch
    # order and dropout masks (`transferkit.training.epoch_seeds`): the uninterrupted run's
    # weights, bit for bit.
    assert int(model.optimizer.iterations.numpy()) == 4 * 4
    for mine, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
        assert np.array_equal(mine, theirs)


def test_a_swallowed_ctrl_c_still_stops_the_run(tmp_path):
    x, y = tiny_data()
    run = RunFolder(tmp_path / "run").create()
    with catch_interrupts(), pytest.raises(KeyboardInterrupt):
        _fit(tiny_model(), run, x, y, val=(x, y), extra_callbacks=[_InterruptAfter(2, swallowed=True)])
    assert run.state()["head"]["epochs_done"] == 2  # the epoch it came in was still saved
    assert run.state()["head"]["finished"] is False
    assert not interrupt_received()  # forgotten once the command is over
    # Outside the CLI's block nothing is remembered, so an in-process fit is not stopped.
    assert len(_fit(tiny_model(), RunFolder(tmp_path / "free").create(), x, y, epochs=2)) == 2


def test_resume_trusts_the_weights_file_when_the_state_write_was_lost(tmp_path):
    # Killed after the epoch-2 weights were committed but before state.json said so: the weights
    # file carries its epoch count, so the rerun neither repeats epoch 2 nor duplicates its row.
    x, y = tiny_data()
    run = RunFolder(tmp_path / "run").create()
    with pytest.raises(KeyboardInterrupt):
        _fit(tiny_model(), run, x, y, val=(x, y), extra_callbacks=[_InterruptAfter(2)])
    state = run.state()
    state["head"]["epochs_done"] = 1
    run.update_state(**state)
    log = _EpochLog()
    _fit(tiny_model(), run, x, y, val=(x, y), extra_callbacks=[log])
    assert log.begun == [2, 3]
    assert [r["epoch"] for r in run.history_rows()] == [1, 2, 3, 4]


def test_a_finished_phase_is_loaded_not_trained_again(tmp_path):
    x, y = tiny_data()
    run = RunFolder(tmp_path / "run").create()
    trained = tiny_model()
    first_rows = _fit(trained, run, x, y, val=(x, y), epochs=2)
    log = _EpochLog()
    model = tiny_model(seed=9)
    rows = _fit(model, run, x, y, val=(x, y), epochs=2, extra_callbacks=[log])
    assert log.begun == []
    assert rows == first_rows
    assert_weights_equal(model.get_weights(), trained.get_weights())


def _diverging_data():
    # Validation labels are the opposite of the training labels: validation loss is best early
    # and gets worse as the model learns the training set.
    x, y = tiny_data()
    return x, y, (x, 1 - y)


def test_early_stopping_leaves_the_best_weights_in_the_model_and_the_file(tmp_path):
    x, y, val = _diverging_data()
    run = RunFolder(tmp_path / "run").create()
    log = _EpochLog()
    model = tiny_model(learning_rate=0.1)
    rows = _fit(model, run, x, y, val=val, epochs=20, patience=2, extra_callbacks=[log])
    state = run.state()["head"]
    assert state["stopped_early"] is True and len(rows) < 20
    best = state["best"]["epoch"]
    assert best == min(rows, key=lambda r: r["val_loss"])["epoch"]
    assert len(rows) == best + 2  # patience 2
    assert_weights_equal(model.get_weights(), log.weights[best - 1])
    saved = tiny_model(seed=3)
    load_weights(saved, run.checkpoint_dir / "head.weights.h5")
    assert_weights_equal(saved.get_weights(), log.weights[best - 1])


@pytest.fixture(scope="module")
def early_stopped_reference(tmp_path_factory):
    """An uninterrupted run that stops early: (model, run, rows)."""
    x, y, val = _diverging_data()
    model = tiny_model(learning_rate=0.1)
    run = RunFolder(tmp_path_factory.mktemp("reference")).create()
    rows = _fit(model, run, x, y, val=val, epochs=20, patience=2)
    assert 3 <= len(rows) < 20
    return model, run, rows


@pytest.mark.parametrize("before_stop", [1, 0], ids=["killed-before-stop", "killed-at-stop"])
def test_resume_keeps_early_stopping_state(tmp_path, early_stopped_reference, before_stop):
    reference, reference_run, reference_rows = early_stopped_reference
    x, y, val = _diverging_data()
    stop = len(reference_rows)
    run = RunFolder(tmp_path / "run").create()
    with pytest.raises(KeyboardInterrupt):
        _fit(tiny_model(learning_rate=0.1), run, x, y, val=val, epochs=20, patience=2,
             extra_callbacks=[_InterruptAfter(stop - before_stop)])
    log = _EpochLog()
    model = tiny_model(seed=77, learning_rate=0.1)
    rows = _fit(model, run, x, y, val=val, epochs=20, patience=2, extra_callbacks=[log])
    # The resumed run stops where the uninterrupted one did, with its best weights.
    assert log.begun == list(range(stop - before_stop, stop))
    assert [r["epoch"] for r in rows] == list(range(1, stop + 1))
    best, reference_best = run.state()["head"]["best"], reference_run.state()["head"]["best"]
    assert best["epoch"] == reference_best["epoch"] == stop - 2
    assert best["value"] == pytest.approx(reference_best["value"], rel=1e-5)
    assert run.state()["head"]["stopped_early"] is True
    assert_weights_equal(model.get_weights(), reference.get_weights(), rtol=1e-5, atol=1e-6)
    assert os.listdir(run.checkpoint_dir) == ["head.weights.h5"]


def test_two_phases_share_one_history_with_a_union_header(tmp_path):
    x, y = tiny_data()
    run = RunFolder(tmp_path / "run").create()
    model = tiny_model()
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
    x, y = tiny_data()
    run = RunFolder(tmp_path / "run").create()
    rows = _fit(tiny_model(), run, x, y, epochs=2)
    assert len(rows) == 2 and "val_loss" not in rows[0]
    assert run.state()["head"]["best"]["monitor"] == "loss"


def test_a_monitor_the_model_does_not_log_is_a_clear_error(tmp_path):
    x, y = tiny_data()
    with pytest.raises(InputError, match=r"monitor='val_auc'.*available: accuracy, loss, "):
        _fit(tiny_model(), RunFolder(tmp_path).create(), x, y, val=(x, y), monitor="val_auc", epochs=1)


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
    x, y = tiny_data()
    with pytest.raises(InputError, match=message):
        _fit(tiny_model(), RunFolder(tmp_path).create(), x, y, **kwargs)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_resume_after_sigkill(tmp_path):
    # A real kill: the child trains and hangs after epoch 2; the parent SIGKILLs it and resumes.
    x, y = tiny_data()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    child = run_child(
        """
        import pathlib, time, keras, numpy as np
        from transferkit.training.callbacks import fit_phase
        from transferkit.run_folder import RunFolder
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
                  run=RunFolder("run").create(), phase="head", patience=5, verbose=0, tensorboard=False,
                  batch_size=16, shuffle=False, extra_callbacks=[Hang()])
        """,
        tmp_path,
    )
    wait_for(tmp_path / "killme", child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    run = RunFolder(tmp_path / "run").create()
    assert run.state()["head"]["epochs_done"] == 2
    log = _EpochLog()
    model = tiny_model()
    _fit(model, run, x, y, val=(x, y), extra_callbacks=[log])
    assert log.begun == [2, 3]
    assert [r["epoch"] for r in run.history_rows()] == [1, 2, 3, 4]
    reference = tiny_model()
    _fit(reference, RunFolder(tmp_path / "reference").create(), x, y, val=(x, y))
    assert_weights_equal(model.get_weights(), reference.get_weights(), rtol=1e-5, atol=1e-6)












