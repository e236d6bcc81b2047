"""The `transferkit` command line: parse, call the library, print. No logic of its own.

Each module in `transferkit.commands` adds its sub-commands with `add_commands(subparsers, train)`.
Errors that transferkit raises on purpose print one line and exit 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = (
    "transferkit.commands.backbones",
    "transferkit.commands.imagenet",
    "transferkit.commands.images",
    "transferkit.commands.text",
    "transferkit.commands.models",
    "transferkit.commands.demo",
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
    return parser


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

    if not args.debug:
        _start_backend_quietly()
    try:
        with catch_interrupts():
            result = args.handler(args)
    except TransferkitError as exc:
        if args.debug:
            raise
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("transferkit: interrupted", file=sys.stderr)
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
