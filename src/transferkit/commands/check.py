"""`transferkit check DATA`: class counts, likely label errors and duplicates; no training."""

from __future__ import annotations

from transferkit.commands import print_json
from transferkit.config import TARGET_CHOICES, ImageTrainConfig, TextTrainConfig


def add_commands(subparsers, train) -> None:
    parser = subparsers.add_parser(
        "check", help="check a data folder or table: class counts, label errors, duplicates",
        description="Computes the frozen features (cached, as training would), then reports "
        "class counts, likely label errors of every example (confident learning on out-of-fold "
        "heads) and exact and near duplicates (feature cosine >= 0.98) inside and across "
        "splits. Trains and saves no model.",
    )
    parser.add_argument("data", metavar="DATA", help="a folder of class sub-folders, a table of "
                        "texts, or a table of image paths")
    parser.add_argument("--backbone", default=ImageTrainConfig.backbone,
                        help=f"image backbone (default: {ImageTrainConfig.backbone})")
    parser.add_argument("--encoder", default=TextTrainConfig.encoder,
                        help="sentence encoder for a table (default: minilm)")
    parser.add_argument("--text-column", default=None,
                        help="a table's text column (default: text, sentence or review)")
    parser.add_argument("--label-column", default=None,
                        help="a table's label column (default: the target's: label or "
                        "sentiment, labels, target); for multi-label also 0/1 columns separated "
                        "by commas")
    parser.add_argument("--path-column", default=None,
                        help="a table of images: its column of paths, relative to the table "
                        "(default: path)")
    parser.add_argument("--target", default=None, choices=TARGET_CHOICES,
                        help="single-label, multi-label or regression, as in `train` (default: "
                        "from the data: a labels column is multi-label, a target column "
                        "regression)")
    parser.add_argument("--seed", type=int, default=ImageTrainConfig.seed,
                        help="seed of the train/validation split, as in `train`")
    parser.add_argument("--output", metavar="DIR",
                        help="where the files go (default: checks/<data>-<time>)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from transferkit.pipelines.check import check_data

    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    result = check_data(args.data, output=args.output, backbone=args.backbone,
                        encoder=args.encoder, text_column=args.text_column,
                        label_column=args.label_column, path_column=args.path_column,
                        target=args.target, seed=args.seed, log=log)
    if args.json:
        print_json(result)
    return 0
