"""`transferkit runs` and `transferkit models`: the runs MLflow remembers, and the model registry."""

from __future__ import annotations

from transferkit.commands import print_json

_TRACK_HELP = (
    "the MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the embedded store ./mlflow.db)"
)


def add_commands(subparsers, train) -> None:
    runs = subparsers.add_parser(
        "runs", help="list the runs logged to MLflow (train --track), best first",
        description="A table of transferkit's runs in an MLflow store, best accuracy first. "
        "`runs upload RUN_DIR` logs a run folder whose store was away (or that was not tracked).",
    )
    runs.add_argument("--experiment", metavar="NAME", help="only this experiment's runs")
    runs.add_argument("--track", metavar="URI", help=_TRACK_HELP)
    runs.add_argument("--json", action="store_true", help="print a JSON list")
    runs.set_defaults(handler=run_list_runs)
    actions = runs.add_subparsers(dest="runs_action", metavar="ACTION")
    upload = actions.add_parser("upload", help="log a run folder to MLflow from its files")
    upload.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `train`")
    upload.add_argument("--track", metavar="URI", help=_TRACK_HELP + "; a tracked run keeps its own")
    upload.add_argument("--experiment", metavar="NAME", help="for a run never tracked (default: "
                        "the data folder's or table's name)")
    upload.add_argument("--register", metavar="NAME", help="also register its model as NAME")
    upload.add_argument("--json", action="store_true", help="print the result as JSON")
    upload.set_defaults(handler=run_upload)

    models = subparsers.add_parser(
        "models", help="the MLflow model registry: register, list, promote",
        description="Registered models are used anywhere a model path is: "
        "transferkit predict models:/NAME@champion ...",
    )
    actions = models.add_subparsers(dest="models_action", metavar="ACTION")
    models.set_defaults(handler=lambda args: models.error("choose register, list or promote"))
    register = actions.add_parser("register", help="a new version of NAME from a run or model")
    register.add_argument("run_or_model", metavar="RUN_OR_MODEL",
                          help="a run folder, an MLflow run id (or runs:/ID/model), or a .keras file")
    register.add_argument("name", metavar="NAME", help="the registered model's name")
    register.add_argument("--track", metavar="URI", help=_TRACK_HELP)
    register.add_argument("--json", action="store_true", help="print the result as JSON")
    register.set_defaults(handler=run_register)
    listing = actions.add_parser("list", help="registered models, their versions and aliases")
    listing.add_argument("name", nargs="?", metavar="NAME", help="only this model")
    listing.add_argument("--track", metavar="URI", help=_TRACK_HELP)
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=run_list_models)
    promote = actions.add_parser("promote", help="point an alias (e.g. champion) at a version")
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--alias", default="champion", help="the alias (default: champion)")
    promote.add_argument("--track", metavar="URI", help=_TRACK_HELP)
    promote.add_argument("--json", action="store_true", help="print the result as JSON")
    promote.set_defaults(handler=run_promote)


def _as_json(args, data) -> bool:
    """Prints `data` as one JSON line when `--json` was given; returns whether it did."""
    if args.json:
        print_json(data)
    return bool(args.json)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_list_runs(args) -> int:
    from transferkit.tracking.registry import list_runs
    from transferkit.tracking.store import describe, tracking_uri

    rows = list_runs(args.track, args.experiment)
    if _as_json(args, rows):
        return 0
    if not rows:
        print(f"No transferkit runs in {describe(tracking_uri(args.track))}. Log some with "
              "`transferkit train ... --track`.")
        return 0
    table = [["started", "experiment", "run", "model", "params", "split", "accuracy", "macro F1",
              "time", "status"]]
    for row in rows:
        params = " ".join(f"{k}={v}" for k, v in row["params"].items())
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.0f} s"
        table.append([row["started"] or "-", row["experiment"] or "-", row["run_name"],
                      row["model"] or "-", params, row["split"] or "-", _number(row["accuracy"]),
                      _number(row["macro_f1"]), seconds, row["status"]])
    print(_table(table))
    print(f"\n{len(rows)} runs in {describe(tracking_uri(args.track))}")
    return 0


def run_upload(args) -> int:
    from transferkit.tracking.registry import upload_run

    result = upload_run(args.run_dir, args.track, args.experiment, args.register)
    if _as_json(args, result):
        return 0
    state = "finished" if result["finished"] else "not finished: config and epochs only"
    print(f"Uploaded {args.run_dir} ({state}) as MLflow run {result['run_id']} to {result['uri']}")
    if result.get("registered"):
        print(f"Registered: {result['registered']}")
    return 0


def run_register(args) -> int:
    from transferkit.tracking.registry import register

    result = register(args.run_or_model, args.name, args.track)
    if _as_json(args, result):
        return 0
    print(f"Registered {result['uri']} (run {result['run_id']}). Promote it with: transferkit "
          f"models promote {result['name']} {result['version']} --alias champion")
    return 0


def run_list_models(args) -> int:
    from transferkit.tracking.registry import list_models

    rows = list_models(args.name, args.track)
    if _as_json(args, rows):
        return 0
    if not rows:
        print("No registered models. Register one with `transferkit train ... --register NAME` or "
              "`transferkit models register RUN_DIR NAME`.")
        return 0
    table = [["model", "version", "aliases", "created", "description"]]
    for row in rows:
        table.append([row["name"], row["version"], ",".join(row["aliases"]) or "-",
                      row["created"] or "-", row["description"]])
    print(_table(table))
    return 0


def run_promote(args) -> int:
    from transferkit.tracking.registry import promote

    result = promote(args.name, args.version, args.alias, args.track)
    if _as_json(args, result):
        return 0
    moved = f" (was version {result['previous']})" if result["previous"] else ""
    print(f"{result['uri']} -> version {result['version']}{moved}")
    return 0
