"""A corpus of bad settings and paths for the small commands and the config files (issue 27):
each is refused before any work, in one line that says what was wrong and how to fix it, and
nothing is left behind; or it is measured and said, never silently changed."""

from __future__ import annotations

import json

import pytest

from transferkit.config import ImageTrainConfig, TextTrainConfig, read_config_file
from transferkit.errors import InputError


def _cli(argv) -> tuple[int, str, str]:
    from conftest import _run_cli

    return _run_cli(argv)


def _one_line(code: int, err: str) -> str:
    """The error line of a refused command: exit 1, one line, no traceback."""
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# -- config files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path, suffix):
    path = tmp_path / f"config{suffix}"
    text = "epochs = 3\n" if suffix == ".toml" else '{"epochs": 3}\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_config_file(path) == {"epochs": 3}


@pytest.mark.parametrize(("data", "line", "byte"), [
    (b"epochs = 3\n# caf\xe9 au lait\n", 2, "0xe9"),  # Latin-1
    (b"\xff\xfee\x00p\x00", 1, "0xff"),  # UTF-16
])
def test_a_config_file_not_in_utf8_names_the_line_and_the_fix(tmp_path, data, line, byte):
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    with pytest.raises(InputError, match=rf"config\.toml, line {line}: not valid UTF-8 \(byte "
                                         rf"{byte}\): the file is in another encoding, such as "
                                         r"Latin-1, Windows-1252 or UTF-16\. Re-save it as "
                                         r"UTF-8\.$"):
        read_config_file(path)


def test_a_latin1_config_on_the_command_line_is_one_line(tmp_path, vectors_file):
    config = tmp_path / "config.toml"
    config.write_bytes(b"epochs = 3\n# caf\xe9\n")
    table = tmp_path / "t.csv"
    table.write_text("text,label\ngood,pos\nbad,neg\n")
    code, _, err = _cli(["train", "text", table, "--config", config, "--output", tmp_path / "run"])
    assert "config.toml, line 2: not valid UTF-8 (byte 0xe9)" in _one_line(code, err)
    assert not (tmp_path / "run").exists()


# -- nothing to train -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [ImageTrainConfig, TextTrainConfig])
def test_no_epochs_at_all_is_refused(config):
    with pytest.raises(InputError, match=r"^`epochs` and `fine_tune_epochs` are both 0: nothing "
                                         r"would be trained, and the model saved would be the "
                                         r"untrained head\. Give `epochs` \(head on the frozen "
                                         r"backbone\) or `fine_tune_epochs` at least 1\.$"):
        config(epochs=0, fine_tune_epochs=0)
    assert config(epochs=0, fine_tune_epochs=1).epochs == 0  # fine-tuning alone still trains


def test_no_epochs_at_all_on_the_command_line_leaves_no_folder(tmp_path, faces):
    run = tmp_path / "run"
    code, _, err = _cli(["train", "images", faces, "--epochs", "0", "--fine-tune-epochs", "0",
                         "--output", run])
    assert "--epochs and --fine-tune-epochs are both 0" in _one_line(code, err)
    assert not run.exists()


# -- output paths of the wrong kind: refused before the work, in one line --------------------------


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


def test_check_output_folder_and_file(tmp_path, a_file):
    from transferkit.checks import check_output_file, check_output_folder

    assert check_output_folder(None, "report_dir") is None
    assert check_output_folder(tmp_path / "new" / "folder", "report_dir") == tmp_path / "new" / (
        "folder")
    with pytest.raises(InputError, match=rf"^`report_dir` must be a folder to write into \(it is "
                                         rf"made if missing\), but {a_file} is a file\. Pass a "
                                         r"folder path\. Received: report_dir="):
        check_output_folder(a_file, "report_dir")
    with pytest.raises(InputError, match=rf"but {a_file}/sub is under {a_file}, a file\."):
        check_output_folder(a_file / "sub", "report_dir")
    with pytest.raises(InputError, match=rf"^`path` is the \.png file to write, but {tmp_path} is "
                                         rf"a folder\. Pass a file path, such as "
                                         rf"{tmp_path}/output\.png\."):
        check_output_file(tmp_path, "path", ".png")
    with pytest.raises(InputError, match=r"^`path` must end in \.png: the file written is PNG, "
                                         r"whatever its name\. Received: path='.*grid\.jpg'\.$"):
        check_output_file(tmp_path / "grid.jpg", "path", ".png")


@pytest.mark.parametrize(("flags", "message"), [
    (["--output", "{tmp}"], "--output is the .png file to write, but {tmp} is a folder."),
    (["--output", "{file}/grid.png"], "--output is the .png file to write, but {file}/grid.png "
                                      "is under {file}, a file."),
    (["--output", "{tmp}/grid.jpg"], "--output must end in .png: the file written is PNG"),
    (["--output", "{tmp}/grid.png", "--image-size", "0"],
     "--image-size must be a positive int or a pair of them. Received: image_size=0."),
    (["--output", "{tmp}/grid.png", "--count", "0"], "--count must be an int >= 1."),
], ids=["a folder", "under a file", "not a png", "image size 0", "count 0"])
def test_preview_augmentation_refuses_a_wrong_output_before_the_work(tmp_path, a_file, faces,
                                                                     flags, message):
    flags = [f.format(tmp=tmp_path, file=a_file) for f in flags]
    before = sorted(tmp_path.iterdir())
    code, _, err = _cli(["preview-augmentation", faces, *flags])
    assert message.format(tmp=tmp_path, file=a_file) in _one_line(code, err)
    assert sorted(tmp_path.iterdir()) == before  # no temporary file left either


def test_preview_augmentation_as_a_library_refuses_a_folder(tmp_path, faces):
    from transferkit.reports.augmentation import preview_augmentation

    with pytest.raises(InputError, match=r"`path` is the \.png file to write, but .* is a folder"):
        preview_augmentation(faces / "face" / "face_000.png", tmp_path, image_size=32)


def test_evaluate_refuses_a_report_dir_that_is_a_file(image_run, a_file):
    code, _, err = _cli(["evaluate", image_run[3], image_run[4], "--report-dir", a_file])
    assert (f"--report-dir must be a folder to write into (it is made if missing), but {a_file} "
            "is a file. Pass a folder path.") in _one_line(code, err)
    assert a_file.read_text() == "not a folder"


def test_check_refuses_an_output_that_is_a_file(faces, a_file):
    code, _, err = _cli(["check", faces, "--output", a_file])
    assert f"--output must be a folder to write into (it is made if missing), but {a_file} is a " \
           "file." in _one_line(code, err)
    assert a_file.read_text() == "not a folder"


# -- batch sizes: 0 is refused as -1 is, never read as "the default" ------------------------------


@pytest.mark.parametrize("command", [
    ["predict", "{model}", "{image}"],
    ["predict", "{model}", "{image}", "--output", "{tmp}/out.parquet"],
    ["embed", "efficientnet_lite0", "{image}", "--output", "{tmp}/out.parquet"],
], ids=["predict", "predict to parquet", "embed"])
@pytest.mark.parametrize("size", ["0", "-1"])
def test_a_batch_size_below_one_is_refused(image_run, faces, tmp_path, command, size):
    argv = [a.format(model=image_run[3], image=faces / "face" / "face_000.png", tmp=tmp_path)
            for a in command]
    code, _, err = _cli([*argv, "--batch-size", size])
    assert f"--batch-size must be an int >= 1. Received: batch_size={size}." in _one_line(code, err)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.slow  # ~4 s: loads a model in safe mode; the command-line cases above are the fast ones
def test_a_loaded_classifier_refuses_batch_size_zero(image_run, faces):
    from transferkit import load

    classifier = load(image_run[3])
    with pytest.raises(InputError, match=r"^`batch_size` must be an int >= 1\. Received: "
                                         r"batch_size=0\.$"):
        classifier.predict([faces / "face" / "face_000.png"], batch_size=0)


# -- check and rank on too little data: said with their own flags and data ------------------------


def _classes(root, faces, counts):
    """A data folder with `counts[class]` of the faces of each class (copies, sorted names)."""
    import shutil

    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for path in sorted((faces / name).iterdir())[:count]:
            shutil.copy(path, root / name / path.name)
    return root


@pytest.mark.parametrize(("counts", "listed"), [
    ({"face": 1, "not_face": 1}, "'face' has 1, 'not_face' has 1"),
    ({"face": 2, "not_face": 1}, "'face' has 1, 'not_face' has 1"),  # one is held out
    ({"face": 5, "not_face": 1}, "'not_face' has 1"),
], ids=["one a class", "three images", "one class of one"])
def test_rank_on_too_few_images_says_what_to_add(tmp_path, faces, counts, listed):
    data = _classes(tmp_path / "data", faces, counts)
    code, out, err = _cli(["rank", data, "--backbones", "efficientnet_lite0", "--json"])
    line = _one_line(code, err)
    assert (f"too few images to rank on: {listed} in the training split that `rank` samples (the "
            "rest is held out, as `train` holds it out), and k-NN accuracy is cross-validated: it "
            "needs 2 of each class. Add examples of") in line
    assert "validation_size" not in line and "validation-size" not in line
    assert out == ""  # no table, no JSON with a NaN in it


def test_rank_with_only_unknown_backbones_names_the_nearest(faces):
    code, out, err = _cli(["rank", faces, "--backbones", "efficientnet_lit0,no_such_net"])
    assert ("Unknown backbone in --backbones: 'efficientnet_lit0' (did you mean "
            "efficientnet_lite0, ") in _one_line(code, err)
    assert "'no_such_net'" in err and "best LogME first" not in out


def test_rank_of_text_where_no_candidate_works_is_an_error(tmp_path):
    from helpers import write_table

    table = write_table(tmp_path / "reviews.csv", n=40, bad_rows=False)
    missing = tmp_path / "no_such_encoder"
    code, out, err = _cli(["rank", table, "--backbones", f"{missing},{missing}:layers"])
    assert f"None of the candidates could be ranked: {missing}: " in _one_line(code, err)
    assert "best LogME first" not in out  # no table of errors, exit 0


@pytest.mark.parametrize(("header", "cells", "said"), [
    ("text,labels", "a;b", "this is a multi-label table (the table's 'labels' column)"),
    ("text,target", "3.5", "this is a regression table (the table's 'target' column)"),
    ("path,label", "cat", "this is a table of images"),
    ("text,label,target", "cat,2", "label columns of several targets"),
])
def test_rank_of_a_table_that_is_not_single_label_text_says_so(tmp_path, header, cells, said):
    table = tmp_path / "t.csv"
    table.write_text(header + "\n" + "".join(f"row {i},{cells}\n" for i in range(6)))
    code, out, err = _cli(["rank", table])
    line = _one_line(code, err)
    assert said in line and ("single-label" in line or "--label-column" in line)


def test_knn_accuracy_on_four_examples_is_measured():
    import numpy as np

    from transferkit.pipelines.rank import knn_accuracy

    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert knn_accuracy(features, np.array([0, 0, 1, 1])) == 1.0  # 2 folds of 2: 2 neighbours


@pytest.mark.slow  # ~6 s: EfficientNet-Lite0 features of two images at 224 px
def test_check_on_one_image_a_class_reports_instead_of_naming_a_flag_it_lacks(tmp_path, faces):
    data = _classes(tmp_path / "data", faces, {"face": 1, "not_face": 1})
    code, out, err = _cli(["check", data, "--output", tmp_path / "check", "--json"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert not result["label_issues_checked"]
    assert result["label_issues_why"] == ("class 'face' has one example: out-of-fold "
                                          "predictions need two of each class. Add examples of it")
    assert "validation_size" not in err


def test_check_of_a_table_checks_the_labels_of_every_row(tmp_path, bert_folder):
    from helpers import write_table
    from transferkit.pipelines.check import check_data

    table = write_table(tmp_path / "reviews.csv", n=30, bad_rows=False)
    result = check_data(table, output=tmp_path / "check", encoder=str(bert_folder),
                        log=lambda line: None)
    assert result["label_issues_checked"] and result["label_checked_examples"] == 30  # not 21
    assert sum(sum(counts.values()) for counts in result["class_counts"].values()) == 30


@pytest.mark.slow  # ~12 s: EfficientNet-Lite0 features of 40 images at 224 px
def test_check_of_images_checks_the_labels_of_every_image(tmp_path, faces):
    from transferkit.pipelines.check import check_data

    result = check_data(faces, output=tmp_path / "check", log=lambda line: None)
    assert result["label_issues_checked"] and result["label_checked_examples"] == 40
    summary = (tmp_path / "check" / "summary.txt").read_text()
    assert "likely mislabelled of 40 examples, every split" in summary


# -- a KerasHub preset whose weights no longer fit its config -------------------------------------


# Keras's own noise while it loads and describes the misfit weights:
@pytest.mark.filterwarnings("ignore:Skipping nested container")
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_a_preset_whose_weights_do_not_fit_says_why_and_what_to_do(tmp_path):
    import keras_hub

    from transferkit.backbones.registry import get_spec

    folder = tmp_path / "preset"
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 4],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3),
    ).save_to_preset(str(folder))
    keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255).save_to_preset(
        str(folder))
    config = json.loads((folder / "config.json").read_text())
    config["config"]["stackwise_num_filters"] = [64, 6]  # the weights hold 4 filters
    (folder / "config.json").write_text(json.dumps(config))
    spec = get_spec(str(folder))
    with pytest.raises(InputError) as error:
        spec.builder(False, "imagenet", (32, 32, 3), None)
    message = str(error.value)
    assert "\n" not in message and "value=[" not in message  # one line, no dump of the weights
    assert "could not load it as a KerasHub image backbone (ValueError: A total of 6 objects " \
           "could not be loaded. Example error message for object <Conv2D " in message
    assert "must match. variable.shape=(3, 3, 64, 6), Received: value.shape=(3, 3, 64, 4))." in message
    assert message.endswith("Its model.weights.h5 does not fit its config.json: save the preset "
                            "again from one model (`save_to_preset` writes both), or pass another "
                            "folder.")


# -- contrastive tuning (issue 32) ----------------------------------------------------------------


@pytest.mark.parametrize(("table", "flags", "said"), [
    ("text,target\n" + "".join(f"row {i},{i / 2}\n" for i in range(12)), [],
     "a regression target has no labels to compare. Use strategy 'head'"),
    (None, ["--contrastive-pairs", "1"], "--contrastive-pairs must be"),
    (None, ["--contrastive-epochs", "0"], "--contrastive-epochs must be"),
    (None, ["--contrastive-learning-rate", "0"], "--contrastive-learning-rate must be"),
])
def test_contrastive_settings_that_cannot_work_are_one_line(tmp_path, bert_folder, table, flags,
                                                            said):
    path = tmp_path / "t.csv"
    path.write_text(table or "text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(12)))
    code, _, err = _cli(["train", "text", path, "--encoder", bert_folder, "--strategy",
                         "contrastive", *flags, "--output", tmp_path / "run"])
    assert said in _one_line(code, err)
    assert not (tmp_path / "run").exists()
