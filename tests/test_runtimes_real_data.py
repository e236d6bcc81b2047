"""ONNX Runtime against Keras on real inputs, for every backbone with weights on this machine and
for MiniLM (slow; CI runs them). The bar: features within `transferkit.runtimes.TOLERANCE`
(1e-4, absolute). Speed is in `benchmarks/feature_speed.py`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import shared_data
from transferkit.backbones.registry import offline_backbones
from transferkit.runtimes import TOLERANCE
from transferkit.tasks.features import extract_features

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backbone", offline_backbones())
def test_backbone_features_on_onnx_equal_keras_on_real_photos(backbone):
    folder = shared_data("cats_and_dogs", "validation")
    paths = sorted(folder.glob("cats/*.jpg"))[:24] + sorted(folder.glob("dogs/*.jpg"))[:24]
    keras_ = extract_features(backbone, paths, runtime="keras", cache=False)
    onnx = extract_features(backbone, paths, runtime="onnx", cache=False)
    assert onnx.shape == keras_.shape and np.isfinite(onnx).all()
    assert np.abs(onnx - keras_).max() <= TOLERANCE


@pytest.mark.parametrize("features", ["layers", "sentence"])
def test_minilm_embeddings_on_onnx_equal_keras_on_real_sentences(features, tmp_path):
    from transferkit.backbones.sentence_encoders import load_sentence_encoder
    from transferkit.backbones.text_encoders import tokenize

    table = pd.read_csv(shared_data("rt_polarity", "sentences.csv"))
    texts = table.iloc[::40, 0].astype(str).tolist()[:256]
    encoder = load_sentence_encoder("minilm")
    inputs = tokenize(encoder.text_inputs(64), texts)
    keras_ = encoder.embed(inputs, features=features, batch_size=64, runtime="keras")
    onnx = encoder.embed(inputs, features=features, batch_size=64, runtime="onnx", cache=tmp_path)
    assert encoder.last_runtime == "onnx" and onnx.shape == keras_.shape
    assert np.abs(onnx - keras_).max() <= TOLERANCE
