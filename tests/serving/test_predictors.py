"""`load_predictor`: one interface over Keras and ONNX Runtime, and which runtime a path gets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transferkit.data.images import load_resized
from transferkit.errors import InputError
from transferkit.export import export
from transferkit.serving.predictors import load_predictor


@pytest.mark.slow
def test_a_run_with_a_current_onnx_export_is_served_by_onnx_runtime(image_run, tmp_path):
    run = shutil.copytree(image_run[3], tmp_path / "run")
    keras_predictor = load_predictor(run, runtime="keras")
    assert keras_predictor.runtime == "keras"
    export(run, format="onnx")  # into run/export/onnx
    onnx_predictor = load_predictor(run)
    assert onnx_predictor.runtime == "onnx" and onnx_predictor.path == run / "export" / "onnx"
    assert onnx_predictor.class_names == keras_predictor.class_names
    assert onnx_predictor.image_size == keras_predictor.image_size
    paths = sorted(image_run[4].rglob("*.png"))[:6]
    images = [load_resized(p, keras_predictor.image_size, "center_crop") for p in paths]
    np.testing.assert_allclose(onnx_predictor.predict(images), keras_predictor.predict(images),
                               atol=1e-4)
    assert load_predictor(run, runtime="keras").runtime == "keras"
    # An export of an older model.keras is not served in its place: one made for serving is.
    record = json.loads((run / "export" / "onnx" / "export.json").read_text())
    record["source"]["sha256"] = "0" * 64
    (run / "export" / "onnx" / "export.json").write_text(json.dumps(record))
    fresh = load_predictor(run)
    assert fresh.runtime == "onnx" and fresh.path.parts[-3] == "serving"


def test_an_image_model_is_served_by_onnx_runtime_from_an_export_made_once(image_run,
                                                                         _isolated_cache):
    from transferkit.files import sha256_file

    run = image_run[3]
    predictor = load_predictor(run)  # no export in the run: one is made into the cache
    folder = _isolated_cache / "serving" / sha256_file(run / "model.keras") / "onnx"
    assert predictor.runtime == "onnx" and predictor.path == folder
    verified = json.loads((folder / "export.json").read_text())["verified"]
    assert verified["warning"] is None and verified["max_abs_diff"] <= 1e-4
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    keras_predictor = load_predictor(run / "model.keras", runtime="keras")
    paths = sorted(image_run[4].rglob("*.png"))[:4]
    images = [load_resized(p, predictor.image_size, "center_crop") for p in paths]
    np.testing.assert_allclose(predictor.predict(images), keras_predictor.predict(images),
                               atol=1e-4)
    assert load_predictor(run, runtime="onnx").path == folder  # reused, not exported again
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp


def test_a_text_model_is_served_by_keras_unless_onnx_is_asked_for(text_run):
    assert load_predictor(text_run[3]).runtime == "keras"


def test_runtime_errors(image_run, tmp_path):
    with pytest.raises(InputError, match=r"Unknown runtime 'tflite'. Choose one of: auto, keras"):
        load_predictor(image_run[3], runtime="tflite")
    folder = load_predictor(image_run[3]).path
    with pytest.raises(InputError, match="is an export folder; serve it with `--runtime onnx`"):
        load_predictor(folder, runtime="keras")
