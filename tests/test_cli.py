"""The command line itself: help, one-line errors (with flag names), tracebacks with --debug."""

from __future__ import annotations

import os
import subprocess
import sys

from transferkit.cli import main


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err














def test_subprocess_error_has_no_traceback_and_debug_has_one(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "transferkit.cli", "predict-imagenet", str(tmp_path / "no.jpg")]
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 1
    assert "no.jpg: no such file" in quiet.stderr and "Traceback" not in quiet.stderr
    loud = subprocess.run(command[:3] + ["--debug"] + command[3:], capture_output=True, text=True, env=env, timeout=300)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "ImageReadError" in loud.stderr


def test_no_command_prints_help(capsys):
    code, out, _ = _run([], capsys)
    assert code == 2 and "predict-imagenet" in out


def test_messages_name_the_flags_of_the_command():
    from transferkit.cli import build_parser, command_line_message

    args = build_parser().parse_args(["train", "images", "data"])
    message = "`fine_tune_epochs` must be >= 0; see `data`, `unknown_name` and `image size`."
    assert command_line_message(message, args.flag_names) == (
        "--fine-tune-epochs must be >= 0; see DATA, `unknown_name` and `image size`."
    )
    # A name the command has no flag for stays as it is (`evaluate` writes no `output`); since
    # issue 16 `evaluate` takes the column flags its messages suggest.
    args = build_parser().parse_args(["evaluate", "model.keras", "data.csv"])
    assert command_line_message("Pass `output`.", args.flag_names) == "Pass `output`."
    assert command_line_message("Pass `label_column`.", args.flag_names) == "Pass --label-column."
