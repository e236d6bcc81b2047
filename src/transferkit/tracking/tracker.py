"""`RunTracker`: one `transferkit train` run recorded in MLflow, without slowing it down.

What a tracked run logs:

```
params     the resolved config (config.json); data facts as data.* (counts per class and split,
           the content sha256 of the file list or table, skipped files, duplicates)
tags       transferkit.task, transferkit.backbone or transferkit.encoder, the transferkit, keras
           and backend versions, mlflow.source.git.commit of the working folder (if a git one)
metrics    every epoch of every phase as <phase>/<metric> (head/val_loss, fine_tune/accuracy) at a
           global step (head epochs, then fine-tuning ones); at the end <split>_accuracy,
           head_/fine_tune_<split>_accuracy, macro_f1, f1/<class>, precision/<class>,
           temperature, calibration/<split>/ece_after (and _before, nll_...),
           recall/<class> and the seconds of each part
inputs     the dataset (name, content digest, counts), as MLflow's dataset panel shows it
artifacts  report/ (PNGs, metrics.json, summary.txt), history.csv, config.json, and model/: the
           model as an MLflow Keras model with a signature and an input example
```

How: every MLflow call runs in order on one background thread; training never waits for it but
at the very end (the report and model upload). The run folder stays the record: epochs are logged
from its `history.csv` and results from `report/` and `state.json`, so a resumed run logs into
the same MLflow run exactly the steps it is missing, and a run whose store went away is logged
later by `transferkit runs upload RUN_DIR` from the same files. `tracking.json` in the run folder
says where (store, experiment, MLflow run id) and whether an upload is pending.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transferkit.files import read_json, write_json
from transferkit.tracking.store import client, describe, experiment_id, talking_to, ui_command

__all__ = ["RunTracker", "TRACKING_FILE", "input_example", "log_keras_model",
           "register_run_model"]

TRACKING_FILE = "tracking.json"
_BATCH = 900  # MLflow takes at most 1000 metrics and 100 params per `log_batch`
_PARAM_BATCH = 90
SYNC_SECONDS = 2.0
# The result's final numbers: single-label, multi-label (`micro_f1`, `mean_average_precision`)
# and regression (`mae`, `rmse`, `r2`) runs.
_FINAL = re.compile(r"(accuracy|macro_f1|micro_f1|mean_average_precision|mae|rmse|r2|seconds|"
                    r"per_second)$")


def _key(name: str) -> str:
    """`name` as an MLflow metric or param key (letters, digits, _ - . space : / only)."""
    return re.sub(r"[^\w\-. :/]", "_", str(name))


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _git_commit(folder: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", os.fspath(folder), "rev-parse", "HEAD"], capture_output=True,
            text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _tags(task: str, config: dict, folder: Path) -> dict[str, str]:
    import keras

    import transferkit

    tags = {
        "transferkit.task": task,
        "transferkit.version": transferkit.__version__,
        "transferkit.run_dir": os.fspath(folder.resolve()),
        "keras.version": keras.__version__,
        "keras.backend": keras.backend.backend(),
        "mlflow.runName": folder.name,
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": f"transferkit train {task}",
    }
    for name in ("backbone", "encoder"):
        if config.get(name):
            tags[f"transferkit.{name}"] = str(config[name])
    commit = _git_commit(Path.cwd())
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


class RunTracker:
    """Logs one run folder to MLflow from a background thread (see the module docstring).

    Make one with `RunTracker.for_run`; then `start(config)` once the run folder exists,
    `callback()` for each phase's `fit`, and `finish(model)` or `close(status)` at the end.

    Attributes:
        uri: the tracking URI; `experiment`: the experiment's name; `run_id`: the MLflow run's id
            (once started); `version`: the registered model version (with `register`).
        failed: the error that stopped tracking, or None.
        waited: seconds the training thread spent waiting for MLflow (`finish`, `close`).
    """

    def __init__(self, folder: str | os.PathLike, uri: str, experiment: str, *,
                 register: str | None = None, run_id: str | None = None,
                 log: Callable[[str], None] = print):
        self.folder = Path(folder)
        self.uri = uri
        self.experiment = experiment
        self.register = register
        self.run_id = run_id
        self.version: str | None = None
        self.log = log
        self.failed: Exception | None = None
        self.warn = True  # print the warning when tracking stops (an upload raises instead)
        self.waited = 0.0
        self._client = None
        self._logged: set[tuple[str, int]] = set()
        self._closed = False
        self._synced = 0.0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="transferkit-mlflow")

    @classmethod
    def saved(cls, folder: str | os.PathLike) -> dict:
        """The run folder's `tracking.json` (`{}` if it was never tracked)."""
        path = Path(folder) / TRACKING_FILE
        return read_json(path) if path.is_file() else {}

    @classmethod
    def for_run(cls, folder, *, track=None, experiment: str | None = None,
                register: str | None = None, default_experiment: str = "transferkit",
                log: Callable[[str], None] = print, reuse: bool = True) -> RunTracker | None:
        """The tracker of a run folder, or None when the run is not tracked.

        A folder tracked before (its `tracking.json`) keeps its store, experiment and MLflow run
        (a resumed run continues it); otherwise `track` (None: not tracked, unless `register`
        asks for a registered model, which needs a tracked run; True: the default store; or a
        URI) and `experiment` (default `default_experiment`) say where.
        `reuse=False` with a `track` that names another store starts a new MLflow run there
        (`transferkit runs upload --track`).

        Raises:
            MissingDependencyError: mlflow is not installed (with the pip line).
            InputError: `track` (or `$MLFLOW_TRACKING_URI`) is not a tracking URI.
            TrackingError: `track` or `register` asks for a local store that cannot be written
                (`transferkit.tracking.store.check_store`), said before any training. A resumed
                run tracked before goes on and says so in one warning (`runs upload` later).
        """
        from transferkit.extras import require_installed
        from transferkit.tracking.store import check_store, tracking_uri

        saved = cls.saved(folder)
        if not saved and track is None and register is None:
            return None
        require_installed("mlflow", "Tracking runs (`track`)")
        uri = tracking_uri(track) if track is not None else None
        if saved and (reuse or uri is None or uri == saved.get("uri")):
            if uri is not None and uri != saved.get("uri"):
                log(f"Tracking: the run is logged to {saved['uri']}; continuing there (not {uri})")
            tracker = cls(folder, saved["uri"], saved["experiment"],
                          register=register or saved.get("register"),
                          run_id=saved.get("run_id"), log=log)
        else:
            tracker = cls(folder, uri or tracking_uri(True),
                          experiment or saved.get("experiment") or default_experiment,
                          register=register or saved.get("register"), log=log)
        if track is not None or register is not None:  # asked for now: said before any work
            check_store(tracker.uri)
        return tracker

    # -- the training thread's side -------------------------------------------------------------

    def _submit(self, step: Callable, *args) -> None:
        self._pool.submit(self._guarded, step, *args)

    def _guarded(self, step: Callable, *args) -> None:
        if self.failed is not None:
            return
        try:
            with talking_to(self.uri):
                step(*args)
        except Exception as exc:  # tracking must never stop training: warn once, keep the files
            self.failed = exc
            self._save(pending=True, error=str(exc)[:500])
            if not self.warn:
                return
            again = f" --track {self.uri}" if self.uri else ""
            self.log(
                f"Warning: tracking stopped ({str(exc).rstrip('.')}). Training goes on and "
                f"{self.folder} keeps "
                f"everything; when the store is back, log the run with: transferkit runs upload "
                f"{self.folder}{again}"
            )

    def start(self, config: dict, task: str) -> None:
        """Opens (or, for a resumed run, reopens) the MLflow run and logs the config and tags."""
        self._submit(self._open, dict(config), task)

    def callback(self):
        """A Keras callback that logs the finished epochs (after `fit_phase` recorded them): at
        the start and end of a phase, and in between at most every `SYNC_SECONDS` (short epochs
        are logged in batches; each MLflow call costs the training thread a little)."""
        import keras

        tracker = self

        class _LogEpochs(keras.callbacks.Callback):
            def _sync(self, *args, **kwargs):
                tracker.sync()

            def on_epoch_end(self, epoch, logs=None):
                if time.monotonic() - tracker._synced >= SYNC_SECONDS:
                    tracker.sync()

            on_train_begin = on_train_end = _sync

        return _LogEpochs()

    def sync(self) -> None:
        """Logs the epochs of `history.csv` that MLflow does not have yet."""
        from transferkit.run_folder import RunFolder, read_history_csv

        self._synced = time.monotonic()
        rows = read_history_csv(RunFolder(self.folder).history_path)
        self._submit(self._log_epochs, rows)

    def finish(self, model=None, example=None) -> dict:
        """Logs the results, the report, the model (a Keras model) and registers it, then ends
        the MLflow run; waits for all of it. Returns `tracking_summary()`."""
        self.sync()
        self._submit(self._log_results)
        if model is not None:
            self._submit(self._log_model, model, example)
            if self.register:
                self._submit(self._register)
        return self.close("FINISHED")

    def close(self, status: str = "FINISHED") -> dict:
        """Ends the MLflow run with `status` (`FINISHED`, `KILLED`, `FAILED`) and waits for the
        background thread. Returns `tracking_summary()`."""
        if not self._closed:
            self._closed = True
            started = time.perf_counter()
            self._submit(self._end, status)
            self._pool.shutdown(wait=True)
            self.waited += time.perf_counter() - started
        return self.summary()

    def summary(self) -> dict:
        """Where the run was logged, as plain data (for the run's result)."""
        return {
            "uri": self.uri, "experiment": self.experiment, "run_id": self.run_id,
            "registered": f"models:/{self.register}/{self.version}" if self.version else None,
            "pending": self.failed is not None, "waited_seconds": round(self.waited, 2),
        }

    def lines(self) -> list[str]:
        """What to print at the end of a run."""
        if self.failed is not None:
            return [f"Tracking: not logged to {self.uri} (see the warning above); upload later with: "
                    f"transferkit runs upload {self.folder}"]
        lines = [f"Tracking: MLflow run {self.run_id} in experiment {self.experiment!r}, "
                 f"{describe(self.uri)} (see it: {ui_command(self.uri)})"]
        if self.version:
            lines.append(f"Registered: models:/{self.register}/{self.version}")
        return lines

    # -- the background thread's side -----------------------------------------------------------

    def _save(self, **changes) -> None:
        record = {**self.saved(self.folder), "uri": self.uri, "experiment": self.experiment,
                  "run_id": self.run_id, "register": self.register, **changes}
        write_json(self.folder / TRACKING_FILE, record)

    def _open(self, config: dict, task: str) -> None:
        from mlflow.entities import Param, RunTag

        self._client = client(self.uri)
        existing = self._existing_run()
        if existing is None:
            experiment = experiment_id(self._client, self.uri, self.experiment)
            self.run_id = self._client.create_run(experiment).info.run_id
        else:
            self._client.update_run(self.run_id, status="RUNNING")
            self._seen(existing)
        self._save(pending=False, error=None)
        values = {_key(name): str(value)[:6000] for name, value in config.items()}
        tags = _tags(task, config, self.folder)
        logged = existing.data.params if existing is not None else {}
        for name in [name for name in values if logged.get(name, values[name]) != values[name]]:
            # MLflow keeps a param's first value: a setting a resumed run changed is a tag
            tags[f"transferkit.resumed_with.{name}"] = values.pop(name)
        params = [Param(name, value) for name, value in values.items()]
        tags = [RunTag(name, value) for name, value in tags.items()]
        self._client.log_batch(self.run_id, params=params, tags=tags)

    def _existing_run(self):
        if not self.run_id:
            return None
        try:
            run = self._client.get_run(self.run_id)
        except Exception:  # deleted, or another store: start a new run and log everything
            self.log(f"Tracking: MLflow run {self.run_id} is not in {describe(self.uri)}; "
                     "starting a new one")
            self.run_id = None
            return None
        return None if run.info.lifecycle_stage == "deleted" else run

    def _seen(self, run) -> None:
        """Remembers which (metric, step) the run has, so nothing is logged twice."""
        for key in run.data.metrics:
            for metric in self._client.get_metric_history(self.run_id, key):
                self._logged.add((key, metric.step))

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, step) for key, value in values.items()
            if (key, step) not in self._logged
        ]
        for start in range(0, len(metrics), _BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[start:start + _BATCH])
        self._logged.update((metric.key, step) for metric in metrics)

    def _log_epochs(self, rows: list[dict]) -> None:
        for step, row in enumerate(rows, start=1):  # the global step: its row in history.csv
            values = {
                _key(f"{row['phase']}/{name}"): _number(value) for name, value in row.items()
                if name not in ("phase", "epoch") and _number(value) is not None
            }
            self._log(values, step)

    def _log_results(self) -> None:
        from mlflow.entities import Param

        from transferkit.run_folder import RunFolder

        run = RunFolder(self.folder)
        result = run.state().get("result") or {}
        metrics = read_json(run.metrics_path) if run.metrics_path.is_file() else {}
        step = len(run.history_rows())  # the last epoch's global step
        values = {_key(k): _number(v) for k, v in result.items()
                  if _FINAL.search(k) and _number(v) is not None}
        per_class = metrics.get("per_class") or metrics.get("per_label") or {}  # or per label
        for name, scores in per_class.items():
            for measure in ("f1", "precision", "recall"):
                values[_key(f"{measure}/{name}")] = float(scores[measure])
        calibration = metrics.get("calibration") or {}
        for name, numbers in calibration.items():  # temperature, then per split ECE and NLL
            if name == "temperature":
                values["temperature"] = float(numbers)
                continue
            for measure in ("ece_before", "ece_after", "nll_before", "nll_after"):
                values[_key(f"calibration/{name}/{measure}")] = float(numbers[measure])
        self._log(values, step)
        data = read_json(run.data_path) if run.data_path.is_file() else {}
        params = [Param(_key(f"data.{k}"), str(v)[:6000]) for k, v in _data_params(data).items()]
        for start in range(0, len(params), _PARAM_BATCH):
            self._client.log_batch(self.run_id, params=params[start:start + _PARAM_BATCH])
        if data:
            self._log_dataset(data)
        split = result.get("report_split", "validation")
        self._client.set_tag(self.run_id, "transferkit.report_split", split)
        if run.report_dir.is_dir():
            self._client.log_artifacts(self.run_id, os.fspath(run.report_dir), "report")
        for path in (run.history_path, run.config_path):
            if path.is_file():
                self._client.log_artifact(self.run_id, os.fspath(path))

    def _log_dataset(self, data: dict) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        source = data.get("root") or data.get("path") or ""
        digest = str(data.get("content_sha256") or "")[:16] or "unknown"
        profile = {key: data[key] for key in ("class_counts", "classes") if key in data}
        dataset = Dataset(
            name=Path(source).name or "data", digest=digest, source_type="local",
            source=json.dumps({"uri": source}), profile=json.dumps(profile, default=str)[:5000],
        )
        context = InputTag("mlflow.data.context", "training")
        self._client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, tags=[context])])

    def _log_model(self, model, example) -> None:
        log_keras_model(self._client, self.run_id, model, example)

    def _register(self) -> None:
        self.version = register_run_model(self._client, self.run_id, self.register)
        self._save(model_version=self.version)

    def _end(self, status: str) -> None:
        if self.run_id is None or self._client is None:
            return
        self._client.set_terminated(self.run_id, status=status)
        self._save(pending=False, error=None, status=status)


def input_example(task: str, items) -> Any:
    """A small input for the logged model's example: two texts, or the first image shrunk to at
    most 32 pixels a side (the model takes images of any size). None if there is none to make."""
    import numpy as np

    items = list(items[:2])
    if not items:
        return None
    if task == "text":
        return np.asarray([str(item) for item in items])
    try:
        from PIL import Image

        with Image.open(items[0]) as image:
            image = image.convert("RGB")
            image.thumbnail((32, 32))
            return np.asarray(image, dtype="float32")[None]
    except (OSError, TypeError, ValueError, AttributeError):
        return None


def _data_params(data: dict) -> dict[str, Any]:
    """data.json's facts as flat params: scalars, and counts per split and class."""
    params = {key: value for key, value in data.items()
              if isinstance(value, (str, int, float, bool)) or value is None}
    for split, counts in (data.get("class_counts") or {}).items():
        for name, count in counts.items():
            params[f"count.{split}.{name}"] = count
    for key in ("skipped", "duplicates"):
        if isinstance(data.get(key), list):
            params[f"{key}_count"] = len(data[key])
    return params


def log_keras_model(mlflow_client, run_id: str, model, example=None) -> None:
    """Logs `model` (a transferkit classifier's Keras model) as the MLflow Keras model `model/` of
    run `run_id`, with its signature, `example` as input example, and pinned requirements."""
    import mlflow.keras

    with tempfile.TemporaryDirectory(prefix="transferkit-mlflow-") as temp:
        path = Path(temp) / "model"
        path.mkdir()
        mlflow.keras.save_model(
            model, os.fspath(path), signature=_signature(model), input_example=example,
            pip_requirements=_requirements(), metadata=_outputs_metadata(model),
        )
        mlflow_client.log_artifacts(run_id, os.fspath(path), "model")
    mlflow_client.set_tag(run_id, "transferkit.model_uri", f"runs:/{run_id}/model")


#: The name of the MLflow signature's output, per target: class probabilities (summing to one),
#: a probability per label (each on its own), or the predicted number in the target's units.
_OUTPUT_NAMES = {"single-label": "probabilities", "multi-label": "label_probabilities",
                 "regression": "value"}


def _signature(model):
    """The model's MLflow signature: its input (images of any size, or strings) and its output,
    named for its target (`_OUTPUT_NAMES`)."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from transferkit.layers import labels_layer

    spec = model.inputs[0]
    dtype = np.dtype(str) if "string" in str(spec.dtype) else np.dtype(str(spec.dtype))
    shape = (-1, *[-1 if size is None else int(size) for size in spec.shape[1:]])
    outputs = int(model.outputs[0].shape[-1])
    name = _OUTPUT_NAMES[labels_layer(model).target]
    return ModelSignature(
        inputs=Schema([TensorSpec(dtype, shape, spec.name)]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, outputs), name)]),
    )


def _outputs_metadata(model) -> dict:
    """What the output columns mean, for the MLmodel file's `metadata`: the target, the class or
    label of each column (the target's name for regression) and, multi-label, each label's
    threshold; a reader of the MLflow model needs them to turn rows into answers."""
    from transferkit.layers import labels_layer

    layer = labels_layer(model)
    found = {"transferkit_target": layer.target, "output_names": list(layer.class_names)}
    if layer.target == "multi-label" and layer.metadata.get("thresholds"):
        found["thresholds"] = [float(t) for t in layer.metadata["thresholds"]]
    return found


def _requirements() -> list[str]:
    """What loading the model needs, pinned to what trained it (not inferred: MLflow would load
    the model in a subprocess to find out, ~20 s): transferkit, Keras, KerasHub, the backend."""
    from importlib import metadata

    import keras

    found = []
    for name in ("transferkit", "keras", "keras-hub", keras.backend.backend()):
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def register_run_model(mlflow_client, run_id: str, name: str) -> str:
    """Registers the model logged in run `run_id` as a new version of `name` (created if
    missing), with the run's results in its description. Returns the version."""
    run = mlflow_client.get_run(run_id)
    try:
        mlflow_client.get_registered_model(name)
    except Exception:
        mlflow_client.create_registered_model(
            name, description="Trained with transferkit; versions come from `train --register` "
            "or `transferkit models register`."
        )
    version = mlflow_client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
        description=_description(run), tags={"transferkit.task": run.data.tags.get(
            "transferkit.task", "")},
    )
    return str(version.version)


def _description(run) -> str:
    """The version's description: "validation accuracy 0.9750, macro F1 0.9740;
    efficientnet_lite0; run images-20240501-120000"."""
    metrics, tags = run.data.metrics, run.data.tags
    split = tags.get("transferkit.report_split", "validation")
    parts = []
    for name in ("accuracy", "micro_f1", "mae"):  # the target's headline number
        if f"{split}_{name}" in metrics:
            parts.append(f"{split} {name.replace('_', ' ')} {metrics[f'{split}_{name}']:.4f}")
    if "macro_f1" in metrics:
        parts.append(f"macro F1 {metrics['macro_f1']:.4f}")
    model = tags.get("transferkit.backbone") or tags.get("transferkit.encoder")
    where = f"run {tags.get('mlflow.runName', run.info.run_id)}"
    return "; ".join(p for p in (", ".join(parts), model, where) if p)
