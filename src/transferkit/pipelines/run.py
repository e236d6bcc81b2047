"""The skeleton of every `transferkit train` run, written once for images and text.

```
settings    a config (`ImageTrainConfig` / `TextTrainConfig`) from defaults, a file and options;
            with `resume`, the run's saved config, after checking which command made the run;
            options for a phase the run has not begun (`unfreeze` before fine-tuning) change it
            (and its `config.json`), the others are ignored with a line saying how to start over
data        read and checked by the pipeline *before* the run folder exists, so bad data leaves
            nothing behind; a folder that already holds a run is refused unless resumed; the
            pipeline builds the model there too (a bad `unfreeze` layer name fails at once)
run folder  created and locked (`.lock`: a second run on the same folder is refused, see
            `transferkit.run_folder.RunLock`), `config.json` written (the config as JSON, with
            its task); a resumed run takes the lock as it starts
head        `classifier.fit(...)` on the frozen backbone; accuracy on the report split
fine-tune   `classifier.fine_tune(...)` when `fine_tune_epochs` > 0; accuracy again
finish      `model.keras`, the report (`report/`: metrics, pictures, data.json, config.json,
            history.csv), the result as plain data (also in `state.json`)
tracking    with `track` (or a resumed tracked run): the same run in MLflow, logged from a
            background thread as it goes (`transferkit.tracking.tracker`); `register` adds the
            model to the registry at the end
```

Checkpoints, resume and interrupts come from `fit_phase`: a killed run rerun with `resume`
continues after its last finished epoch. Ctrl-C ends the run with a line saying how to resume.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import DiskFullError, InputError
from transferkit.files import pause_point

__all__ = ["TrainingRun"]


def _inside(path: str, folder) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):
        return False


def _holds_a_run(path) -> InputError:
    return InputError(
        f"{path} already holds a run. Pass it as `resume` to continue it (settings of a phase it "
        f"has not begun may be changed there), or start over: pass another `output`, or remove "
        f"{path}."
    )


def _not_begun(state: dict, phase: str | None) -> bool:
    """Whether a run's `phase` has no finished epoch yet (False for `None`: from the start)."""
    if phase is None:
        return False
    info = state.get(phase) or {}
    return not info.get("epochs_done") and not info.get("finished")


def _state_line(state: dict) -> str:
    phases = [
        f"{phase} {info.get('epochs_done', 0)}/{info.get('epochs', '?')} epochs"
        + (" (finished)" if info.get("finished") else "")
        for phase, info in state.items()
        if isinstance(info, dict) and "epochs_done" in info
    ]
    return ", ".join(phases) or "nothing finished yet"


class TrainingRun:
    """One training run: its settings, its folder, its phases and its report.

    Args:
        config_class: `ImageTrainConfig` or `TextTrainConfig`.
        data: the data (folder or table); default from the config, or the run's when resuming.
        output: the run folder of a new run. Default `None`: `runs/<task>-<date>-<time>`.
        resume: a run folder to continue with its saved settings; `options` of a phase it has
            not begun (`TrainConfig.phase_of`) change them. Default `None`.
        config: settings to start from. Default `None`: the config class's defaults.
        options: settings that override `config` (`None` values are ignored).
        log: called with each progress line.
        verbose: Keras progress output for the phases.
        track: log the run to MLflow: `True` for `$MLFLOW_TRACKING_URI` or the embedded store
            (`mlflow.db` in the working folder), or a tracking URI. Default `None`: not tracked
            (a resumed tracked run is tracked where it was).
        experiment: the MLflow experiment. Default `None`: the data folder's or table's name.
        register: register the model in MLflow's model registry under this name. Default `None`.
        processes: with `distribute="data-parallel"` over several processes: `coordinator`
            (HOST:PORT of process 0), `num_processes`, `process_id` (see
            `transferkit.training.distribute`). Default `None`: this process's devices only.
    """

    def __init__(self, config_class, data=None, *, output=None, resume=None, config=None,
                 options: dict[str, Any] | None = None, log: Callable[[str], None] = print,
                 verbose: Any = "auto", track=None, experiment: str | None = None,
                 register: str | None = None, processes: dict | None = None):
        self.started = time.perf_counter()
        self.task = config_class.task
        self.log = log
        self.verbose = verbose
        self.run = None
        self.lock = None
        self._changed = False  # a resumed run's settings changed (`_resume`)
        options = {key: value for key, value in (options or {}).items() if value is not None}
        unknown = sorted(set(options) - set(config_class.names()))
        if unknown:
            raise InputError(
                f"Unknown setting(s) {', '.join(unknown)} for `train {self.task}`. Known: "
                f"{', '.join(config_class.names())}."
            )
        if resume is not None:
            self.config, self.path = self._resume(config_class, resume, data, options)
            self.resuming = True
        else:
            self.config, self.path = self._new(config_class, data, output, config, options)
            self.resuming = False
        self.distributed = self._distribute(processes or {})
        writer = self.distributed is None or self.distributed["process"] == 0
        self.tracker = self._tracker(track, experiment, register) if writer else None

    def _distribute(self, processes: dict) -> dict | None:
        """Starts data-parallel training if the config asks for it; a process other than 0
        keeps its run in a scratch folder (process 0 alone writes the run folder)."""
        from transferkit.training import distribute

        info = distribute.start(self.config.distribute, task=self.task, **processes)
        if info is None:
            return None
        distribute.check_batch_size(self.config.batch_size)
        self.log(f"Data-parallel: {info['devices']} devices in {info['processes']} process(es), "
                 f"{self.config.batch_size // info['devices']} examples per device a step")
        if info["process"] != 0:
            scratch = Path(distribute.scratch_folder(self.path))
            shutil.rmtree(scratch, ignore_errors=True)
            if self.resuming:  # every process restarts from process 0's checkpoints
                from transferkit.run_folder import LOCK_NAME

                # not process 0's lock: this process locks its own copy
                shutil.copytree(self.path, scratch, ignore=shutil.ignore_patterns(LOCK_NAME))
            self.path = scratch
        return info

    def _tracker(self, track, experiment, register):
        from transferkit.tracking.tracker import RunTracker

        name = Path(self.config.data).stem if self.config.data else self.task
        return RunTracker.for_run(self.path, track=track, experiment=experiment,
                                  register=register, default_experiment=name, log=self.log)

    def _resume(self, config_class, resume, data, options):
        from transferkit.run_folder import RunFolder

        path = Path(resume)
        if not path.is_dir():
            raise InputError(
                f"{path}: no such run folder. Pass a folder written by `transferkit train "
                f"{self.task}` as `resume`."
            )
        run = RunFolder(path)
        saved = run.load_config()
        if "task" not in saved:
            raise InputError(
                f"{run.config_path} was not written by `transferkit train` (it names no task). "
                f"Pass a folder written by `transferkit train {self.task}` as `resume`."
            )
        if saved.get("task") != self.task:
            raise InputError(
                f"{path} is a run of `train {saved.get('task', '?')}`, not `train {self.task}`. "
                "Resume it with the matching command."
            )
        config = config_class.from_dict(
            {key: value for key, value in saved.items() if key != "task"},
            source=str(run.config_path),
        )
        if config.target is None:  # a run from before targets: all were single-label
            config = config.replace(target="single-label")
        given = {**options, **({} if data is None else {"data": os.fspath(data)})}
        differs = {key: value for key, value in given.items()
                   if value != getattr(config, key, value)}
        state = run.state()
        changed = {key: value for key, value in differs.items()
                   if _not_begun(state, config_class.phase_of(key))}
        ignored = sorted(set(differs) - set(changed))
        self.log(f"Resuming {path} (state: {_state_line(state)})")
        if changed:  # written to config.json once the run holds its folder (`start`)
            before, config = config, config.replace(**changed)  # checked before it is said
            self.log("Resuming with changed settings of phases not begun: " + ", ".join(
                f"{key} {getattr(before, key)!r} -> {value!r}" for key, value in changed.items()))
        if ignored:
            self.log(f"Resuming uses the run's saved settings for what it has begun; ignored: "
                     f"{', '.join(ignored)}. To train with them, start over: another --output "
                     f"(or remove {path})")
        self._changed = bool(changed)
        return config, path

    def _new(self, config_class, data, output, config, options):
        from transferkit.run_folder import RunFolder, RunLock, default_run_dir, in_use_error

        config = config if config is not None else config_class()
        if data is not None:
            options["data"] = os.fspath(data)
        config = config.replace(**options) if options else config
        if config.data is None:
            raise InputError("Pass the data to train on (`data`), or a run folder to `resume`.")
        config = config.replace(data=str(Path(config.data).resolve()))
        if config.target is None:
            config = config.replace(target=self._infer_target(config))
        path = Path(output) if output is not None else default_run_dir(self.task)
        holder = RunLock.in_use(path)
        if holder is not None:
            raise in_use_error(path, holder)
        if RunFolder(path).config_path.exists():
            raise _holds_a_run(path)
        return config, path

    def _infer_target(self, config) -> str:
        """The target the data says when `--target` is not given (`infer_target`), logged."""
        from transferkit.data.label_columns import infer_target
        from transferkit.data.text import table_columns

        table = Path(config.data).is_file()
        columns = table_columns(config.data) if table else None
        if columns is not None:
            own = config.path_column if self.task == "images" else config.text_column
            columns = [column for column in columns if column != own]
        target, why = infer_target(columns, config.label_column)
        if table:  # class folders are single-label only: nothing to say
            self.log(f"Target: {target}, from {why} (--target sets it)")
        return target

    # -- the run ---------------------------------------------------------------------------------

    def __enter__(self) -> TrainingRun:
        if self.resuming:  # a new run's folder is made (and locked) by `start`
            self._lock()
        return self

    def _lock(self) -> None:
        from transferkit.run_folder import RunFolder

        if self.lock is None:
            hint = "wait for it to finish" if self.resuming else ""
            self.lock = RunFolder(self.path).create().lock(log=self.log, hint=hint)

    def __exit__(self, kind, error, traceback) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if kind is not None and self.tracker is not None:
            self.tracker.close("KILLED" if kind is KeyboardInterrupt else "FAILED")
        if isinstance(error, DiskFullError) and _inside(error.path, self.path):
            instead = (f"move {self.path} to a disk with room and resume it there"
                       if self.resuming else "pass another `output`")
            error.args = (f"{error.args[0]}, or {instead}",)
        if kind is KeyboardInterrupt and self.run is not None:
            # The interrupt itself says how to go on (the command line prints it on one line).
            error.args = (
                f"the finished epochs are saved. Continue with: transferkit train {self.task} "
                f"--resume {self.path}",
            )

    def start(self) -> None:
        """Creates the run folder and writes `config.json` (call once the data is read)."""
        from transferkit.run_folder import RunFolder

        self.run = RunFolder(self.path).create()
        self._lock()
        if not self.resuming:
            if self.run.config_path.exists():  # another run started and finished meanwhile
                self.lock.release()
                self.lock = None
                raise _holds_a_run(self.path)
        if not self.resuming or self._changed:
            self.run.save_config({"task": self.task, **self.config.to_dict()})
        if self.tracker is not None:
            self.tracker.start(self.config.to_dict(), self.task)

    def train(self, classifier, x, y=None, validation_data=None, *,
              report: Callable[[], tuple[list, np.ndarray]], report_split: str,
              fine_tune_options: dict | None = None) -> dict:
        """The head phase, then fine-tuning if the config asks for it.

        Args:
            classifier: an unfitted `ImageClassifier` or `TextClassifier`.
            x, y, validation_data: what `classifier.fit` takes.
            report: gives the inputs and labels the report measures (after each phase, so that
                inputs found unreadable during training are left out).
            report_split: their name for messages and keys (`"validation"`, `"test"`).
            fine_tune_options: more arguments of `fine_tune` (`unfreeze`). Default `None`.

        Returns:
            `probabilities` of the report inputs from the last phase, the accuracies of both
            phases and their times, for `finish`.
        """
        config = self.config
        callbacks = [self.tracker.callback()] if self.tracker is not None else None
        started = time.perf_counter()
        classifier.fit(
            x, y, validation_data, epochs=config.epochs, batch_size=config.batch_size,
            learning_rate=config.learning_rate, patience=config.patience,
            validation_size=config.validation_size, output=self.run, verbose=self.verbose,
            callbacks=callbacks, weight_decay=config.weight_decay,
        )
        self._log_left_out(classifier)
        items, labels = report()
        probabilities = classifier.predict_proba_cached(items)
        metric, score = classifier.headline(probabilities, labels)
        phases = {"metric": metric, "head_score": score,
                  "head_seconds": time.perf_counter() - started,
                  "fine_tune_score": None, "fine_tune_seconds": 0.0}
        words = metric.replace("_", " ")
        self.log(f"Head: {report_split} {words} {score:.4f} ({phases['head_seconds']:.0f} s)")
        why_frozen = classifier.why_frozen() if config.fine_tune_epochs > 0 else ""
        if why_frozen:
            self.log(f"Fine-tune: skipped, the backbone cannot be fine-tuned: {why_frozen}")
            phases["fine_tune_skipped"] = why_frozen
        elif config.fine_tune_epochs > 0:
            pause_point("phase:fine_tune")
            how = "".join(f", {key} {value}" for key, value in (fine_tune_options or {}).items())
            if config.fine_tune_learning_rate is not None:
                how += f", learning rate {config.fine_tune_learning_rate:g}"
            self.log(f"Fine-tune: up to {config.fine_tune_epochs} epochs{how}")
            started = time.perf_counter()
            classifier.fine_tune(
                epochs=config.fine_tune_epochs, learning_rate=config.fine_tune_learning_rate,
                batch_size=config.batch_size, patience=config.fine_tune_patience,
                output=self.run, verbose=self.verbose, callbacks=callbacks,
                **(fine_tune_options or {}),
            )
            self._log_left_out(classifier)
            items, labels = report()
            probabilities = classifier.predict_proba(items)
            phases["fine_tune_score"] = classifier.headline(probabilities, labels)[1]
            phases["fine_tune_seconds"] = time.perf_counter() - started
            self.log(f"Fine-tune: {report_split} {words} {phases['fine_tune_score']:.4f} "
                     f"({phases['fine_tune_seconds']:.0f} s)")
        return {**phases, "probabilities": probabilities, "items": items, "labels": labels,
                "split": report_split}

    def _log_left_out(self, classifier) -> None:
        left_out = getattr(classifier, "left_out_of_validation", 0)
        if left_out:
            self.log(f"Data-parallel: the last {left_out} validation example(s) were not used "
                     "for val_loss (each validation batch must split evenly over the devices); "
                     "the report uses them all")

    def finish(self, classifier, phases: dict, *, title: str, extra: dict, result: dict,
               data: dict) -> dict:
        """Saves the model, writes the report, and returns the run's result.

        Args:
            classifier: the trained classifier.
            phases: what `train` returned.
            title: the report's title.
            extra: the pipeline's lines for `summary.txt` (after the shared ones).
            result: the pipeline's keys of the result.
            data: facts about the data, written to `report/data.json`.

        Returns:
            The result: `classes`, `target`, `<split>_accuracy`, `head_<split>_accuracy`,
            `fine_tune_<split>_accuracy` (None without fine-tuning; for other targets
            `micro_f1` or `mae` in the place of `accuracy`, see `_headline_keys`), `model_path`, `report_dir`,
            `run_dir`, `seconds`, `head_seconds`, `fine_tune_seconds`, `macro_f1`, `summary`,
            `report_split`, `tracking` (where MLflow has the run, or None), and the pipeline's
            own keys.
        """
        from transferkit.files import copy_file, write_json

        run, split, metric = self.run, phases["split"], phases["metric"]
        words = metric.replace("_", " ")
        classifier.save(run.model_path)
        report_dir = Path(run.report_dir)
        calibration = _calibration(classifier, phases, report_dir, title)
        label_check = _label_issues(classifier, report_dir)
        lines = {
            f"head {split} {words}": round(phases["head_score"], 4),
            f"fine-tune {split} {words}": round(phases["fine_tune_score"], 4)
            if phases["fine_tune_score"] is not None
            else "skipped: " + phases["fine_tune_skipped"] if phases.get("fine_tune_skipped")
            else None,
            **extra,
            **_calibration_lines(calibration, split,
                                 classifier.metadata.get("calibration_skipped")),
            "label issues": label_check["line"],
            **_training_lines(classifier.metadata),
            "model": str(run.model_path),
            "tensorboard": f"tensorboard --logdir {run.log_dir}",
        }
        metrics = classifier.report(
            phases["items"], phases["labels"], phases["probabilities"], report_dir=report_dir,
            title=title, extra=lines, history=run.history_rows(),
        )
        if calibration is not None:  # metrics.json gets the numbers and reliability.png
            metrics["calibration"] = calibration
            metrics["files"]["reliability"] = str(report_dir / "reliability.png")
            write_json(run.metrics_path, metrics)
        write_json(run.data_path, data)
        copy_file(run.config_path, run.report_dir / run.config_path.name)
        if run.history_path.is_file():
            copy_file(run.history_path, run.report_dir / run.history_path.name)
        outcome = {
            "classes": list(classifier.class_names),
            **_headline_keys(metrics, split),
            f"head_{split}_{metric}": phases["head_score"],
            f"fine_tune_{split}_{metric}": phases["fine_tune_score"],
            "fine_tune_skipped": phases.get("fine_tune_skipped"),
            "model_path": str(run.model_path),
            "report_dir": str(report_dir),
            "run_dir": str(run.path),
            "seconds": round(time.perf_counter() - self.started, 1),
            "head_seconds": round(phases["head_seconds"], 1),
            "fine_tune_seconds": round(phases["fine_tune_seconds"], 1),
            "report_split": split,
            "calibration": calibration,
            "label_issues": label_check["count"],
            "label_issues_csv": label_check["csv"],
            **result,
        }
        run.update_state(result=outcome)
        outcome["tracking"] = self._track_finish(classifier, phases["items"])
        outcome["summary"] = (report_dir / "summary.txt").read_text(encoding="utf-8")
        if self.distributed is not None:
            from transferkit.training.distribute import barrier

            barrier("transferkit-run-finished")
        return outcome

    def _track_finish(self, classifier, items) -> dict | None:
        """Logs the results, report and model to MLflow (and registers it); waits for the
        background thread. Returns where the run is, or None when not tracked."""
        if self.tracker is None:
            return None
        from transferkit.tracking.tracker import input_example

        tracking = self.tracker.finish(classifier.model, input_example(self.task, items))
        for line in self.tracker.lines():
            self.log(line)
        return tracking


def _headline_keys(metrics: dict, split: str) -> dict:
    """The result's numbers of the report split: `<split>_accuracy` and `macro_f1`
    (single-label), `<split>_micro_f1`, `macro_f1` and `mean_average_precision` (multi-label),
    `<split>_mae`, `rmse` and `r2` (regression)."""
    target = metrics.get("target", "single-label")
    if target == "regression":
        return {"target": target, f"{split}_mae": metrics["mae"], "mae": metrics["mae"],
                "rmse": metrics["rmse"], "r2": metrics["r2"]}
    if target == "multi-label":
        return {"target": target, f"{split}_micro_f1": metrics["micro_f1"],
                "micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"],
                "mean_average_precision": metrics["mean_average_precision"]}
    return {"target": target, f"{split}_accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_avg"]["f1"]}


def _calibration(classifier, phases: dict, report_dir: Path, title: str) -> dict | None:
    """The calibration of the trained model: ECE and NLL before and after temperature scaling
    on the validation split (where the temperature was fitted) and on the report split (for
    text, the test split), and `reliability.png` of the report split. None when not calibrated
    (`--no-calibrate`, or a validation split of one class)."""
    from transferkit.reports.calibration import calibration_summary, plot_reliability

    fitted = classifier.metadata.get("calibration")
    labels = np.asarray(phases["labels"])
    if not fitted or not len(labels):
        return None
    temperature, split = fitted["temperature"], phases["split"]
    keys = ("examples", "ece_before", "ece_after", "nll_before", "nll_after")
    result = {"temperature": temperature, "validation": {key: fitted[key] for key in keys}}
    probabilities = np.asarray(phases["probabilities"])
    if split != "validation":
        result[split] = calibration_summary(labels, probabilities, temperature)
    plot_reliability(report_dir / "reliability.png", labels, probabilities, temperature,
                     split=split, title=title)
    return result


def _calibration_lines(calibration: dict | None, split: str, skipped: str | None) -> dict:
    """The summary's calibration lines: the temperature, then ECE and NLL before -> after."""
    if calibration is None:
        return {"calibration": "none: " + (skipped or "--no-calibrate")}
    lines = {"temperature": f"{calibration['temperature']:.3f} (fitted on validation)"}
    for name in dict.fromkeys(("validation", split)):
        numbers = calibration[name]
        lines[f"{name} ECE / NLL"] = (
            f"{numbers['ece_before']:.4f} -> {numbers['ece_after']:.4f} / "
            f"{numbers['nll_before']:.4f} -> {numbers['nll_after']:.4f}"
        )
    return lines


def _label_issues(classifier, report_dir: Path) -> dict:
    """Finds likely mislabelled training examples and writes `label_issues.csv` (and for images
    `label_issues.png`). Returns the summary's `line`, the `count` and the `csv` path (None
    when the check could not run)."""
    from transferkit.reports.label_issues import write_label_issues

    check = classifier.find_label_issues()
    if not check["checked"]:
        return {"line": f"not checked: {check['why']}", "count": None, "csv": None}
    issues = check["issues"]
    files = write_label_issues(report_dir, issues, check["items"], classifier.class_names,
                               images=classifier.task == "image")
    return {
        "line": (f"{len(issues)} likely mislabelled of {check['examples']} training examples "
                 f"({check['folds']}-fold heads on cached features; label_issues.csv)"),
        "count": len(issues),
        "csv": files["label_issues"],
    }


def _training_lines(metadata: dict) -> dict:
    """What the classifier's metadata says of how its head was trained: class counts and
    imbalance, and why the head ran all its epochs when too few validation examples turned
    early stopping off (`Classifier.fit`)."""
    why = metadata.get("head_early_stopping", "on")
    return {**_imbalance_lines(metadata), **({} if why == "on" else {"head early stopping": why})}


def _imbalance_lines(metadata: dict) -> dict:
    """The training class counts, and for imbalanced classes the line that makes the summary
    lead with macro F1 and balanced accuracy (`reports.metrics.IMBALANCE_KEY`)."""
    from transferkit.data.labels import IMBALANCE_RATIO
    from transferkit.reports.metrics import IMBALANCE_KEY

    counts = metadata.get("class_counts") or {}
    if not counts:  # multi-label and regression targets: no class weights, no class counts
        return {}
    lines = {"train class counts": ", ".join(f"{name} {n}" for name, n in counts.items())}
    ratio = metadata.get("imbalance") or 1.0
    if ratio >= IMBALANCE_RATIO:
        weights = ("class weights on (--class-weight none turns them off)"
                   if metadata.get("class_weights")
                   else "class weights off (--class-weight balanced turns them on)")
        lines[IMBALANCE_KEY] = (f"the largest class is {ratio:g}x the smallest: {weights}; "
                                "macro F1 and balanced accuracy say more than accuracy")
    return lines
