"""`tune --track`: the search in MLflow, as one parent run with a nested run per finished trial.

Logged once the search ends, from the study's storage: it holds every trial, whichever process
(or machine) ran it, so the runs are complete however the trials were shared. The parent run
carries what was tuned, the best trial's settings and scores, the defaults' scores, and the
files (`trials.csv`, `best.toml`, the plots, `summary.json`) as artifacts; each nested run its
trial's settings, loss, accuracy and epochs, tagged with its state (complete or pruned).
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["log_search"]

_EXPERIMENT = "transferkit-tune"


def _params(values: dict) -> list:
    from mlflow.entities import Param

    return [Param(str(key), str(value)[:6000]) for key, value in values.items()]


def _metrics(values: dict) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, 0) for key, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def log_search(study, summary: dict, output: Path, track, experiment: str | None) -> dict:
    """Logs the search to MLflow at `track` (True: the default store, or a URI). Returns
    `{"uri", "experiment", "run_id", "trials"}` (the nested runs logged)."""
    from transferkit.tracking.store import client, experiment_id, talking_to, tracking_uri

    uri = tracking_uri(track)
    mlflow_client = client(uri, "Tracking a search (`tune --track`)")
    name = experiment or _EXPERIMENT
    experiment_key = experiment_id(mlflow_client, uri, name)
    finished = [t for t in study.get_trials(deepcopy=False)
                if t.state.name in ("COMPLETE", "PRUNED")]
    with talking_to(uri):
        parent = mlflow_client.create_run(
            experiment_key, run_name=f"tune {summary['task']} {Path(summary['data']).name}",
            tags={"transferkit.task": f"tune-{summary['task']}",
                  "transferkit.study": summary["study"]}).info.run_id
        for trial in finished:
            child = mlflow_client.create_run(
                experiment_key, run_name=f"trial {trial.number}",
                tags={"mlflow.parentRunId": parent, "transferkit.trial_state":
                      trial.state.name.lower()}).info.run_id
            values = {"accuracy": trial.user_attrs.get("accuracy"),
                      "epochs": trial.user_attrs.get("epochs")}
            if trial.value is not None:
                values["loss"] = trial.value
            mlflow_client.log_batch(child, metrics=_metrics(values), params=_params(trial.params))
            mlflow_client.set_terminated(child, "FINISHED" if trial.state.name == "COMPLETE"
                                         else "KILLED")
        best, defaults = summary["best"], summary["defaults"] or {}
        mlflow_client.log_batch(
            parent, params=_params({**best["settings"], "data": summary["data"],
                                    "scored_on": summary["scored_on"]}),
            metrics=_metrics({"best_loss": best["loss"], "best_accuracy": best["accuracy"],
                              "defaults_loss": defaults.get("loss"),
                              "defaults_accuracy": defaults.get("accuracy"),
                              "trials": len(finished)}))
        for path in summary["files"].values():
            mlflow_client.log_artifact(parent, path)
        mlflow_client.log_artifact(parent, str(output / "summary.json"))
        mlflow_client.set_terminated(parent, "FINISHED")
    return {"uri": uri, "experiment": name, "run_id": parent, "trials": len(finished)}
