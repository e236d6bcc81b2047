"""`transferkit train images` and `transferkit train text`, run as a user runs them: flags from the
config dataclasses, `--config` files, `--json`, the run folder and report, resume, and one-line
errors that name the flags."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from transferkit.cli import build_parser, main
from transferkit.commands.train import default_in_words
from transferkit.config import ImageTrainConfig, TextTrainConfig
from transferkit.errors import InputError

IMAGE_KEYS = {
    "classes", "head_validation_accuracy", "validation_accuracy", "fine_tune_validation_accuracy",
    "model_path", "report_dir", "run_dir", "seconds", "skipped_files", "backbone", "macro_f1",
}
TEXT_KEYS = {
    "classes", "validation_accuracy", "test_accuracy", "head_test_accuracy",
    "fine_tune_test_accuracy", "model_path", "report_dir", "run_dir", "seconds", "dropped_rows",
    "vocabulary_coverage", "token_coverage", "splits", "macro_f1",
}
REPORT_FILES = {
    "curves.png", "confusion_matrix.png", "metrics.json", "summary.txt", "config.json",
    "history.csv", "data.json",
}


def _history(run) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_images_json_and_report(image_run):
    code, out, err, run, _ = image_run
    assert code == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])  # the JSON is the last line of stdout
    assert IMAGE_KEYS <= set(result) and "summary" not in result
    assert result["classes"] == ["face", "not_face"] and result["skipped_files"] == 1
    assert result["validation_accuracy"] == result["fine_tune_validation_accuracy"]
    assert "accuracy:" in err and "Report:" in err  # the summary goes to stderr with --json
    assert [r["phase"] for r in _history(run)] == ["head"] * 4 + ["fine_tune"]
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["n"] == 4 and set(metrics["per_class"]) == {"face", "not_face"}
    assert REPORT_FILES | {"mistakes.png", "augmentation.png"} <= {
        p.name for p in (run / "report").iterdir()
    }
    assert (run / "model.keras").is_file() and (run / "logs" / "head").is_dir()
    config = json.loads((run / "config.json").read_text())  # the dataclass, as JSON
    assert config.pop("task") == "images"
    assert ImageTrainConfig.from_dict(config).unfreeze == "5" and config["augment"] == "flip,zoom"
    data = json.loads((run / "report" / "data.json").read_text())
    assert data["skipped_files"] == 1 and data["skipped"][0]["path"].endswith("notes.txt")
    with Image.open(run / "report" / "curves.png") as image:
        assert image.size[0] > 400


def test_train_text_json_report_and_resume(text_run, tmp_path, capsys):
    code, out, err, run, table = text_run
    assert code == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert TEXT_KEYS <= set(result)
    assert result["classes"] == ["negative", "positive"] and result["dropped_rows"] == 2
    assert result["test_accuracy"] == result["fine_tune_test_accuracy"]
    assert result["vocabulary_coverage"] == 1.0
    assert result["splits"] == {"train": 42, "validation": 6, "test": 12}
    assert REPORT_FILES | {"mistakes.txt"} <= {p.name for p in (run / "report").iterdir()}
    data = json.loads((run / "report" / "data.json").read_text())
    assert data["dropped"]["empty_text"]["first_lines"] == [62]
    assert data["dropped"]["missing_label"]["first_lines"] == [63]
    assert data["coverage"]["vocabulary_coverage"] == 1.0
    assert "vocabulary coverage" in (run / "report" / "summary.txt").read_text()
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "text" and config["fine_tune_epochs"] == 1

    # Resuming a finished run trains nothing again and gives the same numbers. On a copy: the
    # shared run's model stays as trained for the tests that load it.
    run = shutil.copytree(run, tmp_path / "run")
    rows = (run / "history.csv").read_text()
    code, out, err = _run(["train", "text", "--resume", run, "--json"], capsys)
    assert code == 0 and "Resuming" in err
    assert (run / "history.csv").read_text() == rows
    assert json.loads(out.strip().splitlines()[-1])["test_accuracy"] == result["test_accuracy"]
    # A used folder is not overwritten by accident, and a run resumes only with its own command.
    with pytest.raises(InputError, match=r"already holds a run\. Pass it as `resume`"):
        main(["--debug", "train", "text", str(table), "--output", str(run)])
    code, _, err = _run(["train", "images", "--resume", run], capsys)
    assert code == 1 and "is a run of `train text`, not `train images`" in err


def test_config_file_and_flags(faces, tmp_path, capsys):
    (tmp_path / "c.toml").write_text('epochs = 1\nfine-tune-epochs = 0\naugment = "none"\n'
                                     'image_size = 48\nseed = 5\nbackbone = "test_cnn"\n')
    code, out, _ = _run(
        ["train", "images", faces, "--config", tmp_path / "c.toml", "--seed", "7",
         "--runtime", "onnx", "--output", tmp_path / "run"],
        capsys,
    )
    assert code == 0 and "Report:" in out
    assert re.search(r"features +\d+ s \(onnx\)", out)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["epochs"] == 1 and config["image_size"] == 48 and config["seed"] == 7
    assert config["runtime"] == "onnx" and config["backbone"] == "test_cnn"
    assert _history(tmp_path / "run")[-1]["epoch"] == "1"
    (tmp_path / "bad.toml").write_text("epoch = 3\n")
    code, _, err = _run(["train", "images", faces, "--config", tmp_path / "bad.toml"], capsys)
    assert code == 1 and "bad.toml: unknown setting(s) epoch for `train images`" in err
    (tmp_path / "text.json").write_text(json.dumps({"encoder": "glove-bilstm", "epochs": -2}))
    code, _, err = _run(["train", "text", faces, "--config", tmp_path / "text.json"], capsys)
    assert code == 1 and "--epochs must be an int >= 0. Received: epochs=-2." in err


def test_every_setting_is_a_flag_with_its_default_in_the_help():
    parser = build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    kinds = next(a for a in train._actions if a.dest == "train_kind").choices
    for kind, config_class in (("images", ImageTrainConfig), ("text", TextTrainConfig)):
        actions = {a.dest: a for a in kinds[kind]._actions}
        for item in dataclasses.fields(config_class):
            action = actions[item.name]
            assert action.default is None, item.name  # the dataclass fills unset flags
            assert f"(default: {default_in_words(config_class, item.name)})" in action.help
    assert default_in_words(ImageTrainConfig, "epochs") == (
        "20; 100 for multi-label and regression"
    )
    assert default_in_words(TextTrainConfig, "learning_rate") == (
        "0.0003 for glove-bilstm; 0.001 (0.0001 for regression) for sentence encoders"
    )
    assert default_in_words(TextTrainConfig, "epochs") == (
        "30 for glove-bilstm; 100 for sentence encoders"
    )
    assert default_in_words(TextTrainConfig, "word_vectors") == "glove-6b-50d for glove-bilstm"


def test_image_errors_are_one_line_and_leave_no_run_folder(tmp_path, capsys):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "data" / "a" / "x.png")
    code, _, err = _run(["train", "images", tmp_path / "data", "--output", tmp_path / "r"], capsys)
    assert code == 1 and not (tmp_path / "r").exists()
    assert err.startswith("transferkit: error: Empty class folder:") and err.count("\n") == 1
    code, _, err = _run(["train", "images", tmp_path / "data", "--unfreeze", "0"], capsys)
    assert code == 1 and "--unfreeze as a number of top layers must be >= 1 (to skip " \
        "fine-tuning, pass --fine-tune-epochs=0)" in err
    code, _, err = _run(["train", "images", tmp_path / "nope"], capsys)
    assert code == 1 and "nope: no such folder" in err
    code, _, err = _run(["train", "images"], capsys)
    assert code == 1 and "Pass the data to train on (DATA), or a run folder to --resume." in err
    code, _, err = _run(["train", "images", tmp_path / "data", "--augment", "blur"], capsys)
    assert code == 1 and "Unknown augmentation 'blur'" in err


def test_text_errors_name_the_flags(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("body,stars\nnice,5\nbad,1\n")
    process = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "train", "text", str(data)],
        capture_output=True, text=True, timeout=300, check=False,
        cwd=tmp_path,  # where a default run folder would go
    )
    assert process.returncode == 1
    assert not (tmp_path / "runs").exists()  # bad data leaves no run folder behind
    assert process.stderr.strip().splitlines()[-1] == (
        f"transferkit: error: {data}: no texts column found (looked for text, sentence, review). "
        "Choose one with --text-column. Columns: 'body', 'stars'."
    )


def test_text_settings_are_checked_before_a_run_folder_exists(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"t{i},a\n" for i in range(10)) + "u,b\nv,b\n")
    code, _, err = _run(["train", "text", data, "--output", tmp_path / "r1"], capsys)
    assert code == 1 and "column 'label': Classes too rare to split: 'b' (2 examples)" in err
    assert not (tmp_path / "r1").exists()
    code, _, err = _run(["train", "text", "--resume", tmp_path / "nothing"], capsys)
    assert code == 1 and "nothing: no such run folder. Pass a folder written by" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["train", "text", "--resume", tmp_path / "empty"], capsys)
    assert code == 1 and "is not a transferkit run folder: it has no config.json" in err
    # --features belongs to sentence encoders; refused before any run folder is made.
    ok = tmp_path / "ok.csv"
    ok.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    code, _, err = _run(["train", "text", ok, "--output", tmp_path / "r2", "--features",
                         "layers"], capsys)
    assert code == 1 and "--features is an option of sentence encoders, not of 'glove-bilstm'" in err
    assert not (tmp_path / "r2").exists()
    code, _, err = _run(["train", "text", ok, "--output", tmp_path / "r3", "--strategy",
                         "contrastive"], capsys)
    assert code == 1 and "strategy 'contrastive' tunes a sentence encoder" in err
    assert not (tmp_path / "r3").exists()
    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'cls'"
        main(["train", "text", str(ok), "--encoder", "minilm", "--features", "cls"])
    assert "argument --features: invalid choice: 'cls'" in capsys.readouterr().err


def test_a_few_shot_run_without_a_test_split_is_evaluated_on_another_table(bert_folder,
                                                                            tmp_path, capsys):
    """`--test-size 0`: 8 examples a class, none held out for a test (validation takes one a
    class), the encoder tuned on pairs first (`--strategy contrastive`); the report reads the
    validation split, `test_accuracy` is there and None, and the user measures the model on a
    table of their own with `evaluate`."""
    from transferkit.testing import write_table

    few = write_table(tmp_path / "few.csv", n=16, seed=1, bad_rows=False)
    held_out = write_table(tmp_path / "held_out.csv", n=40, seed=2, bad_rows=False)
    code, out, err = _run(["train", "text", few, "--encoder", bert_folder, "--test-size", "0",
                           "--epochs", "2", "--fine-tune-epochs", "0", "--output",
                           tmp_path / "run", "--strategy", "contrastive", "--contrastive-pairs",
                           "64", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["splits"] == {"train": 14, "validation": 2}
    assert result["strategy"] == "contrastive" and result["features"] == "sentence"
    assert result["contrastive"]["pairs"] == 64 and "Contrastive: tuning" in out + err
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert history[1].startswith("contrastive,1,") and any(r.startswith("head,") for r in history)
    assert result["report_split"] == "validation" and result["test_accuracy"] is None
    summary = (tmp_path / "run" / "report" / "summary.txt").read_text()
    assert "Text classifier" in summary
    # 2 validation texts choose no epoch: the head ran both and kept the last.
    assert "off: 2 validation examples, fewer than 50; all 2 epochs ran" in summary
    assert sum(r.startswith("head,") for r in history) == 2
    code, out, err = _run(["evaluate", tmp_path / "run", held_out, "--json"], capsys)
    assert code == 0, err
    evaluation = json.loads(out.strip().splitlines()[-1])
    assert evaluation["n"] == 40 and "accuracy" in evaluation
    code, _, err = _run(["train", "text", few, "--test-size", "-0.1"], capsys)
    assert code == 1 and "--test-size must be a number in [0, 1)" in err
