"""`transferkit.export.export` on the tiny trained runs: the folder, the parity of each format on
its real runtime (slow: conversions take seconds each), and the errors. Quantised exports of
real models: `test_real_data.py` (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import transferkit
from transferkit.data.images import load_resized
from transferkit.errors import InputError, MissingDependencyError
from transferkit.export import export
from transferkit.files import read_json
from transferkit.testing import TINY_BACKBONE


@pytest.fixture(scope="module")
def image_onnx(image_run, tmp_path_factory):
    run = image_run[3]
    folder = tmp_path_factory.mktemp("export") / "onnx"
    return run, folder, export(run, folder, format="onnx")


def _face_paths(data):
    return sorted(str(p) for p in data.rglob("*.png"))


@pytest.mark.slow  # heavy for the default run; CI runs the slow set
def test_image_onnx_folder_holds_the_contract(image_onnx, image_run):
    run, folder, record = image_onnx
    classifier = transferkit.load(run)
    assert sorted(p.name for p in folder.iterdir()) == [
        "MODEL_CARD.md", "export.json", "input.json", "labels.json", "model.onnx"]
    assert read_json(folder / "labels.json") == classifier.class_names
    contract = read_json(folder / "input.json")
    height, width = classifier.input_size
    assert contract["image"]["dtype"] == "uint8" and contract["image"]["value_range"] == [0, 255]
    assert contract["inputs"] == [{"name": "image", "dtype": "uint8",
                                   "shape": [None, height, width, 3]}]
    assert record == {**read_json(folder / "export.json"), "path": str(folder)}
    # Verified on the run's own training split of its data folder.
    from transferkit.data.image_folder import discover_image_folder

    train = discover_image_folder(image_run[4]).train_paths
    assert record["verified"]["inputs"] == len(train) < 24
    assert record["verified"]["max_abs_diff"] < 1e-4
    card = (folder / "MODEL_CARD.md").read_text()
    assert TINY_BACKBONE in card and "| face |" in card and "Intended use" in card
    assert record["source"]["path"] == f"{run.name}/model.keras"  # not where it is here


@pytest.mark.slow  # heavy for the default run; CI runs the slow set
def test_image_onnx_matches_predict_proba_and_leaves_training_layers_out(image_onnx, image_run):
    import onnx
    import onnxruntime as ort

    run, folder, _ = image_onnx
    classifier = transferkit.load(run)
    paths = _face_paths(image_run[4])
    images = np.stack([load_resized(p, classifier.input_size, "center_crop") for p in paths])
    session = ort.InferenceSession(str(folder / "model.onnx"))
    scores = session.run(None, {"image": images})[0]
    expected = classifier.predict_proba(paths)
    assert scores.shape == expected.shape == (len(paths), 2)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    nodes = " ".join(n.name.lower() for n in onnx.load(folder / "model.onnx").graph.node)
    for layer in ("augmentation", "random_flip", "random_zoom", "dropout", "resize"):
        assert layer not in nodes  # the run trained with flip,zoom augmentation and dropout


@pytest.mark.slow  # heavy for the default run; CI runs the slow set
def test_text_onnx_runs_with_tokenizers_and_onnxruntime_alone(text_run, tmp_path):
    """GloVe + BiLSTM to ONNX; a fresh Python that never imports transferkit, Keras or
    TensorFlow scores raw strings with `tokenizers` + `onnxruntime` and agrees with Keras."""
    run = text_run[3]
    folder = tmp_path / "onnx"
    record = export(run, folder, format="onnx")
    assert {"tokenizer.json", "model.onnx"} <= {p.name for p in folder.iterdir()}
    assert record["verified"]["max_abs_diff"] < 1e-4
    texts = ["The film was GREAT!", "dull, boring... plot", "an unknownword here", "",
             "good " * 300]
    script = f"""
import json, sys
import numpy as np, onnxruntime, tokenizers
folder = {str(folder)!r}
contract = json.load(open(folder + "/input.json"))
tokenizer = tokenizers.Tokenizer.from_file(folder + "/tokenizer.json")
encodings = tokenizer.encode_batch({texts!r})
feed = {{name: np.array([getattr(e, field) for e in encodings], dtype=np.int32)
        for name, field in contract["text"]["inputs"].items()}}
scores = onnxruntime.InferenceSession(folder + "/model.onnx").run(None, feed)[0]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("transferkit", "keras", "tensorflow"))
print(json.dumps({{"scores": scores.tolist(), "loaded": loaded}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == []
    expected = transferkit.load(run).predict_proba(texts)
    np.testing.assert_allclose(np.array(answer["scores"]), expected, atol=1e-4)


@pytest.mark.slow  # heavy for the default run; CI runs the slow set
def test_sentence_encoder_to_litert(sentence_run, tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from tokenizers import Tokenizer

    from transferkit.export.tokenizer_json import encode

    run = sentence_run[3]
    folder = tmp_path / "litert"
    record = export(run, folder, format="litert")
    contract = read_json(folder / "input.json")
    assert record["model_file"] == contract["model_file"] == "model.tflite"
    assert set(contract["text"]["inputs"]) == {"token_ids", "segment_ids", "padding_mask"}
    texts = ["A lovely, superb movie.", "awful and dull", "Ça, c'est très bon!"]
    feed = encode(Tokenizer.from_file(str(folder / "tokenizer.json")),
                  contract["text"]["inputs"], texts)
    runner = Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner()
    scores = next(iter(runner(**feed).values()))
    np.testing.assert_allclose(scores, transferkit.load(run).predict_proba(texts), atol=1e-4)


@pytest.mark.slow  # heavy for the default run; CI runs the slow set
def test_text_saved_model_takes_strings(text_run, tmp_path):
    import tensorflow as tf

    run = text_run[3]
    export(run, tmp_path / "sm", format="saved_model")
    serve = tf.saved_model.load(str(tmp_path / "sm" / "saved_model")).signatures["serve"]
    texts = ["the film was great", "boring!"]
    scores = next(iter(serve(text=tf.constant(texts)).values())).numpy()
    np.testing.assert_allclose(scores, transferkit.load(run).predict_proba(texts), atol=1e-4)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"format": "tflite"}, "Unknown export format 'tflite'. Choose one of: saved_model, onnx"),
        ({"format": "onnx", "quantize": "int4"}, "Unknown quantization 'int4'"),
        ({"format": "saved_model", "quantize": "int8"}, "SavedModel is exported in float32 only"),
    ],
)
def test_bad_format_or_quantization_is_one_clear_error(image_run, tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        export(image_run[3], tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_text_formats_that_cannot_carry_the_model_say_why(text_run, tmp_path):
    with pytest.raises(InputError, match="glove-bilstm text model cannot be exported to LiteRT"):
        export(text_run[3], tmp_path / "a", format="litert")
    with pytest.raises(InputError, match="ONNX float16 is for image models"):
        export(text_run[3], tmp_path / "b", format="onnx", quantize="float16")
    with pytest.raises(InputError, match="ONNX int8 quantization of a glove-bilstm model makes "
                                         "ONNX Runtime abort.*--quantize dynamic"):
        export(text_run[3], tmp_path / "c", format="onnx", quantize="int8")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_litert_quantization_of_a_sentence_encoder_is_refused(sentence_run, tmp_path, quantize):
    with pytest.raises(InputError, match=f"LiteRT {quantize} quantization breaks sentence-encoder"):
        export(sentence_run[3], tmp_path / "out", format="litert", quantize=quantize)
    assert list(tmp_path.iterdir()) == []


def test_occupied_output_and_int8_without_inputs_are_refused(image_run, tmp_path):
    run, folder = image_run[3], tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("someone else's file")
    with pytest.raises(InputError, match="exists and is not empty, and is not an export folder"):
        export(run, folder, format="onnx")  # more: tests/corpus/test_export_corpus.py
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    classifier = transferkit.load(run)
    classifier.path = None  # as if trained in memory: no run, so no training data known
    with pytest.raises(InputError, match="int8 quantization is calibrated on real inputs"):
        export(classifier, tmp_path / "int8", format="onnx", quantize="int8")
    with pytest.raises(InputError, match="Pass `path`"):
        export(classifier, format="onnx")


def test_a_missing_converter_names_the_pip_line(image_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
    with pytest.raises(MissingDependencyError,
                       match=r"pip install 'transferkit\[export\]' \(or: pip install "
                             r"'ai-edge-litert==2\.3\.0'\)"):
        export(image_run[3], tmp_path / "out", format="litert")


def test_a_failed_export_leaves_nothing_behind(image_run, tmp_path, monkeypatch):
    from transferkit.export import formats

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(formats, "write", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export(image_run[3], tmp_path / "out", format="onnx")
    assert list(tmp_path.iterdir()) == []
