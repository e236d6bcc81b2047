"""Sub-commands of the `transferkit` CLI; each module has `add_commands(subparsers, train)`."""

import json
import sys


def print_json(data) -> None:
    """Prints `data` as one line of JSON on stdout (the last line of a `--json` run)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()
