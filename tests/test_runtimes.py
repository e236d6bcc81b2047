"""Frozen models on ONNX Runtime or Keras (`transferkit.runtimes`): the choice, the graph cache,
the check against Keras, and the fallbacks."""

from __future__ import annotations

import json
import sys

import keras
import numpy as np
import pytest

from transferkit.errors import InputError, MissingDependencyError, RuntimeMismatchError
from transferkit.runtimes import MIN_ITEMS, TOLERANCE, frozen_runner


def _conv_model(seed=0, name="conv"):
    keras.utils.set_random_seed(seed)
    images = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    return keras.Model(images, keras.layers.GlobalAveragePooling2D()(x), name=name)


def _images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3)).astype(np.uint8)


def _graphs(cache):
    return sorted(p.name for p in (cache / "onnx").glob("*.onnx"))


def test_onnx_matches_keras_and_the_graph_is_cached_with_its_verdict(tmp_path, monkeypatch):
    model = _conv_model()
    images = _images()
    runner = frozen_runner(model, runtime="onnx", key={"name": "conv"}, cache=tmp_path, items=6)
    assert runner.runtime == "onnx"
    features = runner(images)
    expected = model.predict_on_batch(images.astype("float32"))
    assert features.dtype == np.float32 and features.shape == (6, 8)
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
    assert runner.max_abs_diff is not None and runner.max_abs_diff <= TOLERANCE
    [graph] = _graphs(tmp_path)
    verdict = json.loads((tmp_path / "onnx" / graph).with_suffix(".json").read_text())
    assert verdict["passed"] is True and verdict["max_abs_diff"] == runner.max_abs_diff
    assert verdict["keras_seconds"] > 0 and verdict["onnx_seconds"] > 0  # timed on that batch

    # A second runner reuses the graph and its verdict: nothing is exported or checked again,
    # and "auto" takes ONNX Runtime only if it was the faster one on that batch.
    monkeypatch.setattr(type(model), "export", lambda *a, **k: pytest.fail("exported again"))
    again = frozen_runner(model, runtime="auto", key={"name": "conv"}, cache=tmp_path, items=1)
    faster = verdict["onnx_seconds"] < verdict["keras_seconds"]
    assert again.runtime == ("onnx" if faster else "keras") and again.max_abs_diff is None
    np.testing.assert_allclose(again(images), features, atol=TOLERANCE, rtol=0)


def test_auto_keeps_keras_where_onnx_runtime_measured_slower(tmp_path):
    model = _conv_model()
    runner = frozen_runner(model, runtime="onnx", key={}, cache=tmp_path, items=6)
    runner(_images())
    verdict_file = runner.path.with_suffix(".json")
    verdict = json.loads(verdict_file.read_text())
    verdict.update(keras_seconds=0.01, onnx_seconds=0.02)  # as a slow model's check records
    verdict_file.write_text(json.dumps(verdict))
    auto = frozen_runner(model, runtime="auto", key={}, cache=tmp_path, items=10 * MIN_ITEMS)
    assert auto.runtime == "keras" and "not faster" in auto.reason
    insisted = frozen_runner(model, runtime="onnx", key={}, cache=tmp_path, items=1)
    assert insisted.runtime == "onnx"  # `onnx` is a request, not a preference


def test_the_graph_key_follows_the_weights(tmp_path):
    model = _conv_model()
    frozen_runner(model, runtime="onnx", key={"name": "conv"}, cache=tmp_path, items=6)(_images())
    weights = model.get_weights()
    model.set_weights([w + 0.01 for w in weights])  # "fine-tuned": a new graph, not the old one
    runner = frozen_runner(model, runtime="onnx", key={"name": "conv"}, cache=tmp_path, items=6)
    np.testing.assert_allclose(runner(_images()), model.predict_on_batch(_images().astype("f4")),
                               atol=TOLERANCE, rtol=0)
    assert len(_graphs(tmp_path)) == 2


def test_auto_exports_only_when_it_pays(tmp_path):
    model = _conv_model()
    few = frozen_runner(model, runtime="auto", key={"name": "conv"}, cache=tmp_path,
                        items=MIN_ITEMS - 1)
    assert few.runtime == "keras" and "too few" in few.reason
    assert not (tmp_path / "onnx").exists() or not _graphs(tmp_path)
    slower = frozen_runner(model, runtime="auto", key={"name": "conv"}, cache=tmp_path,
                           items=10 * MIN_ITEMS, faster=False)
    assert slower.runtime == "keras" and "not faster" in slower.reason
    many = frozen_runner(model, runtime="auto", key={"name": "conv"}, cache=tmp_path,
                         items=MIN_ITEMS)
    assert many.runtime == "onnx"
    keras_only = frozen_runner(model, runtime="keras", key={"name": "conv"}, cache=tmp_path,
                               items=10 * MIN_ITEMS)
    np.testing.assert_array_equal(
        keras_only(_images()), model.predict_on_batch(_images().astype("float32"))
    )


def test_a_graph_that_disagrees_with_keras_is_caught_and_remembered(tmp_path):
    model, other = _conv_model(seed=0), _conv_model(seed=1)
    runner = frozen_runner(model, runtime="onnx", key={"name": "conv"}, cache=tmp_path, items=6)
    path = runner.path
    # Replace the graph with another model's (as a converter bug would make it wrong).
    frozen_runner(other, runtime="onnx", key={"name": "other"}, cache=tmp_path, items=6)
    other_graph = next(p for p in (tmp_path / "onnx").glob("*.onnx") if p != path)
    path.write_bytes(other_graph.read_bytes())
    for file in (tmp_path / "onnx").glob("*.json"):
        file.unlink()
    import transferkit.runtimes as runtimes

    runtimes._SESSIONS.clear()

    strict = frozen_runner(model, runtime="onnx", key={"name": "conv"}, cache=tmp_path, items=6)
    with pytest.raises(RuntimeMismatchError,
                       match=r"differs from Keras's by up to .*--runtime keras"):
        strict(_images())
    # The verdict is stored: auto now runs Keras at once, and `onnx` refuses before running.
    auto = frozen_runner(model, runtime="auto", key={"name": "conv"}, cache=tmp_path, items=6)
    assert auto.runtime == "keras" and "differed from Keras" in auto.reason
    np.testing.assert_array_equal(auto(_images()), model.predict_on_batch(_images().astype("f4")))
    with pytest.raises(RuntimeMismatchError, match="failed its check .*differed from Keras"):
        frozen_runner(model, runtime="onnx", key={"name": "conv"}, cache=tmp_path, items=6)


def test_auto_falls_back_to_keras_when_the_check_fails_on_the_first_batch(tmp_path):
    model, other = _conv_model(seed=0), _conv_model(seed=1)
    path = frozen_runner(model, runtime="onnx", key={"k": 1}, cache=tmp_path, items=6).path
    donor = frozen_runner(other, runtime="onnx", key={"k": 2}, cache=tmp_path, items=6).path
    path.write_bytes(donor.read_bytes())
    import transferkit.runtimes as runtimes

    runtimes._SESSIONS.clear()
    auto = frozen_runner(model, runtime="auto", key={"k": 1}, cache=tmp_path, items=MIN_ITEMS)
    assert auto.runtime == "onnx"  # the graph is there and not yet checked
    outputs = auto(_images())
    assert auto.runtime == "keras" and "running Keras" in auto.reason
    np.testing.assert_array_equal(outputs, model.predict_on_batch(_images().astype("float32")))


def test_a_graph_onnx_runtime_cannot_load_or_run_falls_back(tmp_path):
    model = _conv_model()
    path = frozen_runner(model, runtime="onnx", key={}, cache=tmp_path, items=6).path
    import transferkit.runtimes as runtimes

    runtimes._SESSIONS.clear()
    path.write_bytes(b"not an onnx graph")  # as a graph with an operation ORT cannot load
    path.with_suffix(".json").unlink(missing_ok=True)
    auto = frozen_runner(model, runtime="auto", key={}, cache=tmp_path, items=MIN_ITEMS)
    assert auto.runtime == "keras" and "could not load the graph" in auto.reason
    np.testing.assert_array_equal(auto(_images()), model.predict_on_batch(_images().astype("f4")))
    assert json.loads(path.with_suffix(".json").read_text())["passed"] is False
    with pytest.raises(RuntimeMismatchError, match="failed its check"):
        frozen_runner(model, runtime="onnx", key={}, cache=tmp_path, items=6)


def test_token_id_inputs_run_with_any_length(tmp_path):
    from transferkit.data.sequences import predict_padded

    keras.utils.set_random_seed(0)
    inputs = {name: keras.Input((None,), dtype="int32", name=name)
              for name in ("token_ids", "padding_mask")}
    embedded = keras.layers.Embedding(50, 8)(inputs["token_ids"])
    pooled = keras.layers.GlobalAveragePooling1D()(
        keras.layers.Dense(8, activation="tanh")(embedded), mask=inputs["padding_mask"] > 0
    )
    model = keras.Model(inputs, pooled)
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, 40)
    ids = np.zeros((40, 12), np.int32)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, 50, length)
    data = {"token_ids": ids, "padding_mask": (ids > 0).astype(np.int32)}
    runner = frozen_runner(model, runtime="onnx", key={"name": "tokens"}, cache=tmp_path,
                           items=40)
    np.testing.assert_allclose(predict_padded(runner, data, 8), predict_padded(model, data, 8),
                               atol=TOLERANCE, rtol=0)


def test_without_onnxruntime_auto_runs_keras_and_onnx_names_the_pip_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    model = _conv_model()
    auto = frozen_runner(model, runtime="auto", key={}, cache=tmp_path, items=10 * MIN_ITEMS)
    assert auto.runtime == "keras" and "onnxruntime" in auto.reason
    with pytest.raises(MissingDependencyError, match=r"pip install 'onnxruntime==1\.32\.0'"):
        frozen_runner(model, runtime="onnx", key={}, cache=tmp_path, items=1)


def test_a_model_that_does_not_convert_falls_back_or_fails_clearly(tmp_path, monkeypatch):
    model = _conv_model()

    def unsupported(*args, **kwargs):
        raise RuntimeError("tf2onnx: unsupported op Foo")

    monkeypatch.setattr(type(model), "export", unsupported)
    auto = frozen_runner(model, runtime="auto", key={}, cache=tmp_path, items=10 * MIN_ITEMS)
    assert auto.runtime == "keras" and "Could not export" in auto.reason
    from transferkit.errors import TransferkitError

    with pytest.raises(TransferkitError, match="Could not export .* unsupported op Foo"):
        frozen_runner(model, runtime="onnx", key={}, cache=tmp_path, items=1)
    assert not _graphs(tmp_path)  # no half-written graph
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == []


def test_an_unknown_runtime_lists_the_choices():
    with pytest.raises(InputError, match="'auto', 'keras', 'onnx'. Received: runtime='tflite'"):
        frozen_runner(_conv_model(), runtime="tflite", key={}, cache=None, items=1)


def test_without_a_cache_the_graph_lives_as_long_as_the_runner():
    model = _conv_model()
    runner = frozen_runner(model, runtime="onnx", key={}, cache=None, items=6)
    path = runner.path
    assert path.is_file()
    runner(_images())
    del runner
    import gc

    gc.collect()
    assert not path.exists()
