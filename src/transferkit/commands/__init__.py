"""Sub-commands of the `transferkit` CLI; each module has `add_commands(subparsers, train)`."""

import json
import sys

#: The help of every MODEL argument.
MODEL_HELP = (
    "a .keras file or run folder from `train`, or a model in MLflow: models:/NAME@ALIAS, "
    "models:/NAME/VERSION (from $MLFLOW_TRACKING_URI, else ./mlflow.db)"
)


def print_json(data) -> None:
    """Prints `data` as one line of JSON on stdout (the last line of a `--json` run)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()
