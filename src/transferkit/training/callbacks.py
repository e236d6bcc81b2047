"""`fit_phase`: the one place that calls `model.fit`, for every phase of every pipeline.

A pipeline trains in phases (`"head"` on a frozen backbone, then `"fine_tune"`); each phase is one
`fit_phase` call. Around `model.fit` it adds:

* early stopping on `monitor` that keeps the best epoch's weights (`restore_best_weights`);
* TensorBoard logs in `run.log_dir / phase`;
* one row per finished epoch in `run.path / "history.csv"` (`phase`, `epoch`, then the metrics);
* a checkpoint after every finished epoch, written atomically: the model's weights in
  `checkpoints/<phase>.weights.h5`, the optimizer's variables in `<phase>.optimizer-<epoch>.npz`,
  the best epoch's weights in `<phase>.best-<epoch>.weights.h5`, and `run.state()[phase]`. Once the
  phase finishes only `<phase>.weights.h5` stays: the final weights (the best epoch's by default).

Rerunning the same pipeline on the same run folder resumes: a phase that finished is loaded and
skipped (its recorded rows returned); a phase interrupted after `k` finished epochs (Ctrl-C,
SIGKILL, power cut) continues from epoch `k + 1` with the weights, optimizer moments and
early-stopping bookkeeping it had then, so an interruption costs at most the epoch in progress.

To resume, rerun with a model of the same architecture, compiled the same way (same optimizer,
same trainable weights), on the same `run` and `phase`. A finished phase stays finished even if
`epochs` changed; train longer in a new run folder.

A resumed run ends with the uninterrupted run's weights, bit for bit: before each epoch
`transferkit.training.epoch_seeds.EpochSeeds` gives the training data its epoch (`set_epoch`, when
it has one: transferkit's shuffled inputs draw epoch `e`'s order from `(seed, e)`, see
`transferkit.data.epoch_order`) and sets the random layers' seed generators to `(phase, epoch)`.
Data shuffled some other way (Keras's `shuffle=True` on arrays) resumes in another order.

The weights file is the commit point of an epoch: it carries the number of epochs it holds and
the best epoch so far (HDF5 attributes), and the optimizer and best-weights files it goes with are
named by epoch. So a process killed between any two writes resumes consistently, with no epoch
lost or repeated, even if `state.json` is one epoch behind. A checkpoint that is not one (a file
copied in from elsewhere, or from another model) stops the resume with an `InputError` naming the
file, rather than a traceback from h5py or Keras.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transferkit.errors import InputError
from transferkit.files import atomic_write, pause_point, remove_partial_files
from transferkit.run_folder import RunFolder, read_history_csv
from transferkit.training.epoch_seeds import EpochSeeds
from transferkit.training.interrupts import interrupt_received
from transferkit.training.io import load_weights, save_weights_atomic

__all__ = ["fit_phase", "HISTORY_KEYS"]

# The first columns of history.csv; the metrics follow, training ones before validation ones.
HISTORY_KEYS = ("phase", "epoch")

_EPOCHS_ATTR = "transferkit_epochs_done"
_BEST_EPOCH_ATTR = "transferkit_best_epoch"
_BEST_VALUE_ATTR = "transferkit_best_value"
_FINISHED_ATTR = "transferkit_finished"
_STOPPED_ATTR = "transferkit_stopped_early"


# -- checkpoint files ---------------------------------------------------------------------------


def _weights_path(run: RunFolder, phase: str) -> Path:
    return Path(run.checkpoint_dir) / f"{phase}.weights.h5"


# The optimizer state and the best weights go with the weights file of one epoch, so they are
# named by that epoch: the weights file (the commit point) always finds its own. Files of other
# epochs are deleted once the next epoch is committed.
_EPOCH_FILES = {
    "optimizer": ("optimizer-", ".npz"),
    "best": ("best-", ".weights.h5"),
}


def _epoch_file(run: RunFolder, phase: str, kind: str, epoch: int) -> Path:
    infix, suffix = _EPOCH_FILES[kind]
    return Path(run.checkpoint_dir) / f"{phase}.{infix}{epoch:04d}{suffix}"


def _delete_epoch_files(run: RunFolder, phase: str, kind: str, keep: Path | None = None) -> None:
    infix, suffix = _EPOCH_FILES[kind]
    folder = Path(run.checkpoint_dir)
    if not folder.is_dir():
        return
    for path in folder.glob(f"{glob.escape(phase)}.{infix}[0-9][0-9][0-9][0-9]{suffix}"):
        if path != keep:
            with contextlib.suppress(OSError):
                path.unlink()


def _not_a_checkpoint(path: Path, phase: str, why: str) -> InputError:
    return InputError(
        f"{path}: not a checkpoint of this run ({why}). Delete it to train the {phase} phase "
        "again from its first epoch, or start a new run with another `output`."
    )


def _weights_attrs(path: Path, phase: str) -> dict | None:
    """The transferkit attributes of a weights file; None if it is missing.

    Raises:
        InputError: the file is not an HDF5 weights file (its name and the fix).
    """
    import h5py

    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as handle:
            return {key: handle.attrs[key].item() for key in handle.attrs}
    except (OSError, ValueError) as exc:  # written atomically, so not by transferkit
        raise _not_a_checkpoint(path, phase, f"{type(exc).__name__}: {exc}") from None


def _load_checkpoint(model, path: Path, phase: str) -> None:
    """`load_weights`, with an `InputError` naming the file when it does not fit the model."""
    try:
        load_weights(model, path)
    except Exception as exc:  # noqa: BLE001 (h5py and Keras raise many kinds for a foreign file)
        raise _not_a_checkpoint(path, phase, f"{type(exc).__name__}: {exc}") from None


def _save_optimizer(model, path: Path) -> None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not optimizer.built:
        return
    store: dict[str, np.ndarray] = {}
    optimizer.save_own_variables(store)
    arrays = {f"v{int(key):05d}": np.asarray(value) for key, value in store.items()}
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)


def _load_optimizer(model, path: Path) -> bool:
    """Restores the optimizer's variables from `path`; False (the optimizer starts fresh) if the
    file is missing, unreadable, or does not fit this optimizer (another optimizer or another set
    of trainable weights)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            values = [data[key] for key in sorted(data.files)]
    except (OSError, ValueError, KeyError, EOFError):
        return False
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    if len(variables) != len(values) or any(
        tuple(v.shape) != tuple(a.shape) for v, a in zip(variables, values)
    ):
        return False
    for variable, value in zip(variables, values):
        variable.assign(value)
    return True


# -- history.csv --------------------------------------------------------------------------------


def _metric_order(key: str) -> tuple:
    # loss first, then the other metrics; every validation metric after all training ones.
    is_val = key.startswith("val_")
    base = key[4:] if is_val else key
    return (is_val, base != "loss")


def _write_history(path: Path, rows: list[dict]) -> None:
    columns: list[str] = list(HISTORY_KEYS)
    metrics: list[str] = []
    for row in rows:
        for key in row:
            if key not in HISTORY_KEYS and key not in metrics:
                metrics.append(key)
    columns += sorted(metrics, key=_metric_order)  # stable: keeps first-seen order within groups
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if value is None else value) for key, value in row.items()})


def _replace_history_rows(path: Path, phase: str, keep_until: int, new_row: dict | None) -> None:
    """Keeps the rows of other phases and this phase's epochs `<= keep_until`, then adds `new_row`.

    Rewriting the whole (small) file atomically keeps one header for all phases, and a rerun never
    duplicates an epoch."""
    rows = [
        row
        for row in read_history_csv(path)
        if row.get("phase") != phase or (row.get("epoch") or 0) <= keep_until
    ]
    if new_row is not None:
        rows.append(new_row)
    if rows or path.exists():
        _write_history(path, rows)


def _phase_rows(run: RunFolder, phase: str) -> list[dict]:
    return [row for row in run.history_rows() if row.get("phase") == phase]


def _as_number(value: Any) -> Any:
    try:
        number = float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return value
    return number


# -- callbacks ----------------------------------------------------------------------------------


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that can start from the bookkeeping of an interrupted run, and says clearly
    when the monitored metric does not exist."""

    def __init__(self, *, resume: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self._resume = resume

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._resume:
            self.best = self._resume["best"]
            self.best_epoch = self._resume["best_epoch"]
            self.wait = self._resume["wait"]
            self.best_weights = self._resume.get("best_weights")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            available = ", ".join(sorted(logs)) or "none"
            raise InputError(
                f"`monitor` must name a metric the model logs. Received: monitor={self.monitor!r}; "
                f"available: {available}. Pass one of those, or add the metric to `compile(...)`."
            )
        super().on_epoch_end(epoch, logs)


class _EpochRecorder(keras.callbacks.Callback):
    """After each finished epoch: checkpoint, history row, run state (in that order)."""

    def __init__(self, run, phase, epochs, early_stopping, monitor, restore_best_weights):
        super().__init__()
        self.run = run
        self.phase = phase
        self.epochs = epochs
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.restore_best_weights = restore_best_weights
        self.weights_path = _weights_path(run, phase)

    def on_epoch_begin(self, epoch, logs=None):
        pause_point(f"epoch:{self.phase}:{epoch + 1}")  # a test-only hook, see files.pause_point

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        epochs_done = epoch + 1
        stopping = self.early_stopping
        best_epoch = stopping.best_epoch + 1
        best_value = _as_number(stopping.best)
        if not isinstance(best_value, float):
            best_value = float("nan")
        best_path = _epoch_file(self.run, self.phase, "best", best_epoch)
        if self.restore_best_weights and best_epoch == epochs_done:
            save_weights_atomic(self.model, best_path)
        optimizer_path = _epoch_file(self.run, self.phase, "optimizer", epochs_done)
        _save_optimizer(self.model, optimizer_path)
        # The commit point of the epoch.
        save_weights_atomic(
            self.model,
            self.weights_path,
            **{
                _EPOCHS_ATTR: epochs_done,
                _BEST_EPOCH_ATTR: best_epoch,
                _BEST_VALUE_ATTR: best_value,
                # EarlyStopping (before this callback) has decided to stop after this epoch.
                _STOPPED_ATTR: int(bool(self.model.stop_training)),
            },
        )
        _delete_epoch_files(self.run, self.phase, "optimizer", keep=optimizer_path)
        _delete_epoch_files(self.run, self.phase, "best", keep=best_path)
        row = {"phase": self.phase, "epoch": epochs_done}
        row.update({key: _as_number(value) for key, value in logs.items()})
        _replace_history_rows(self.run.history_path, self.phase, epoch, row)
        self.run.update_state(
            **{
                self.phase: {
                    "epochs_done": epochs_done,
                    "epochs": self.epochs,
                    "finished": False,
                    "best": {"monitor": self.monitor, "value": best_value, "epoch": best_epoch},
                }
            }
        )


# -- fit_phase ----------------------------------------------------------------------------------


class _StopOnInterrupt(keras.callbacks.Callback):
    """Raises `KeyboardInterrupt` after a batch if a Ctrl-C arrived and was swallowed (see
    `transferkit.training.interrupts`). Last in the list, so a finished epoch is saved first."""

    def _check(self, *args, **kwargs):
        if interrupt_received():
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check


def _has_validation(validation_data, fit_kwargs) -> bool:
    return validation_data is not None or bool(fit_kwargs.get("validation_split"))


def _load_best_weights_list(model, path: Path, phase: str) -> list | None:
    """The weights in `path` as a `get_weights()` list, leaving the model's weights as they were."""
    if not path.is_file():
        return None
    current = model.get_weights()
    _load_checkpoint(model, path, phase)
    best = model.get_weights()
    model.set_weights(current)
    return best


def fit_phase(
    model,
    train_data,
    validation_data=None,
    *,
    epochs: int,
    run: RunFolder,
    phase: str,
    patience: int,
    monitor: str = "val_loss",
    restore_best_weights: bool = True,
    tensorboard: bool = True,
    verbose: Any = "auto",
    extra_callbacks: Iterable[keras.callbacks.Callback] = (),
    **fit_kwargs: Any,
) -> list[dict]:
    """Trains one phase of a run with early stopping, logs, history and per-epoch checkpoints; a
    finished phase is loaded, an interrupted one resumed (see the module docstring).

    Args:
        model: a compiled Keras model.
        train_data: what `model.fit` takes as `x` (a dataset, arrays with `y=...` in `fit_kwargs`).
        validation_data: what `model.fit` takes as `validation_data`. Default `None`; then a
            `monitor` starting with `val_` watches the training metric instead (`"val_loss"` ->
            `"loss"`), unless `validation_split` is passed.
        epochs: the number of epochs of this phase (not counting earlier phases).
        run: the `RunFolder` that holds checkpoints, logs, `history.csv` and state.
        phase: the phase's name, e.g. `"head"` or `"fine_tune"`; names the checkpoint files.
        patience: epochs without improvement before stopping.
        monitor: the metric early stopping and "best" follow. Default `"val_loss"`.
        restore_best_weights: leave the best epoch's weights in the model (and in
            `checkpoints/<phase>.weights.h5`) at the end. Default `True`.
        tensorboard: write TensorBoard logs to `run.log_dir / phase`. Default `True`.
        verbose: passed to `model.fit`. Default `"auto"`.
        extra_callbacks: more Keras callbacks, run after transferkit's. Default `()`.
        **fit_kwargs: passed to `model.fit` (`y`, `batch_size`, `class_weight`, ...).

    Returns:
        This phase's rows of `history.csv`, one dict per finished epoch (`phase`, `epoch` counted
        from 1 within the phase, then the metrics), including epochs from before a resume.

    Raises:
        InputError: bad `epochs`/`phase`, or a `monitor` the model does not log (listing those it
            does).
    """
    _check_arguments(epochs, phase, fit_kwargs)
    run = (run if isinstance(run, RunFolder) else RunFolder(run)).create()
    if monitor.startswith("val_") and not _has_validation(validation_data, fit_kwargs):
        monitor = monitor[len("val_") :]

    for folder in (run.path, run.checkpoint_dir):
        remove_partial_files(folder)  # left by a run killed mid-write; one process per run folder
    phase_state = run.state().get(phase) or {}
    attrs = (_weights_attrs(_weights_path(run, phase), phase)
             if phase_state.get("epochs_done") else None)
    if _finished(model, run, phase, phase_state, attrs):
        return _phase_rows(run, phase)
    epochs_done, resume = _restore(model, run, phase, attrs, restore_best_weights)

    early_stopping = _ResumableEarlyStopping(
        monitor=monitor, patience=patience, restore_best_weights=restore_best_weights,
        resume=resume,
    )
    recorder = _EpochRecorder(run, phase, epochs, early_stopping, monitor, restore_best_weights)
    callbacks = [early_stopping, recorder, EpochSeeds(phase, train_data),
                 *_logs(run, phase, tensorboard), *extra_callbacks, _StopOnInterrupt()]
    if epochs_done < epochs and not (resume and resume["stopped"]):
        model.fit(train_data, validation_data=validation_data, epochs=epochs,
                  initial_epoch=epochs_done, callbacks=callbacks, verbose=verbose, **fit_kwargs)
        stopped_early = early_stopping.stopped_epoch > 0
        best = (early_stopping.best_epoch + 1, early_stopping.best)
    else:
        # Killed after the last epoch (or the early stop) but before the phase was marked
        # finished: nothing left to train, only the best weights to put back.
        stopped_early = bool(resume and resume["stopped"])
        if resume and resume.get("best_weights") is not None:
            model.set_weights(resume["best_weights"])
        best = (resume["best_epoch"] + 1, resume["best"]) if resume else (None, None)
    return _finish(model, run, phase, epochs, epochs_done, monitor, stopped_early, best)


def _logs(run, phase: str, tensorboard: bool) -> list:
    if not tensorboard:
        return []
    # No graph: Keras 3 cannot show it in TensorBoard, and serialising a big backbone to JSON at
    # the start of every phase costs time (and warns for layers that do not serialise).
    return [keras.callbacks.TensorBoard(log_dir=str(Path(run.log_dir) / phase), write_graph=False)]


def _finished(model, run, phase: str, phase_state: dict, attrs) -> bool:
    """Whether the phase finished before; then its final weights are loaded into `model`."""
    weights_path = _weights_path(run, phase)
    if not weights_path.is_file() or not (
        phase_state.get("finished") or (attrs and attrs.get(_FINISHED_ATTR))
    ):
        return False
    _load_checkpoint(model, weights_path, phase)
    if not phase_state.get("finished"):  # killed between the last two writes
        run.update_state(**{phase: {**phase_state, "finished": True}})
    return True


def _check_arguments(epochs, phase, fit_kwargs) -> None:
    from transferkit.checks import check_int

    check_int(epochs, "epochs", minimum=0)
    if not phase or not isinstance(phase, str) or any(c in phase for c in "/\\") or phase == ".":
        raise InputError(
            f"`phase` must be a non-empty name without slashes, e.g. 'head'. Received: "
            f"phase={phase!r}."
        )
    for reserved in ("epochs", "initial_epoch", "callbacks", "validation_data", "x"):
        if reserved in fit_kwargs:
            raise InputError(
                f"`{reserved}` is set by fit_phase; do not pass it in `fit_kwargs`. Received: "
                f"{reserved}={fit_kwargs[reserved]!r}."
            )


def _restore(model, run, phase, attrs, restore_best_weights: bool) -> tuple[int, dict | None]:
    """Loads an interrupted phase's last checkpoint into `model`. Returns the epochs it holds and
    the early-stopping bookkeeping to continue with (None when there is nothing to resume)."""
    # The weights file says how many epochs it holds (it is written before the state, so it may
    # be one epoch ahead of state.json, never behind).
    epochs_done = int(attrs[_EPOCHS_ATTR]) if attrs and _EPOCHS_ATTR in attrs else 0
    # Forget rows of epochs the checkpoint does not hold (they will be trained again).
    _replace_history_rows(run.history_path, phase, epochs_done, None)
    if epochs_done <= 0:
        return 0, None
    _load_checkpoint(model, _weights_path(run, phase), phase)
    _load_optimizer(model, _epoch_file(run, phase, "optimizer", epochs_done))
    best_epoch = int(attrs.get(_BEST_EPOCH_ATTR, epochs_done))
    best_value = float(attrs.get(_BEST_VALUE_ATTR, math.nan))
    resume = {
        "best": best_value if math.isfinite(best_value) else None,
        "best_epoch": best_epoch - 1,
        "wait": epochs_done - best_epoch,
        "stopped": bool(attrs.get(_STOPPED_ATTR)),
    }
    if restore_best_weights:
        resume["best_weights"] = _load_best_weights_list(
            model, _epoch_file(run, phase, "best", best_epoch), phase
        )
    return epochs_done, resume


def _finish(model, run, phase, epochs, epochs_done, monitor, stopped_early, best) -> list[dict]:
    """Writes the phase's final weights and state, deletes what only resuming needed, and
    returns the phase's history rows."""
    rows = _phase_rows(run, phase)
    done = rows[-1]["epoch"] if rows else epochs_done
    best_epoch, best_value = best[0], _as_number(best[1])
    summary = (
        {"monitor": monitor, "value": best_value, "epoch": best_epoch}
        if isinstance(best_value, float)
        else None
    )
    # The final weights of the phase: the best epoch's when restore_best_weights, else the last.
    save_weights_atomic(model, _weights_path(run, phase), **{_EPOCHS_ATTR: done, _FINISHED_ATTR: 1})
    run.update_state(
        **{
            phase: {
                "epochs_done": done,
                "epochs": epochs,
                "finished": True,
                "stopped_early": stopped_early,
                "best": summary,
            }
        }
    )
    # Only needed to resume, and each as big as the model (the optimizer's, twice as big).
    _delete_epoch_files(run, phase, "optimizer")
    _delete_epoch_files(run, phase, "best")
    return rows
