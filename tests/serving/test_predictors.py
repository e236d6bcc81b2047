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
    keras_predictor = load_predictor(run)
    assert keras_predictor.runtime == "keras"
    export(run, format="onnx")  # into run/export/onnx
    onnx_predictor = load_predictor(run)
    assert onnx_predictor.runtime == "onnx"
    assert onnx_predictor.class_names == keras_predictor.class_names
    assert onnx_predictor.image_size == keras_predictor.image_size
    paths = sorted(image_run[4].rglob("*.png"))[:6]
    images = [load_resized(p, keras_predictor.image_size, "center_crop") for p in paths]
    np.testing.assert_allclose(onnx_predictor.predict(images), keras_predictor.predict(images),
                               atol=1e-4)
    assert load_predictor(run, runtime="keras").runtime == "keras"
    # An export of an older model.keras is not served in its place.
    record = json.loads((run / "export" / "onnx" / "export.json").read_text())
    record["source"]["sha256"] = "0" * 64
    (run / "export" / "onnx" / "export.json").write_text(json.dumps(record))
    assert load_predictor(run).runtime == "keras"


def test_runtime_errors(image_run, tmp_path):
    with pytest.raises(InputError, match="Unknown runtime 'tflite'"):
        load_predictor(image_run[3], runtime="tflite")
    with pytest.raises(InputError, match="the onnx runtime serves a folder from `transferkit "
                                         "export`"):
        load_predictor(image_run[3] / "model.keras", runtime="onnx")
