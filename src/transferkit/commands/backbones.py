"""`transferkit backbones`: the registry as a table or JSON."""

from __future__ import annotations

from transferkit.commands import print_json


def add_commands(subparsers, train) -> None:
    parser = subparsers.add_parser(
        "backbones", help="list the pretrained image backbones and whether they work offline"
    )
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'efficientnet*'")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from transferkit.backbones.registry import backbone_table

    rows = backbone_table(args.pattern)
    if args.json:
        print_json(rows)
        return 0
    table = Table(title=f"{len(rows)} backbones")
    for column in ("name", "family", "input", "features", "preprocessing", "available offline", "weights from"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["family"],
            str(row["default_input_size"]),
            str(row["feature_dim"]),
            row["preprocessing"]["mode"],
            "yes" if row["available_offline"] else "no",
            row["weights_source"],
        )
    Console(width=160).print(table)
    return 0
