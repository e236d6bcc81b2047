"""MLflow tracking on the embedded store: a tracked text run (params, every epoch at a global
step, results, data facts, the model with its signature, the registry), `transferkit runs`,
`models register/list/promote`, `models:/` wherever a model path goes, uploading a run folder
later, and a store that is away."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from helpers import toy_texts, write_table

mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install 'transferkit[tracking]'")


def _cli(argv):
    import contextlib
    import io

    from transferkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _json(argv):
    code, out, err = _cli([*argv, "--json"])
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _logged_model(store: str, run_id: str):
    """MLflow's own view of a run's logged model: `(mlflow.keras.load_model, get_model_info)`."""
    import mlflow.keras

    model_uri = f"runs:/{run_id}/model"
    mlflow.set_tracking_uri(store)
    try:
        return mlflow.keras.load_model(model_uri), mlflow.models.get_model_info(model_uri)
    finally:
        mlflow.set_tracking_uri(None)


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, vectors_file):
    """`train text --track STORE --experiment reviews --register reviews-model`: `(result,
    run folder, store URI, stderr)`."""
    root = tmp_path_factory.mktemp("tracked")
    table = write_table(root / "reviews.csv")
    run = root / "run"
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    (root / "store").mkdir()
    code, out, err = _cli(["train", "text", table, "--word-vectors", vectors_file, "--epochs", "3",
                           "--fine-tune-epochs", "2", "--fine-tune-patience", "5", "--output", run,
                           "--track", uri, "--experiment", "reviews", "--register",
                           "reviews-model", "--json"])
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), run, uri, err


@pytest.fixture(scope="module")
def client(tracked):
    return mlflow.MlflowClient(tracked[2])


def test_every_epoch_is_logged_once_at_a_global_step(tracked, client):
    result, run, uri, _ = tracked
    run_id = result["tracking"]["run_id"]
    rows = _history(run)
    assert [r["phase"] for r in rows] == ["head"] * 3 + ["fine_tune"] * 2
    for phase, first in (("head", 1), ("fine_tune", 4)):
        mine = [r for r in rows if r["phase"] == phase]
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            logged = client.get_metric_history(run_id, f"{phase}/{metric}")
            assert [m.step for m in logged] == list(range(first, first + len(mine)))
            np.testing.assert_allclose([m.value for m in logged],
                                       [float(r[metric]) for r in mine], rtol=1e-6)
    mlflow_run = client.get_run(run_id)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.experiment_id == client.get_experiment_by_name("reviews").experiment_id


def test_params_tags_results_and_data_facts(tracked, client):
    result, run, _, _ = tracked
    mlflow_run = client.get_run(result["tracking"]["run_id"])
    params, tags, metrics = mlflow_run.data.params, mlflow_run.data.tags, mlflow_run.data.metrics
    config = json.loads((run / "config.json").read_text())
    for name, value in config.items():
        if name != "task":
            assert params[name] == str(value), name
    assert tags["transferkit.task"] == "text" and tags["transferkit.encoder"] == "glove-bilstm"
    import keras

    assert tags["keras.version"] == keras.__version__
    assert tags["keras.backend"] == keras.backend.backend()
    assert tags["mlflow.runName"] == "run" and tags["transferkit.report_split"] == "test"
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(report["accuracy"])
    assert metrics["macro_f1"] == pytest.approx(report["macro_avg"]["f1"])
    for name, scores in report["per_class"].items():
        assert metrics[f"f1/{name}"] == pytest.approx(scores["f1"])
    data = json.loads((run / "report" / "data.json").read_text())
    assert params["data.content_sha256"] == data["content_sha256"]
    counts = data["class_counts"]
    assert {k: int(v) for k, v in params.items() if k.startswith("data.count.")} == {
        f"data.count.{split}.{name}": n for split, c in counts.items() for name, n in c.items()
    }
    assert sum(counts["train"].values()) == result["splits"]["train"]
    (dataset,) = mlflow_run.inputs.dataset_inputs
    assert dataset.dataset.digest == data["content_sha256"][:16]
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"report", "history.csv", "config.json", "model"} <= artifacts
    assert "report/summary.txt" in {a.path for a in client.list_artifacts(
        mlflow_run.info.run_id, "report")}


def test_the_logged_model_loads_with_mlflows_keras_loader(tracked):
    import transferkit

    result, run, uri, _ = tracked
    texts = toy_texts(8, seed=3)[0]
    loaded, info = _logged_model(uri, result["tracking"]["run_id"])
    expected = transferkit.load(run).predict_proba(texts)
    got = loaded.predict(np.asarray(texts, dtype=object), verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    inputs = info.signature.inputs.to_dict()[0]
    assert inputs["tensor-spec"] == {"dtype": "str", "shape": (-1,)}
    assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 2)
    assert info.saved_input_example_info["type"] == "ndarray"


def test_registry_promote_and_models_uri_everywhere(tracked, monkeypatch):
    import transferkit

    result, run, uri, err = tracked
    assert "Registered: models:/reviews-model/1" in err
    assert result["tracking"]["registered"] == "models:/reviews-model/1"
    listed = _json(["models", "list", "reviews-model", "--track", uri])
    assert [(r["version"], r["aliases"]) for r in listed] == [("1", [])]
    assert f"test accuracy {result['test_accuracy']:.4f}" in listed[0]["description"]
    promoted = _json(["models", "promote", "reviews-model", "1", "--alias", "champion",
                      "--track", uri])
    assert promoted["uri"] == "models:/reviews-model@champion" and promoted["previous"] is None
    assert _json(["models", "list", "--track", uri])[0]["aliases"] == ["champion"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    texts = toy_texts(6, seed=4)[0]
    expected = transferkit.load(run).predict_proba(texts)
    for name in ("models:/reviews-model@champion", "models:/reviews-model/1"):
        np.testing.assert_allclose(transferkit.load(name).predict_proba(texts), expected,
                                   atol=1e-6)
    predicted = _json(["predict", "models:/reviews-model@champion", *texts])
    assert [p["label"] for p in predicted] == [
        transferkit.load(run).class_names[i] for i in expected.argmax(axis=1)
    ]
    code, _, err = _cli(["predict", "models:/reviews-model@production", "good"])
    assert code == 1 and "no version of 'reviews-model' has the alias 'production'" in err
    assert "(aliases: champion)" in err
    code, _, err = _cli(["models", "promote", "reviews-model", "9", "--track", uri])
    assert code == 1 and "has no version 9" in err and "(versions: 1)" in err


def test_runs_lists_the_run_best_first(tracked, tmp_path, vectors_file):
    result, run, uri, _ = tracked
    rows = _json(["runs", "--track", uri])
    assert rows[0]["run_id"] == result["tracking"]["run_id"]
    assert rows[0]["accuracy"] == pytest.approx(result["test_accuracy"])
    assert rows[0]["params"]["epochs"] == "3" and rows[0]["model"] == "glove-bilstm"
    code, out, _ = _cli(["runs", "--track", uri, "--experiment", "reviews"])
    assert code == 0 and "glove-bilstm" in out and f"{result['test_accuracy']:.4f}" in out
    code, _, err = _cli(["runs", "--track", uri, "--experiment", "nope"])
    assert code == 1 and "No experiment 'nope'" in err and "reviews" in err


@pytest.mark.slow  # the real-server test covers a store going away; this one uploads elsewhere
def test_a_store_that_is_away_warns_once_and_the_run_uploads_later(tmp_path, vectors_file):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    table = write_table(tmp_path / "reviews.csv")
    run = tmp_path / "run"
    code, out, err = _cli(["train", "text", table, "--word-vectors", vectors_file, "--epochs", "2",
                           "--output", run, "--track", f"http://127.0.0.1:{port}", "--json"])
    assert code == 0, err
    assert err.count("Warning: tracking stopped") == 1
    assert f"transferkit runs upload {run} --track http://127.0.0.1:{port}" in err
    assert (run / "model.keras").is_file() and json.loads(out.splitlines()[-1])["tracking"][
        "pending"]
    assert json.loads((run / "tracking.json").read_text())["pending"] is True

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    uploaded = _json(["runs", "upload", run, "--track", store, "--register", "later"])
    assert uploaded["finished"] and uploaded["registered"] == "models:/later/1"
    client = mlflow.MlflowClient(store)
    mlflow_run = client.get_run(uploaded["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(uploaded["run_id"], "head/loss")]
    assert steps == [1, 2]
    assert mlflow_run.data.metrics["test_accuracy"] == pytest.approx(
        json.loads((run / "report" / "metrics.json").read_text())["accuracy"])
    # Again: nothing is logged twice.
    _json(["runs", "upload", run])
    assert [m.step for m in client.get_metric_history(uploaded["run_id"], "head/loss")] == [1, 2]


@pytest.mark.slow  # ~10 s: the default suite's 10-minute budget
def test_an_image_run_folder_uploads_with_its_model(image_run, tmp_path):
    """`runs upload` of the shared image run (trained untracked): its epochs, and the model with
    an image signature (any size, 3 channels) that MLflow's loader runs."""
    import transferkit

    code, _, err, source, data = image_run
    assert code == 0, err
    run = tmp_path / "images"
    shutil.copytree(source, run)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    uploaded = _json(["runs", "upload", run, "--track", store])
    assert uploaded["finished"]
    client = mlflow.MlflowClient(store)
    rows = _history(run)
    steps = [m.step for m in client.get_metric_history(uploaded["run_id"], "fine_tune/loss")]
    head = sum(r["phase"] == "head" for r in rows)
    assert steps == list(range(head + 1, len(rows) + 1))
    assert client.get_experiment_by_name(Path(data).name) is not None
    loaded, info = _logged_model(store, uploaded["run_id"])
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, -1, -1, 3)
    from transferkit.data.images import load_image

    image = load_image(sorted((Path(data) / "face").glob("*.png"))[0])[None].astype("float32")
    np.testing.assert_allclose(loaded.predict(image, verbose=0),
                               transferkit.load(run).model.predict(image, verbose=0), atol=1e-6)


def test_tracking_without_mlflow_says_how_to_install_before_any_run_folder(
        tmp_path, monkeypatch, faces):
    import importlib.util

    from transferkit.errors import MissingDependencyError
    from transferkit.pipelines.images import train_images

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'transferkit\[tracking\]'"):
        train_images(faces, output=tmp_path / "run", track=True)
    assert not (tmp_path / "run").exists()


class _Counted:
    """Counts the calls of a method while still calling it (what is asked, not what answers)."""

    def __init__(self, monkeypatch, owner, name, only=None):
        self.calls = 0
        real = getattr(owner, name)

        def counted(this, *args, **kwargs):
            if only is None or only(*args):
                self.calls += 1
            return real(this, *args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


def test_a_model_is_resolved_once_mlflow_asked_once_and_its_config_read_once(
        tracked, image_run, monkeypatch, capsys):
    """`predict models:/NAME@ALIAS` and `serve RUN` (its predictor): transferkit reads the
    archive's config.json once (Keras reads it once more, to build the model) and asks MLflow
    for the alias once, so a check and a load cannot see two versions."""
    import zipfile

    from transferkit.serving.predictors import load_predictor

    _, run, uri, _ = tracked
    _json(["models", "promote", "reviews-model", "1", "--alias", "counted", "--track", uri])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    asked = _Counted(monkeypatch, mlflow.MlflowClient, "get_model_version_by_alias")
    reads = _Counted(monkeypatch, zipfile.ZipFile, "read", only=lambda name: name == "config.json")
    predicted = _json(["predict", "models:/reviews-model@counted", "good", "bad"])
    assert len(predicted) == 2
    assert (asked.calls, reads.calls) == (1, 1)

    for folder, runtime in ((run, "keras"), (image_run[3], "auto")):
        reads.calls = 0
        predictor = load_predictor(folder, runtime)
        # at most once: none where an up-to-date ONNX export of the file is found by its sha256
        assert predictor.class_names and reads.calls <= 1, (folder, runtime, reads.calls)
