"""Corpus of bad model files (issue 16): each is refused with one clear line, and none runs code.

Every case goes through the real command line (`transferkit.cli.main` in this process, one in a
fresh process) and checks the promise of `transferkit.cli`: exit code 1, one line on stderr that
names what is wrong and the fix, no traceback. The two cases that carry code (a Lambda layer, a
pickled `os.system` call in a `.pth` file) also prove that the code did not run: it would create
a marker file. Each of those tests first shows that the payload is live (it does run when the
file is loaded the unsafe way), so that the check can fail.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile

import pytest

from conftest import _run_cli
from helpers import refused_in_one_line

# -- a Lambda layer, an unknown class ------------------------------------------------------------


def _lambda_model(path, marker):
    """A `.keras` file whose Lambda layer creates `marker` whenever it is called (as loading a
    functional model does); the marker is removed after saving."""
    import keras

    payload = eval(f"lambda x: (__import__('pathlib').Path({os.fspath(marker)!r}).touch(), x)[1]")
    inputs = keras.Input((3,), name="numbers")
    keras.Model(inputs, keras.layers.Lambda(payload, name="payload")(inputs)).save(path)
    marker.unlink()
    return path


def test_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path, faces):
    import keras

    import transferkit
    from transferkit.errors import InputError

    marker = tmp_path / "MARKER"
    model = _lambda_model(tmp_path / "lambda.keras", marker)
    for argv in (["predict", model, "hello"], ["evaluate", model, faces],
                 ["predict", model, faces, "--output", tmp_path / "out"]):
        line = refused_in_one_line(_run_cli(argv), str(model), "Lambda layer 'payload'",
                        "transferkit loads only model files it wrote")
        assert "safe_mode=False" not in line and "enable_unsafe_deserialization" not in line
        assert not marker.exists()
    with pytest.raises(InputError, match="code that would run on load"):
        transferkit.load(model)
    assert not marker.exists() and not (tmp_path / "out").exists()
    # The payload is live: loading the file the unsafe way runs it.
    keras.saving.load_model(model, safe_mode=False)
    assert marker.exists()


@pytest.mark.slow  # a fresh Python with TensorFlow: ~7 s
def test_a_lambda_layer_is_refused_in_a_fresh_process(tmp_path):
    marker = tmp_path / "MARKER"
    model = _lambda_model(tmp_path / "lambda.keras", marker)
    result = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "predict", str(model), "hello"],
        capture_output=True, text=True, timeout=300,
    )
    refused_in_one_line((result.returncode, result.stdout, result.stderr), "Lambda layer",
             "only model files it wrote")
    assert not marker.exists()


def test_an_unknown_class_is_refused(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="CorpusEvil")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((3,))
    model = tmp_path / "custom.keras"
    keras.Model(inputs, Doubler(name="doubler")(inputs)).save(model)
    del keras.saving.get_custom_objects()["CorpusEvil>Doubler"]  # a class this process lacks
    line = refused_in_one_line(_run_cli(["predict", model, "hello"]), str(model),
                    "'CorpusEvil>Doubler'", "only model files it wrote")
    assert "safe_mode=False" not in line and "Full object config" not in line


def test_an_unknown_function_is_refused(tmp_path):
    """A custom activation this process lacks: found by Keras itself, said the same way."""
    import keras

    @keras.saving.register_keras_serializable(package="CorpusEvil")
    def shout(x):
        return x * 10

    inputs = keras.Input((3,))
    model = tmp_path / "function.keras"
    keras.Model(inputs, keras.layers.Dense(2, activation=shout)(inputs)).save(model)
    del keras.saving.get_custom_objects()["CorpusEvil>shout"]
    line = refused_in_one_line(_run_cli(["predict", model, "hello"]), f"Refusing to load {model}",
                    "only model files it wrote")
    assert "safe_mode=False" not in line and "Full object config" not in line


def test_a_model_file_that_is_not_a_classifier(tmp_path):
    """A plain Keras model loads safely but is no transferkit classifier: said in one line."""
    import keras

    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "plain.keras")
    refused_in_one_line(_run_cli(["predict", tmp_path / "plain.keras", "hello"]),
             "is not a transferkit classifier", "transferkit train")


# -- damaged and foreign files -------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 100, 0.5, -22, -1])
def test_a_truncated_keras_file(image_run, tmp_path, keep):
    whole = (image_run[3] / "model.keras").read_bytes()
    cut = int(len(whole) * keep) if isinstance(keep, float) else keep
    model = tmp_path / "model.keras"
    model.write_bytes(whole[:cut])
    refused_in_one_line(_run_cli(["predict", model, "x.png"]), str(model), "truncated",
             "save or copy it again")


def test_a_damaged_keras_file(image_run, tmp_path):
    """The zip directory is intact, but bytes inside the weights are overwritten."""
    data = bytearray((image_run[3] / "model.keras").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    model = tmp_path / "model.keras"
    model.write_bytes(bytes(data))
    refused_in_one_line(_run_cli(["evaluate", model, image_run[4]]), str(model), "save or copy it again")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root (and Windows) can read a file without read permission")
def test_an_unreadable_keras_file(image_run, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes((image_run[3] / "model.keras").read_bytes())
    model.chmod(0)
    try:
        refused_in_one_line(_run_cli(["predict", model, "x.png"]), str(model), "cannot read it",
                 "readable by this user")
    finally:
        model.chmod(0o600)


@pytest.mark.parametrize("name, content", [
    ("notes.keras", b"just some text\n"),
    ("table.keras", b"text,label\ngood,positive\n"),
    ("model.h5", b"\x89HDF\r\n\x1a\n" + bytes(100)),
    ("weights.pth", b"PK\x03\x04" + bytes(50)),
])
def test_a_file_that_is_not_a_keras_model(tmp_path, name, content):
    model = tmp_path / name
    model.write_bytes(content)
    refused_in_one_line(_run_cli(["predict", model, "hello"]), str(model), "written by transferkit")


def test_a_zip_that_is_not_a_keras_model(tmp_path):
    model = tmp_path / "archive.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("readme.txt", "hello")
    refused_in_one_line(_run_cli(["predict", model, "hello"]), str(model), "config.json",
             "written by transferkit")


# -- a model given the other modality ------------------------------------------------------------


def test_evaluate_with_the_data_of_the_other_task(image_run, text_run):
    images, table = image_run[4], text_run[4]
    refused_in_one_line(_run_cli(["evaluate", text_run[3], images]), "this is a text model",
             f"{images} is a folder", "table of texts")
    # An image model evaluates on a table of image paths and labels; a table of texts has none.
    refused_in_one_line(_run_cli(["evaluate", image_run[3], table]), str(table),
             "no column named 'path' for the image paths", "--path-column")


def test_a_text_model_given_images(text_run, image_run, tmp_path):
    model, image = text_run[3], image_run[4] / "face" / "face_000.png"
    refused_in_one_line(_run_cli(["predict", model, image]), "this is a text model",
             f"{image} is an image file", "pass texts or a table of texts")
    refused_in_one_line(_run_cli(["predict", model, "missing/photo.JPG"]), "this is a text model",
             "missing/photo.JPG is an image file")
    refused_in_one_line(_run_cli(["predict", model, image_run[4]]), "this is a text model",
             f"{image_run[4]} is a folder")
    refused_in_one_line(_run_cli(["predict", model, image_run[4], "--output", tmp_path / "out"]),
             "this is a text model", f"{image_run[4]} is a folder")
    assert not (tmp_path / "out").exists()
    # A file of texts is not a text: it is read with --output.
    refused_in_one_line(_run_cli(["predict", model, text_run[4]]), f"{text_run[4]} is a file of texts",
             "--output")
    # Real texts that mention a file still work.
    code, out, err = _run_cli(["predict", model, "the photo.jpg was a great fun film"])
    assert code == 0, err


def test_an_image_model_given_texts(image_run, text_run, tmp_path):
    model, table = image_run[3], text_run[4]
    refused_in_one_line(_run_cli(["predict", model, table]), "this is an image model",
             f"{table} is a table of texts", "image files")
    refused_in_one_line(_run_cli(["predict", model, table, "--output", tmp_path / "out"]),
             "this is an image model", f"{table} is a table of texts")
    assert not (tmp_path / "out").exists()
    listing = tmp_path / "texts.txt"
    listing.write_text("a great film\n")
    refused_in_one_line(_run_cli(["predict", model, listing]), "this is an image model",
             f"{listing} is a text file", "--output")


# -- a PyTorch checkpoint that runs a command ----------------------------------------------------


class _Payload:
    """Unpickles to `os.system(command)`: what a hostile `.pth` file does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _hostile_checkpoints(tmp_path, marker):
    """The payload in both formats transferkit reads: the legacy pickle stream, and a torch zip
    archive (`<root>/data.pkl`)."""
    state = {"_conv_stem.weight": _Payload(f"touch {marker}")}
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps(state, protocol=2))
    archive = tmp_path / "archive.pth"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("archive/data.pkl", pickle.dumps(state, protocol=2))
        handle.writestr("archive/byteorder", "little")
    return [legacy, archive]


def test_a_pth_file_with_an_os_system_payload(tmp_path, faces):
    from transferkit.backbones.efficientnet_lite import efficientnet_lite
    from transferkit.errors import UnsafeCheckpointError
    from transferkit.weights import load_state_dict

    marker = tmp_path / "MARKER"
    checkpoints = _hostile_checkpoints(tmp_path, marker)
    for checkpoint in checkpoints:
        with pytest.raises(UnsafeCheckpointError, match="`posix.system`|`os.system`"):
            load_state_dict(checkpoint)
    # The one builder that takes `.pth` weights (EfficientNet-Lite's `weights=`).
    with pytest.raises(UnsafeCheckpointError, match="could run arbitrary code"):
        efficientnet_lite("efficientnet_lite0", include_top=False, weights=checkpoints[1],
                          input_shape=(64, 64, 3))
    # The `--weights` flags take `.weights.h5` files only: a `.pth` is refused unread.
    for argv in (["predict-imagenet", faces / "face" / "face_000.png", "--weights", checkpoints[0]],
                 ["train", "images", faces, "--weights", checkpoints[0], "--image-size", "64",
                  "--output", tmp_path / "run"]):
        refused_in_one_line(_run_cli(argv), str(checkpoints[0]), ".weights.h5")
    assert not marker.exists()
    # The payload is live: an ordinary unpickler runs it.
    pickle.loads(checkpoints[0].read_bytes())
    assert marker.exists()
