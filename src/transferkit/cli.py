"""The `transferkit` command line: parse, call the library, print. No logic of its own.

Each module in `transferkit.commands` adds its sub-commands with `add_commands(subparsers, train)`.
Errors that transferkit raises on purpose print one line and exit 1; `--debug` shows the traceback.
Library messages name Python arguments in backticks (`` `fine_tune_epochs` ``); the one line
printed here names the command's flag instead (`--fine-tune-epochs`), or its positional argument.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

COMMAND_MODULES = (
    "transferkit.commands.backbones",
    "transferkit.commands.imagenet",
    "transferkit.commands.train",
    "transferkit.commands.check",
    "transferkit.commands.rank",
    "transferkit.commands.tune",
    "transferkit.commands.preview",
    "transferkit.commands.models",
    "transferkit.commands.explain",
    "transferkit.commands.export",
    "transferkit.commands.demo",
    "transferkit.commands.serve",
    "transferkit.commands.tracking",
)


def build_parser() -> argparse.ArgumentParser:
    from transferkit import __version__

    parser = argparse.ArgumentParser(
        prog="transferkit",
        description="Transfer learning on images and text with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when something fails"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    train_parser = subparsers.add_parser("train", help="train a classifier on images or text")
    train = train_parser.add_subparsers(dest="train_kind", metavar="KIND")
    train_parser.set_defaults(handler=lambda args: train_parser.error("choose `images` or `text`"))
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers, train)
    for command in (*subparsers.choices.values(), *train.choices.values()):
        command.set_defaults(flag_names=_flag_names(command))
    return parser


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Python argument name -> how this command spells it (`--fine-tune-epochs`, `DATA`)."""
    names = {}
    # argparse lists a parser's arguments nowhere else
    for action in parser._actions:  # noqa: SLF001
        if action.option_strings:
            names[action.dest] = max(action.option_strings, key=len)
        elif action.dest not in (argparse.SUPPRESS, "command", "train_kind"):
            names[action.dest] = action.metavar or action.dest.upper()
    return names


def command_line_message(message: str, flag_names: dict[str, str]) -> str:
    """`message` with each backticked Python argument this command has replaced by its flag."""
    return re.sub(
        r"`([a-z_]+)`",
        lambda match: flag_names.get(match.group(1), match.group(0)),
        message,
    )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from transferkit.errors import TransferkitError
    from transferkit.training.interrupts import catch_interrupts

    if not args.debug and not getattr(args, "ray", False):  # a Ray driver needs no Keras
        _start_backend_quietly()
    try:
        with catch_interrupts():
            result = args.handler(args)
    except TransferkitError as exc:
        if args.debug:
            raise
        message = command_line_message(str(exc), getattr(args, "flag_names", {}))
        print(f"transferkit: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"transferkit: interrupted{'; ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    return int(result or 0)


def _start_backend_quietly() -> None:
    """Starts Keras and its backend with the C++ start-up banner hidden.

    TensorFlow 2.21 logs through absl before its log level is read, so TF_CPP_MIN_LOG_LEVEL cannot
    silence the oneDNN and "no CUDA drivers" lines; they would bury our one-line messages. Python
    errors still surface: they are raised after stderr is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_logical_devices()  # creates the context now: the cuInit line goes too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
