"""`transferkit rank DATA`: LogME and k-NN accuracy of candidate backbones, best first."""

from __future__ import annotations

from transferkit.commands import print_json
from transferkit.config import ImageTrainConfig


def add_commands(subparsers, train) -> None:
    from transferkit.pipelines.rank import PER_CLASS

    parser = subparsers.add_parser(
        "rank", help="rank backbones (or text encoders) for a dataset by LogME and k-NN accuracy",
        description="Frozen features of a stratified sample of the training split, scored by "
        "LogME (You et al., ICML 2021) and 5-NN accuracy; no training unless --train-top.",
    )
    parser.add_argument("data", metavar="DATA", help="a folder of class sub-folders, or a table")
    parser.add_argument("--backbones", help="comma-separated candidates (default: every backbone "
                        "available offline; text: each packaged sentence encoder installed, "
                        "as minilm and minilm:layers, and glove)")
    parser.add_argument("--per-class", type=int, default=PER_CLASS,
                        help=f"examples of each class in the sample (default: {PER_CLASS})")
    parser.add_argument("--train-top", type=int, default=0, metavar="K",
                        help="train heads for the K best and add their accuracy (default: 0)")
    parser.add_argument("--text-column", default=None,
                        help="a table's text column (default: text, sentence or review)")
    parser.add_argument("--label-column", default=None,
                        help="a table's label column (default: label or sentiment)")
    parser.add_argument("--seed", type=int, default=ImageTrainConfig.seed,
                        help="seed of the split and the sample")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from rich.console import Console
    from rich.table import Table

    from transferkit.checks import check_int
    from transferkit.pipelines.rank import rank_backbones

    check_int(args.per_class, "per_class", minimum=2)
    check_int(args.train_top, "train_top", minimum=0)
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    names = [n.strip() for n in args.backbones.split(",") if n.strip()] if args.backbones else None
    result = rank_backbones(args.data, backbones=names, per_class=args.per_class,
                            train_top=args.train_top, text_column=args.text_column,
                            label_column=args.label_column, seed=args.seed, log=log)
    if args.json:
        print_json(result)
        return 0
    columns = ("backbone", "logme", "knn_accuracy", "feature_seconds", "parameters",
               "image_size", "trained_accuracy")
    table = Table(title=f"{result['kind']}: {result['examples']} examples, best LogME first")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in result["rows"]:
        cells = [row.get(c) for c in columns]
        if row.get("error"):
            cells[1] = row["error"]
        table.add_row(*["" if v is None else str(v) for v in cells])
    Console(width=160).print(table)
    return 0
