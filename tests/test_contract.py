"""The contract every modality keeps, on the tiny stand-ins of `transferkit.testing` (seconds, not
minutes): images on the registered `test_cnn` backbone, text on a tiny random BERT (a sentence
encoder folder, as MiniLM's is; GloVe-style word vectors are `text_run`'s, in conftest). One run
per modality (`transferkit train ... --json` in a fresh process: head, then fine-tuning, tracked
in MLflow when it is installed) is shared by every check:

fit and fine-tune -> predict -> load in a fresh process -> ONNX export with parity -> serve over
HTTP -> batch predict / embed into Parquet -> the MLflow run. (A run killed mid-training resumes
to the same weights: tests/corpus/test_killed_runs.py, for every kind of model.)

Each check asserts on real outputs (shapes, class names, probabilities, parity within a
tolerance, weights bit for bit); nothing under test is mocked. Golden checks on the real
EfficientNet-Lite0 and MiniLM (accuracy, parity on real data) stay in the slow suite.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import transferkit
from helpers import weight_arrays
from transferkit.testing import TINY_BACKBONE, TINY_FEATURE_DIM, toy_texts, write_table

SRC = Path(__file__).resolve().parents[1] / "src"
MODALITIES = ["image", "text"]
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
# The same settings for the shared run and for the run killed and resumed, so that their weights
# can be compared bit for bit.
OPTIONS = {
    "image": ["--backbone", TINY_BACKBONE, "--image-size", "32", "--epochs", "3",
              "--patience", "50", "--fine-tune-epochs", "2", "--fine-tune-patience", "50",
              "--unfreeze", "all", "--augment", "flip", "--augment-views", "1"],
    "text": ["--max-length", "16", "--epochs", "3", "--patience", "50", "--fine-tune-epochs", "2",
             "--fine-tune-patience", "50"],
}
CLASSES = {"image": ["face", "not_face"], "text": ["negative", "positive"]}
PIXELS = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).round().astype("float32")


def _env(cache: Path, **extra) -> dict:
    """The child processes' environment: this source, and the contract's own cache (features,
    graphs), so that what other tests cached cannot make two runs differ."""
    return dict(os.environ, PYTHONPATH=str(SRC), TRANSFERKIT_CACHE_DIR=str(cache), **extra)


def _train_in_a_child(kind: str, args: list, cache: Path) -> tuple[dict, str]:
    """`transferkit train KIND ARGS --json` in a fresh process, as a user runs it (and as runs
    compare bit for bit: a process that exported or served models before is no reference):
    `(its result, its stderr)`."""
    done = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "train", kind, *map(str, args), "--json"],
        capture_output=True, text=True, env=_env(cache), timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


class Trained:
    """One shared run of a modality: its command, folder, result and inputs to predict on."""

    def __init__(self, modality, kind, args, run, result, inputs, store, cache):
        self.modality, self.kind, self.args, self.run, self.cache = modality, kind, args, run, cache
        self.result, self.inputs, self.store = result, inputs, store
        self.classes = CLASSES[modality]


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('contract-mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session", params=MODALITIES)
def trained(request, faces, bert_folder, mlflow_store, tmp_path_factory):
    modality = request.param
    root = tmp_path_factory.mktemp(f"contract-{modality}")
    if modality == "image":
        kind = "images"
        inputs = sorted(str(p) for p in faces.rglob("*.png"))[::4]  # both classes
        args = [faces, *OPTIONS["image"]]
    else:
        kind, data = "text", write_table(root / "reviews.csv", n=60, bad_rows=False)
        inputs = toy_texts(8, seed=3)[0] + ["", "an unknownword here"]
        args = [data, "--encoder", bert_folder, *OPTIONS["text"]]
    run = root / "run"
    track = ["--track", mlflow_store, "--experiment", "contract"] if HAS_MLFLOW else []
    cache = root / "cache"
    result, _ = _train_in_a_child(kind, [*args, "--output", run, *track], cache)
    return Trained(modality, kind, args, run, result, inputs, mlflow_store if track else None,
                   cache)


def _phases(run: Path) -> list[str]:
    with open(run / "history.csv", newline="") as handle:
        return [row["phase"] for row in csv.DictReader(handle)]


def _check_probabilities(probabilities, n, k):
    assert probabilities.shape == (n, k) and np.issubdtype(probabilities.dtype, np.floating)
    assert np.isfinite(probabilities).all() and (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


# -- fit, fine-tune, predict, load ------------------------------------------------------------


def test_fit_then_fine_tune_trains_head_then_backbone(trained):
    result, run = trained.result, trained.run
    assert result["classes"] == trained.classes
    assert _phases(run) == ["head"] * 3 + ["fine_tune"] * 2
    # Fine-tuning trained below the head: the backbone (all of it unfrozen) moved from its seeded
    # weights; the BERT's word embeddings, loaded from its folder, moved a little.
    if trained.modality == "image":
        from transferkit.testing import tiny_cnn
        from transferkit.training.unfreeze import backbone_architecture

        tuned = backbone_architecture(transferkit.load(run).network)
        assert tuned.name == TINY_BACKBONE
        seeded = tiny_cnn(input_shape=(32, 32, 3))
        moved = [layer.name for layer in seeded.layers if layer.get_weights() and not all(
            np.array_equal(a, b)
            for a, b in zip(layer.get_weights(), tuned.get_layer(layer.name).get_weights()))]
        assert {"conv1", "conv2", "conv3"} <= set(moved), moved
    else:
        from safetensors.numpy import load_file

        folder = Path(trained.args[trained.args.index("--encoder") + 1])
        loaded = load_file(folder / "model.safetensors")["embeddings.word_embeddings.weight"]
        (tuned,) = [a for a in weight_arrays(run / "model.keras").values()
                    if a.shape == loaded.shape]
        assert not np.array_equal(tuned, loaded)
        np.testing.assert_allclose(tuned, loaded, atol=0.05)
    for phase in ("head_", "fine_tune_", ""):
        key = f"{phase}{result['report_split']}_accuracy"
        assert 0.0 <= result[key] <= 1.0, key
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(trained.classes)
    if trained.modality == "image":
        assert result["backbone"] == TINY_BACKBONE and result["image_size"] == "32x32"


def test_predict_gives_probabilities_and_class_names(trained):
    classifier = transferkit.load(trained.run)
    assert classifier.class_names == trained.classes
    probabilities = classifier.predict_proba(trained.inputs)
    _check_probabilities(probabilities, len(trained.inputs), len(trained.classes))
    answers = classifier.predict(trained.inputs)
    assert len(answers) == len(trained.inputs)
    for answer, row in zip(answers, probabilities):
        assert answer["label"] == trained.classes[int(row.argmax())]
        assert answer["score"] == pytest.approx(row.max())
        assert list(answer["probabilities"]) == trained.classes
        np.testing.assert_allclose(list(answer["probabilities"].values()), row, atol=1e-6)
    # The same input gives the same answer, alone or in a batch.
    np.testing.assert_allclose(classifier.predict_proba(trained.inputs[:1]), probabilities[:1],
                               atol=1e-5)


@pytest.mark.slow  # a child process per modality, as `predict` in a fresh process (test_models.py)
def test_saved_model_loads_in_a_fresh_process(trained, tmp_path):
    """`transferkit.load` where nothing was imported before; for images, the same process also
    finds `test_cnn` by name in the registry, with the same seeded weights as here."""
    script = f"""
import json, numpy as np, transferkit
classifier = transferkit.load({str(trained.run)!r})
answer = {{"classes": classifier.class_names,
          "scores": classifier.predict_proba({trained.inputs!r}).tolist()}}
if {trained.modality!r} == "image":
    model = transferkit.get_backbone({TINY_BACKBONE!r}, input_shape=(32, 32, 3))
    pixels = np.asarray({PIXELS.tolist()!r}, "float32")
    answer["features"] = model.predict(pixels, verbose=0).tolist()
print(json.dumps(answer))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=_env(trained.cache))
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["classes"] == trained.classes
    expected = transferkit.load(trained.run).predict_proba(trained.inputs)
    np.testing.assert_allclose(np.array(answer["scores"]), expected, atol=1e-6)
    if trained.modality == "image":
        here = transferkit.get_backbone(TINY_BACKBONE, input_shape=(32, 32, 3))
        features = here.predict(PIXELS, verbose=0)
        assert features.shape == (2, 8, 8, TINY_FEATURE_DIM) and features.std() > 0
        np.testing.assert_allclose(np.array(answer["features"]), features, atol=1e-6)


# -- export -------------------------------------------------------------------------------------


def _onnx_scores(folder: Path, trained) -> np.ndarray:
    """The exported graph run with onnxruntime alone, on inputs prepared as `input.json` says."""
    import onnxruntime

    contract = json.loads((folder / "input.json").read_text())
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    if trained.modality == "image":
        from transferkit.data.images import load_resized

        (spec,) = contract["inputs"]
        size = tuple(spec["shape"][1:3])
        images = np.stack([load_resized(p, size, "center_crop") for p in trained.inputs])
        assert images.dtype == np.uint8 == np.dtype(spec["dtype"])
        return session.run(None, {spec["name"]: images})[0]
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    encodings = tokenizer.encode_batch(trained.inputs)
    feed = {name: np.array([getattr(e, field) for e in encodings], dtype=np.int32)
            for name, field in contract["text"]["inputs"].items()}
    return session.run(None, feed)[0]


def test_onnx_export_matches_the_keras_model(trained, tmp_path):
    from transferkit.export import export

    folder = tmp_path / "onnx"
    record = export(trained.run, folder, format="onnx")
    assert record["verified"]["inputs"] > 0 and record["verified"]["max_abs_diff"] < 1e-4
    assert json.loads((folder / "labels.json").read_text()) == trained.classes
    scores = _onnx_scores(folder, trained)
    _check_probabilities(scores, len(trained.inputs), len(trained.classes))
    expected = transferkit.load(trained.run).predict_proba(trained.inputs)
    np.testing.assert_allclose(scores, expected, atol=1e-4)


# -- serve ----------------------------------------------------------------------------------------


def test_served_answers_are_the_model_s(trained):
    import requests

    from transferkit.serving.app import background_server, create_app
    from transferkit.serving.predictors import load_predictor

    inputs = [i for i in trained.inputs if i]  # the server refuses an empty text (its own test)
    expected = transferkit.load(trained.run).predict_proba(inputs)
    with background_server(create_app(load_predictor(trained.run), max_wait_ms=10)) as url:
        if trained.modality == "image":
            files = [("files", (Path(p).name, Path(p).read_bytes(), "image/png")) for p in inputs]
            response = requests.post(url + "/predict", files=files, timeout=60)
        else:
            response = requests.post(url + "/predict", json={"texts": inputs}, timeout=60)
        assert response.status_code == 200, response.text
        health = requests.get(url + "/health", timeout=60)
    assert health.status_code == 200
    answers = response.json()
    assert len(answers) == len(inputs)
    for answer, row in zip(answers, expected):
        assert list(answer["scores"]) == trained.classes
        np.testing.assert_allclose(list(answer["scores"].values()), row, atol=1e-5)
        assert answer["label"] == trained.classes[int(np.argmax(row))]


# -- batch -----------------------------------------------------------------------------------


def test_batch_predict_and_embed_write_parquet(trained, tmp_path):
    from transferkit.batch.output import read_output

    if trained.modality == "image":
        inputs = trained.inputs
    else:  # a table of texts; the empty one is left out of the job
        inputs = tmp_path / "texts.csv"
        inputs.write_text("text\n" + "\n".join(t or '""' for t in trained.inputs) + "\n")
    summary = transferkit.batch_predict(trained.run, inputs, tmp_path / "p.parquet",
                                        shard_size=4, progress=False)
    table = read_output(tmp_path / "p.parquet")
    done = table["path" if trained.modality == "image" else "text"].tolist()
    assert summary["done"] == len(done) == len([i for i in trained.inputs if i])
    assert set(done) <= {str(i) for i in trained.inputs}
    expected = transferkit.load(trained.run).predict_proba(done)
    got = table[[f"prob_{name}" for name in trained.classes]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert table["label"].tolist() == [trained.classes[i] for i in expected.argmax(1)]

    if trained.modality == "image":  # the registered backbone's features, by name
        transferkit.batch_embed(TINY_BACKBONE, inputs, tmp_path / "e.parquet", progress=False)
        vectors = np.stack(read_output(tmp_path / "e.parquet")["embedding"].to_numpy())
        features = transferkit.extract_features(TINY_BACKBONE, inputs, cache=False)
        assert vectors.shape == (len(inputs), TINY_FEATURE_DIM)
        np.testing.assert_allclose(vectors, features, atol=1e-5)
    else:  # the encoder folder's features, as for a backbone: mean-pooled, L2-normalised
        folder = trained.args[trained.args.index("--encoder") + 1]
        transferkit.batch_embed(folder, inputs, tmp_path / "e.parquet", progress=False)
        vectors = np.stack(read_output(tmp_path / "e.parquet")["embedding"].to_numpy())
        assert vectors.shape == (len(done), 32) and np.isfinite(vectors).all()
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert len({tuple(v.round(4)) for v in vectors}) == len(set(done))


def test_embed_of_a_sentence_encoder_run_gives_its_head_s_inputs(trained, tmp_path):
    if trained.modality != "text":
        pytest.skip("images: test_batch_predict_and_embed_write_parquet")
    from transferkit.batch.output import read_output

    inputs = tmp_path / "texts.csv"
    inputs.write_text("text\n" + "\n".join(t for t in trained.inputs if t) + "\n")
    transferkit.batch_embed(trained.run, inputs, tmp_path / "e.parquet", progress=False)
    table = read_output(tmp_path / "e.parquet")
    vectors = np.stack(table["embedding"].to_numpy())
    head = transferkit.load(trained.run).network.get_layer("head")
    assert vectors.shape == (len([t for t in trained.inputs if t]), head.input.shape[-1])
    assert np.isfinite(vectors).all()
    assert len({tuple(v.round(4)) for v in vectors}) == len(set(table["text"]))


# -- track ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_MLFLOW, reason="the tracking extra: pip install 'transferkit[tracking]'")
def test_the_run_is_tracked_with_its_epochs_and_model(trained):
    import mlflow

    run_id = trained.result["tracking"]["run_id"]
    client = mlflow.MlflowClient(trained.store)
    tracked = client.get_run(run_id)
    assert tracked.info.status == "FINISHED"
    phases = _phases(trained.run)
    for phase in ("head", "fine_tune"):
        logged = client.get_metric_history(run_id, f"{phase}/loss")
        assert len(logged) == phases.count(phase) > 0
    split = trained.result["report_split"]
    assert tracked.data.metrics[f"{split}_accuracy"] == pytest.approx(
        trained.result[f"{split}_accuracy"])
    assert {"model", "report", "history.csv"} <= {a.path for a in client.list_artifacts(run_id)}
    import mlflow.keras

    mlflow.set_tracking_uri(trained.store)
    try:
        loaded = mlflow.keras.load_model(f"runs:/{run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    model = transferkit.load(trained.run)
    if trained.modality == "image":
        from transferkit.data.images import load_image

        batch = np.stack([load_image(p) for p in trained.inputs[:3]]).astype("float32")
        expected = model.model.predict(batch, verbose=0)
    else:
        batch = np.asarray(trained.inputs, dtype=object)
        expected = model.predict_proba(trained.inputs)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), expected, atol=1e-6)
