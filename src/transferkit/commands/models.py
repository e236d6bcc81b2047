"""`transferkit predict`, `embed` and `evaluate`: use a trained classifier or a backbone.

`predict MODEL INPUT...` prints labels; with `--output` (and `embed`) it runs a batch job into a
Parquet folder (`transferkit.batch.jobs`), locally or with `--ray` on Ray Data.
"""

from __future__ import annotations

from transferkit.commands import MODEL_HELP, print_json
from transferkit.reports.metrics import percent

_INPUT_HELP = (
    "image files, or texts (text models); with --output: a folder of images (recursive), a .txt "
    "file of image paths, or a table of texts (CSV, TSV, JSON Lines, Parquet; .txt: one a line)"
)


def add_commands(subparsers, train) -> None:
    predict = subparsers.add_parser(
        "predict", help="label images or texts with a classifier trained by transferkit"
    )
    predict.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help=_INPUT_HELP)
    predict.add_argument(
        "--output", default=None,
        help="write a Parquet folder (path, label, score, prob_<class>, error) instead of "
        "printing; a rerun with the same --output resumes",
    )
    _add_batch_flags(predict)
    predict.add_argument("--json", action="store_true", help="print a JSON list (or summary)")
    predict.set_defaults(handler=run_predict)

    from transferkit.batch.jobs import EMBED_FEATURES

    embed = subparsers.add_parser(
        "embed", help="feature vectors of many images or texts, into a Parquet folder"
    )
    embed.add_argument(
        "source", metavar="BACKBONE_OR_MODEL",
        help="an image backbone (`transferkit backbones`), a sentence encoder (minilm, a "
        "folder), or a trained model: " + MODEL_HELP,
    )
    embed.add_argument("inputs", nargs="+", metavar="INPUT", help=_INPUT_HELP)
    embed.add_argument("--output", required=True,
                       help="the Parquet folder to write (path or text, embedding, error)")
    embed.add_argument("--features", choices=("sentence", "layers"), default=EMBED_FEATURES,
                       help="sentence encoders: the sentence vector, or every layer's mean")
    _add_batch_flags(embed)
    embed.add_argument("--json", action="store_true", help="print the summary as JSON")
    embed.set_defaults(handler=run_embed)

    evaluate = subparsers.add_parser(
        "evaluate", help="measure a trained classifier on labelled data"
    )
    evaluate.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    evaluate.add_argument(
        "data", metavar="DATA", help="a folder of class sub-folders or a table of image paths "
        "and labels (images), or a table (text)"
    )
    evaluate.add_argument("--report-dir", default=None,
                          help="also write the report PNGs, metrics and skipped inputs here")
    evaluate.add_argument("--text-column", default=None,
                          help="text models: the table's text column (default: the training "
                          "column, else text, sentence or review)")
    evaluate.add_argument("--label-column", default=None,
                          help="the table's label column (default: the training column, else "
                          "label, sentiment...; labels or target for those targets)")
    evaluate.add_argument("--path-column", default=None,
                          help="image models: the table's column of image paths (default: the "
                          "training column, else path)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=run_evaluate)


def _add_batch_flags(parser) -> None:
    from transferkit.batch.jobs import SHARD_SIZE
    from transferkit.runtimes import RUNTIMES

    parser.add_argument("--batch-size", type=int, default=None,
                        help="inputs per forward pass (default: the model's, else 32)")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE,
                        help=f"inputs per Parquet piece (default {SHARD_SIZE})")
    parser.add_argument(
        "--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
        help="run on Ray Data: a cluster's address (auto, HOST:PORT, ray://HOST:10001), or none "
        "to start a local Ray (needs pip install 'transferkit[scale]')",
    )
    parser.add_argument("--workers", type=int, default=None,
                        help="Ray actors, one model each (default: one per two CPUs)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                        help="what runs an image backbone (default auto: ONNX Runtime if faster)")
    parser.add_argument("--text-column", default=None,
                        help="a table's text column (default: text, sentence or review)")


def _batch_options(args) -> dict:
    options = {"batch_size": args.batch_size, "shard_size": args.shard_size, "ray": args.ray,
               "workers": args.workers, "text_column": args.text_column, "log": _note}
    if args.runtime is not None:
        options["runtime"] = args.runtime
    return options


def _note(line: str) -> None:
    """A line about the job itself (a killed job's lock taken over): on stderr, beside the
    progress bar, so that stdout holds only the summary (or its JSON)."""
    import sys

    print(line, file=sys.stderr, flush=True)


def _print_summary(summary: dict, args) -> int:
    if args.json:
        print_json(summary)
        return 0
    resumed = f", {summary['resumed']} done before (resumed)" if summary["resumed"] else ""
    rate = summary["items_per_second"]
    speed = f" in {summary['seconds']:.1f} s ({rate:,.1f}/s)" if summary["done"] else ""
    print(f"{summary['done']} of {summary['inputs']} inputs written{speed}{resumed}: "
          f"{summary['output']}")
    if summary["changed"]:
        print(f"{summary['changed']} computed again: their input changed since the last run "
              "(same path, other content)")
    if summary["errors"]:
        print(f"{summary['errors']} could not be read: their rows have an `error` (scores empty)")
    if summary["skipped"]:
        print(f"{_skipped_line(summary['skipped'], 'left out before the job')}; listed in --json")
    return 0


def _skipped_line(skipped: list[dict], what: str = "skipped") -> str:
    """`"3 skipped: 2 not an image (a.jpg, ...), 1 missing label (line 7)"`: how many inputs
    were left out, for each reason, with the first of them."""
    from collections import Counter

    reasons = Counter(entry["reason"] for entry in skipped)
    parts = []
    for reason, count in reasons.most_common():
        first = next(entry for entry in skipped if entry["reason"] == reason)
        where = first["path"] if "path" in first else f"line {first.get('line')}"
        parts.append(f"{count} {reason} ({where}{', ...' if count > 1 else ''})")
    return f"{len(skipped)} {what}: " + ", ".join(parts)


def check_inputs(ref, inputs: list, purpose: str) -> None:
    """Refuses inputs of the other modality before the model loads (`check_kind`): the task is
    in the file's `config.json` (`ModelRef.task`), read once, without Keras."""
    from transferkit.batch.inputs import check_kind
    from transferkit.errors import InputError

    try:
        task = ref.task
    except InputError:
        return  # damaged, holding code, or not a transferkit classifier: `load` says which
    check_kind(task, inputs, purpose, model=ref.given)


def run_embed(args) -> int:
    from transferkit.batch.jobs import batch_embed

    summary = batch_embed(args.source, args.inputs, args.output, features=args.features,
                    progress=not args.json, **_batch_options(args))
    return _print_summary(summary, args)


def run_predict(args) -> int:
    if args.output is not None:
        from transferkit.batch.jobs import batch_predict

        summary = batch_predict(args.model, args.inputs, args.output, progress=not args.json,
                          **_batch_options(args))
        return _print_summary(summary, args)
    if args.ray or args.workers is not None:
        from transferkit.errors import InputError

        raise InputError("`ray` runs a batch job: add `output` (a Parquet folder to write).")
    from transferkit.checks import check_int
    from transferkit.model_ref import ModelRef
    from transferkit.tasks.base import load

    if args.batch_size is not None:  # before the model loads; 0 is refused, as -1 is
        check_int(args.batch_size, "batch_size", minimum=1)
    ref = ModelRef.resolve(args.model)  # once: MLflow is asked once, the file read once
    check_inputs(ref, args.inputs, "predict")
    classifier = load(ref)
    results = classifier.predict(args.inputs, batch_size=args.batch_size, skip_unreadable=True)
    if results and all("skipped" in result for result in results):
        from transferkit.data.image_inputs import unreadable_error

        raise unreadable_error([{"path": r["path"], "reason": r["skipped"]} for r in results])
    if args.json:
        print_json(results)
        return 0
    for item, result in zip(args.inputs, results):
        shown = result.get("path", item)
        if len(shown) > 60:
            shown = "..." + shown[-57:]  # the file name is the end of the path
        if "skipped" in result:
            print(f"{'skipped':<20} {'':>6}  {result['skipped']}")
        elif "value" in result:  # regression
            print(f"{result['value']:<20.6g} {'':>6}  {shown}")
        elif "labels" in result:  # multi-label: the set, each with its score
            chosen = ", ".join(f"{name} {percent(result['scores'][name]).strip()}"
                               for name in result["labels"]) or "(no label)"
            print(f"{chosen:<27}  {shown}")
        else:
            print(f"{result['label']:<20} {percent(result['score'])}  {shown}")
    return 0


def _headline(metrics: dict) -> str:
    """The evaluation in one line, for the target's kind of metrics."""
    target = metrics.get("target", "single-label")
    if target == "regression":
        return (f"MAE {metrics['mae']:.4g}, RMSE {metrics['rmse']:.4g}, R² "
                f"{metrics['r2'] if metrics['r2'] is None else round(metrics['r2'], 4)} on "
                f"{metrics['n']} examples (the mean predictor's MAE {metrics['mean_predictor_mae']:.4g})")
    if target == "multi-label":
        average = metrics["mean_average_precision"]
        return (f"micro F1 {metrics['micro_f1']:.4f}, macro F1 {metrics['macro_f1']:.4f}, mean AP "
                f"{'n/a' if average is None else f'{average:.4f}'} on {metrics['n']} examples "
                f"({len(metrics['classes'])} labels)")
    return (f"accuracy {metrics['accuracy']:.4f} on {metrics['n']} examples "
            f"({len(metrics['classes'])} classes)")


def run_evaluate(args) -> int:
    import os

    from transferkit.checks import check_output_folder
    from transferkit.errors import InputError
    from transferkit.model_ref import ModelRef
    from transferkit.tasks.base import load

    check_output_folder(args.report_dir, "report_dir")  # before the model loads
    ref = ModelRef.resolve(args.model)
    check_inputs(ref, [args.data], "evaluate")
    classifier = load(ref)
    columns = {"text_column": args.text_column, "label_column": args.label_column}
    if classifier.task != "text":
        if args.text_column:
            raise InputError(f"{args.model}: this is an image model; `text_column` is for text "
                             "models (their tables). An image table names `path_column`.")
        columns = {"path_column": args.path_column, "label_column": args.label_column}
        if os.path.isdir(args.data) and any(columns.values()):
            raise InputError(f"{args.model}: this is an image model and {args.data} is a folder "
                             "of class sub-folders; `path_column` and `label_column` are for a "
                             "table of image paths and labels.")
    elif args.path_column:
        raise InputError(f"{args.model}: this is a text model; `path_column` is for image "
                         "tables. A text table names `text_column`.")
    metrics = classifier.evaluate(args.data, report_dir=args.report_dir, **columns)
    if args.json:
        print_json(metrics)
        return 0
    print(_headline(metrics)
          + (f"; {metrics['num_skipped']} skipped" if metrics["num_skipped"] else ""))
    if metrics["skipped"]:
        where = metrics.get("files", {}).get("skipped") or "--json (or --report-dir)"
        print(f"{_skipped_line(metrics['skipped'])}; listed in {where}")
    if args.report_dir:
        print(f"Report: {args.report_dir}")
    return 0
