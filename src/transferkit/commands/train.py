"""`transferkit train images` and `transferkit train text`: flags from the config dataclasses.

Every setting of `ImageTrainConfig` / `TextTrainConfig` is a flag of the same name (`epochs` ->
`--epochs`), with its help text and default from the dataclass; `--config FILE` reads the same
settings from a TOML or JSON file, and flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys

from transferkit.commands import print_json
from transferkit.config import ENCODER_DEFAULT, ImageTrainConfig, TextTrainConfig

# kind -> (pipeline "module:function", config class, help, description)
TRAIN_COMMANDS = {
    "images": (
        "transferkit.pipelines.images:train_images",
        ImageTrainConfig,
        "train an image classifier on a folder of class sub-folders",
        "Transfer learning on images: a frozen pretrained backbone, a head trained on cached "
        "features, then fine-tuning. Writes RUN_DIR/model.keras and RUN_DIR/report/.",
    ),
    "text": (
        "transferkit.pipelines.text:train_text",
        TextTrainConfig,
        "train a text classifier (GloVe + BiLSTM, or a MiniLM sentence encoder)",
        "Transfer learning on texts: DATA is a CSV, TSV, JSON Lines or Parquet table with a text "
        "column and a label column. Writes RUN_DIR/model.keras (strings in, classes out), "
        "checkpoints, TensorBoard logs and RUN_DIR/report/.",
    ),
}


def default_in_words(config_class, name: str) -> str:
    """A setting's default for `--help`; for the encoder's defaults, each kind's value."""
    text = config_class.default_text(name)
    if text == ENCODER_DEFAULT:
        from transferkit.backbones.text_encoders import describe_default

        return describe_default(name)
    return text


def add_config_flags(parser, config_class) -> None:
    """One flag per field of `config_class` (`data` is the positional DATA), defaults `None`: the
    dataclass fills what is not given, so no default is written here."""
    for item in dataclasses.fields(config_class):
        meta = item.metadata
        text = f"{meta['help']} (default: {default_in_words(config_class, item.name)})"
        if not meta.get("flag", True):
            parser.add_argument(item.name, nargs="?", metavar=item.name.upper(), help=text)
            continue
        if meta["type"] is bool:  # --calibrate / --no-calibrate
            parser.add_argument(
                "--" + item.name.replace("_", "-"), dest=item.name, default=None, help=text,
                action=argparse.BooleanOptionalAction,
            )
            continue
        parser.add_argument(
            "--" + item.name.replace("_", "-"), dest=item.name, type=meta["type"],
            choices=meta.get("choices"), default=None, help=text,
        )


def add_commands(subparsers, train) -> None:
    for kind, (target, config_class, text, description) in TRAIN_COMMANDS.items():
        parser = train.add_parser(kind, help=text, description=description)
        add_config_flags(parser, config_class)
        parser.add_argument(
            "--config", metavar="FILE", help="TOML or JSON file of settings; flags override it"
        )
        parser.add_argument(
            "--output", metavar="RUN_DIR", help=f"the run folder (default: runs/{kind}-<time>)"
        )
        parser.add_argument(
            "--resume", metavar="RUN_DIR",
            help="continue an interrupted run from its last finished epoch, with its settings "
            "(flags of a phase it has not begun, such as --unfreeze before fine-tuning, change "
            "them)",
        )
        add_tracking_flags(parser)
        add_process_flags(parser)
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object of results as the last line"
        )
        parser.set_defaults(handler=functools.partial(run_train, kind))


def add_tracking_flags(parser) -> None:
    """`--track [URI]`, `--experiment NAME`, `--register NAME`: where MLflow records the run."""
    parser.add_argument(
        "--track", nargs="?", const=True, default=None, metavar="URI",
        help="log the run to MLflow: to URI (http://host:port, sqlite:///file.db), or without "
        "one to $MLFLOW_TRACKING_URI or the embedded store ./mlflow.db (needs "
        "transferkit[tracking]); a resumed tracked run goes on where it was",
    )
    parser.add_argument(
        "--experiment", metavar="NAME",
        help="the MLflow experiment (default: the data folder's or table's name)",
    )
    parser.add_argument(
        "--register", metavar="NAME",
        help="register the model in MLflow's model registry as a new version of NAME (implies "
        "--track)",
    )


def add_process_flags(parser) -> None:
    """`--coordinator`, `--num-processes`, `--process-id`: data-parallel training over several
    processes (one per machine, say), as `keras.distribution.initialize` takes them."""
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="with --distribute data-parallel over processes: process 0's address")
    parser.add_argument("--num-processes", type=int, metavar="N",
                        help="with --coordinator: how many processes train together")
    parser.add_argument("--process-id", type=int, metavar="I",
                        help="with --coordinator: this process's index, 0 to N-1 (0 writes)")


def run_train(kind: str, args) -> int:
    import importlib

    from transferkit.config import read_config_file

    target, config_class, _, _ = TRAIN_COMMANDS[kind]
    module, function = target.split(":")
    train = getattr(importlib.import_module(module), function)
    options = read_config_file(args.config) if args.config else {}
    config = config_class.from_dict(options, source=args.config or "") if options else None
    flags = {name: getattr(args, name) for name in config_class.names()}
    # With --json, stdout carries only the JSON line; progress goes to stderr.
    out = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    result = train(
        flags.pop("data"), output=args.output, resume=args.resume, config=config, log=log,
        verbose=0 if args.json else 2, track=args.track, experiment=args.experiment,
        register=args.register, processes=_processes(args), **flags,
    )
    summary = result.pop("summary", "")
    print("", file=out)
    print(summary.rstrip(), file=out)
    print(f"\nModel:  {result['model_path']}", file=out)
    print(f"Report: {result['report_dir']}", file=out)
    print(f"Time:   {result['seconds']:.0f} s", file=out)
    if args.json:
        print_json(result)
    return 0


def _processes(args) -> dict | None:
    given = {"coordinator": args.coordinator, "num_processes": args.num_processes,
             "process_id": args.process_id}
    return given if any(value is not None for value in given.values()) else None
