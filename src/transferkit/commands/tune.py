"""`transferkit tune images|text DATA`: Optuna's search over the head's settings on cached
features (`transferkit.tuning`), then optionally a training run with the best."""

from __future__ import annotations

from transferkit.commands import print_json
from transferkit.config import ImageTrainConfig


def add_commands(subparsers, train) -> None:
    parser = subparsers.add_parser(
        "tune", help="search the head's settings with Optuna on cached features",
        description="Trains many heads on the frozen backbone's cached features (Optuna: TPE "
        "sampler, median pruning on each epoch's loss), each scored on a split the final "
        "report never reads; writes trials.csv, best.toml (a --config file for train), the "
        "plots and summary.json. Running it again continues the study.",
    )
    parser.add_argument("kind", choices=("images", "text"), help="what DATA holds")
    parser.add_argument("data", metavar="DATA",
                        help="a folder of class sub-folders (images), or a table (text)")
    parser.add_argument("--trials", type=int, default=50,
                        help="finished trials the study should hold (default: 50)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="start no trial after this many seconds (default: no limit)")
    parser.add_argument("--backbones", default=None,
                        help="comma-separated candidates, searched too (default: "
                        f"{ImageTrainConfig.backbone} for images, minilm for text)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="the folder of the results (default: runs/tune-<time>)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage (default: sqlite:///DIR/tune.db; PostgreSQL or "
                        "MySQL URLs let several machines share the study)")
    parser.add_argument("--study", default=None, metavar="NAME",
                        help="the study's name in the storage (default: transferkit-tune)")
    parser.add_argument("--seed", type=int, default=ImageTrainConfig.seed,
                        help="seed of the splits, the sampler and the heads")
    parser.add_argument("--text-column", default=None,
                        help="a table's text column (default: text, sentence or review)")
    parser.add_argument("--label-column", default=None,
                        help="a table's label column (default: label or sentiment)")
    parser.add_argument("--folds", type=int, default=None,
                        help="cross-validation folds that choose between the two best trials "
                        "and the defaults (default: 5; 0: the scoring split's best)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trials trained at once in this process (threads; default: 1)")
    parser.add_argument("--train-best", action="store_true",
                        help="then train a run with best.toml into DIR/best-run")
    parser.add_argument("--track", nargs="?", const=True, default=None, metavar="URI",
                        help="log the search to MLflow: a parent run, a nested run per trial "
                        "(default store without URI)")
    parser.add_argument("--experiment", default=None,
                        help="the MLflow experiment (default: transferkit-tune)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from transferkit.tuning.study import STUDY_NAME, tune

    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    names = [n.strip() for n in args.backbones.split(",") if n.strip()] if args.backbones else None
    summary = tune(args.kind, args.data, trials=args.trials, timeout=args.timeout,
                   backbones=names, output=args.output, storage=args.storage,
                   study=args.study or STUDY_NAME, seed=args.seed, text_column=args.text_column,
                   label_column=args.label_column, train_best=args.train_best,
                   jobs=args.jobs, **({} if args.folds is None else {"folds": args.folds}),
                   track=args.track, experiment=args.experiment, log=log)
    if args.json:
        print_json(summary)
    return 0
