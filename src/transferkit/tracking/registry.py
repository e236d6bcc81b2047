"""Runs and registered models in MLflow, as plain data: what `transferkit runs` and
`transferkit models` print.

```
list_runs(track, experiment)          transferkit's runs in a store, best first
upload_run(run_dir, track, ...)       logs a run folder (one whose store was away, or never
                                      tracked) from its files; a tracked one continues its run
register(run_or_model, name, track)   a new version of NAME from a run folder, an MLflow run or a
                                      .keras file, with the run's results in its description
list_models(name, track)              registered models and their versions, with aliases
promote(name, version, alias, track)  points alias (e.g. champion) at a version
```

Every function takes `track` as `transferkit.tracking.store.tracking_uri` does (None:
`$MLFLOW_TRACKING_URI`, else `./mlflow.db`).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from pathlib import Path

from transferkit.errors import InputError, TrackingError
from transferkit.tracking.store import client, describe, experiment_id, talking_to, tracking_uri

__all__ = ["list_runs", "upload_run", "register", "list_models", "promote", "KEY_PARAMS"]

#: The params `transferkit runs` shows (those a run has).
KEY_PARAMS = ("epochs", "fine_tune_epochs", "learning_rate", "fine_tune_learning_rate",
              "augment", "image_size", "max_length", "batch_size")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _date(milliseconds) -> str | None:
    if not milliseconds:
        return None
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000)
    return moment.isoformat(sep=" ", timespec="seconds")


def _experiments(mlflow_client, uri: str, name: str | None) -> dict[str, str]:
    """experiment id -> name: the one called `name`, or all of them."""
    if name is None:
        return {e.experiment_id: e.name for e in mlflow_client.search_experiments()}
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        known = sorted(e.name for e in mlflow_client.search_experiments())
        raise InputError(
            f"No experiment {name!r} in {describe(uri)}. Known: {', '.join(known) or 'none'}."
        )
    return {found.experiment_id: found.name}


def list_runs(track=None, experiment: str | None = None) -> list[dict]:
    """transferkit's runs in the store (those with a `transferkit.task` tag), best first: the
    accuracy on each run's report split, then the newest.

    Returns:
        One dict per run: `run_id`, `experiment`, `run_name`, `started`, `status`, `task`,
        `model` (backbone or encoder), `params` (the `KEY_PARAMS` it has), `split`, `accuracy`,
        `macro_f1`, `seconds`, `run_dir`.
    """
    uri = tracking_uri(track)
    mlflow_client = client(uri)
    with talking_to(uri):
        experiments = _experiments(mlflow_client, uri, experiment)
        runs = mlflow_client.search_runs(list(experiments), max_results=10000) if experiments else []
    rows = []
    for run in runs:
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        if "transferkit.task" not in tags:
            continue
        split = tags.get("transferkit.report_split")
        rows.append({
            "run_id": run.info.run_id,
            "experiment": experiments.get(run.info.experiment_id),
            "run_name": tags.get("mlflow.runName", ""),
            "started": _date(run.info.start_time),
            "status": run.info.status,
            "task": tags["transferkit.task"],
            "model": tags.get("transferkit.backbone") or tags.get("transferkit.encoder"),
            "params": {k: params[k] for k in KEY_PARAMS if params.get(k) not in (None, "None")},
            "split": split,
            "accuracy": metrics.get(f"{split}_accuracy") if split else None,
            "macro_f1": metrics.get("macro_f1"),
            "seconds": metrics.get("seconds"),
            "run_dir": tags.get("transferkit.run_dir"),
        })
    rows.sort(key=lambda r: (r["accuracy"] is not None, r["accuracy"] or 0, r["started"] or ""),
              reverse=True)
    return rows


def upload_run(run_dir: str | os.PathLike, track=None, experiment: str | None = None,
               register_as: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Logs a run folder to MLflow from its files: the config, every epoch, and once it has
    finished its results, report and model. A run tracked before continues its MLflow run (only
    what is missing is logged), unless `track` names another store.

    Returns:
        Where it went: `uri`, `experiment`, `run_id`, `registered`, `finished`.

    Raises:
        InputError: `run_dir` is not a run folder. TrackingError: the store refused or is away.
    """
    from transferkit.run_folder import RunFolder
    from transferkit.tracking.tracker import RunTracker

    folder = Path(run_dir)
    run = RunFolder(folder)
    if not run.is_run():
        raise InputError(f"{folder}: not a run folder of `transferkit train` (no config.json).")
    config = run.load_config()
    task = config.pop("task", "")
    saved = RunTracker.saved(folder)
    tracker = RunTracker.for_run(
        folder, track=track if (track is not None or saved) else True, experiment=experiment,
        register=register_as, log=log, reuse=track is None,
        default_experiment=Path(str(config.get("data") or task)).stem,
    )
    tracker.warn = False
    tracker.start(config, task)
    tracker.sync()
    finished = "result" in run.state() and run.model_path.is_file()
    if finished:
        from transferkit.tracking.tracker import input_example
        from transferkit.training.io import load_model

        model = load_model(run.model_path)
        summary = tracker.finish(model, input_example(task, _example_items(task, config)))
    else:
        summary = tracker.close("KILLED")
    if tracker.failed is not None:
        raise TrackingError(f"{folder} was not uploaded: {tracker.failed}") from tracker.failed
    return {**summary, "finished": finished}


def _example_items(task: str, config: dict) -> list:
    """Inputs for the logged model's example, from the run's data (none if it is gone)."""
    data = config.get("data")
    try:
        if task == "images":
            from transferkit.data.images import IMAGE_EXTENSIONS

            for path in sorted(Path(data).rglob("*")):
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    return [str(path)]
            return []
        from transferkit.data.text import read_text_table

        table = read_text_table(data, config.get("text_column"), require_labels=False)
        return list(table.texts[:2])
    except (InputError, OSError, TypeError):
        return []


def register(run_or_model: str | os.PathLike, name: str, track=None,
             log: Callable[[str], None] = print) -> dict:
    """A new version of registered model `name`, from a run folder (logged first if it never
    was, or is pending), an MLflow run (`RUN_ID`, `runs:/RUN_ID/model`) or a `.keras` file.

    Returns:
        `name`, `version`, `uri` (`models:/NAME/VERSION`), `run_id`.
    """
    from transferkit.run_folder import RunFolder
    from transferkit.tracking.tracker import RunTracker, register_run_model

    text = os.fspath(run_or_model)
    folder = Path(text)
    run = RunFolder.of_model(folder) if folder.is_file() else RunFolder(folder)
    if run is not None and run.is_run():
        folder = run.path
        saved = RunTracker.saved(folder)
        uri = tracking_uri(track) if track is not None else saved.get("uri") or tracking_uri(None)
        if not (saved.get("run_id") and saved.get("uri") == uri and saved.get("status") == "FINISHED"
                and not saved.get("pending")):
            done = upload_run(folder, track=uri, register_as=name, log=log)
            return _registered(name, done["registered"], done["run_id"], uri)
        run_id = saved["run_id"]
    elif text.startswith("runs:/") or _RUN_ID.match(text):
        uri = tracking_uri(track)
        run_id = text[len("runs:/"):].split("/", 1)[0] if text.startswith("runs:/") else text
    elif folder.is_file() and folder.suffix == ".keras":
        uri = tracking_uri(track)
        run_id = _log_model_file(folder, uri)
    else:
        raise InputError(
            f"{text}: not a run folder, MLflow run id or .keras file. Pass what `transferkit "
            "train` wrote (the run folder), or `runs:/RUN_ID/model`."
        )
    mlflow_client = client(uri)
    with talking_to(uri):
        version = register_run_model(mlflow_client, run_id, name)
    return _registered(name, f"models:/{name}/{version}", run_id, uri)


def _registered(name: str, uri_of_version: str | None, run_id: str, uri: str) -> dict:
    version = uri_of_version.rsplit("/", 1)[-1] if uri_of_version else None
    return {"name": name, "version": version, "uri": uri_of_version, "run_id": run_id,
            "store": uri}


def _log_model_file(path: Path, uri: str) -> str:
    """Logs a `.keras` file that belongs to no run folder in a new run of experiment
    `transferkit-models`. Returns the run id."""
    from transferkit.layers import ClassLabels
    from transferkit.tracking.tracker import log_keras_model
    from transferkit.training.io import load_model

    model = load_model(path)
    labels = [layer for layer in model.layers if isinstance(layer, ClassLabels)]
    if not labels:
        raise InputError(f"{path}: not a transferkit classifier (no ClassLabels layer).")
    mlflow_client = client(uri)
    with talking_to(uri):
        experiment = experiment_id(mlflow_client, uri, "transferkit-models")
        run = mlflow_client.create_run(experiment, tags={
            "mlflow.runName": path.stem, "transferkit.task": labels[-1].task,
            "transferkit.model_file": os.fspath(path.resolve()),
        })
        log_keras_model(mlflow_client, run.info.run_id, model)
        mlflow_client.set_terminated(run.info.run_id)
    return run.info.run_id


def list_models(name: str | None = None, track=None) -> list[dict]:
    """Registered models (or the one called `name`) with their versions, newest first.

    Returns:
        One dict per version: `name`, `version`, `aliases`, `description`, `run_id`,
        `created`, `uri` (`models:/NAME/VERSION`).
    """
    uri = tracking_uri(track)
    mlflow_client = client(uri)
    with talking_to(uri):
        if name is not None:
            try:
                models = [mlflow_client.get_registered_model(name)]
            except Exception:
                known = sorted(m.name for m in mlflow_client.search_registered_models())
                raise InputError(
                    f"No registered model {name!r} in {describe(uri)}. Known: "
                    f"{', '.join(known) or 'none'}."
                ) from None
        else:
            models = list(mlflow_client.search_registered_models())
        rows = []
        for model in models:
            aliases: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            query = "name='{}'".format(model.name.replace("'", "\\'"))
            for version in mlflow_client.search_model_versions(query):
                rows.append({
                    "name": model.name, "version": str(version.version),
                    "aliases": sorted(aliases.get(str(version.version), [])),
                    "description": version.description or "", "run_id": version.run_id,
                    "created": _date(version.creation_timestamp),
                    "uri": f"models:/{model.name}/{version.version}",
                })
    rows.sort(key=lambda r: (r["name"], -int(r["version"])))
    return rows


def promote(name: str, version: str | int, alias: str, track=None) -> dict:
    """Points `alias` of registered model `name` at `version` (moving it from any other).

    Returns:
        `name`, `version`, `alias`, `uri` (`models:/NAME@ALIAS`), `previous` (the version the
        alias pointed at, or None).
    """
    if not re.fullmatch(r"[A-Za-z_][\w-]*", alias or "") or alias.lower() == "latest":
        raise InputError(
            f"`alias` must be a name such as champion (letters, digits, _ and -; not 'latest'). "
            f"Received: {alias!r}."
        )
    uri = tracking_uri(track)
    mlflow_client = client(uri)
    with talking_to(uri):
        try:
            mlflow_client.get_model_version(name, str(version))
        except Exception:
            versions = sorted(int(v.version) for v in mlflow_client.search_model_versions(
                "name='{}'".format(name.replace("'", "\\'"))))
            raise InputError(
                f"Registered model {name!r} has no version {version} in {describe(uri)}"
                + (f" (versions: {', '.join(map(str, versions))})." if versions else ".")
            ) from None
        previous = None
        try:
            previous = mlflow_client.get_model_version_by_alias(name, alias).version
        except Exception:
            previous = None
        mlflow_client.set_registered_model_alias(name, alias, str(version))
    return {"name": name, "version": str(version), "alias": alias,
            "uri": f"models:/{name}@{alias}", "previous": previous}
