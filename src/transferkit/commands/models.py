"""`transferkit predict` and `transferkit evaluate`: use a trained classifier (image or text)."""

from __future__ import annotations

from transferkit.commands import MODEL_HELP, print_json


def add_commands(subparsers, train) -> None:
    predict = subparsers.add_parser(
        "predict", help="label images or texts with a classifier trained by transferkit"
    )
    predict.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    predict.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files (image models) or texts (text models)"
    )
    predict.add_argument("--json", action="store_true", help="print a JSON list")
    predict.set_defaults(handler=run_predict)

    evaluate = subparsers.add_parser(
        "evaluate", help="measure a trained classifier on labelled data"
    )
    evaluate.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    evaluate.add_argument(
        "data", metavar="DATA", help="a folder of class sub-folders (images) or a table (text)"
    )
    evaluate.add_argument("--report-dir", default=None, help="also write the report PNGs and metrics here")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=run_evaluate)


def run_predict(args) -> int:
    from transferkit.tasks.base import load

    classifier = load(args.model)
    results = classifier.predict(args.inputs)
    if args.json:
        print_json(results)
        return 0
    for item, result in zip(args.inputs, results):
        shown = result.get("path", item)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        print(f"{result['label']:<20} {result['score']:6.1%}  {shown}")
    return 0


def run_evaluate(args) -> int:
    from transferkit.tasks.base import load

    classifier = load(args.model)
    metrics = classifier.evaluate(args.data, report_dir=args.report_dir)
    if args.json:
        print_json(metrics)
        return 0
    skipped = f"; {metrics['num_skipped']} skipped (see --json)" if metrics["num_skipped"] else ""
    print(
        f"accuracy {metrics['accuracy']:.4f} on {metrics['n']} examples "
        f"({len(metrics['classes'])} classes){skipped}"
    )
    if args.report_dir:
        print(f"Report: {args.report_dir}")
    return 0
