"""Sentence encoders as text encoders: the sequence length from the data, cached features, and a
network whose head is the part trained on them."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import toy_texts
from transferkit.backbones.text_encoders import tokenize
from transferkit.backbones.transformer_encoder import SentenceTransformer
from transferkit.errors import InputError


@pytest.fixture
def encoder(bert_folder, tmp_path):
    encoder = SentenceTransformer(bert_folder, cache_dir=tmp_path / "cache")
    encoder.adapt(toy_texts(40, cues=3, fillers=1)[0])
    return encoder


def test_sequence_length_and_the_tokenizer_layer(encoder):
    assert encoder.sequence_length == 16 and encoder.info["longest_training_text"] <= 16
    ids = tokenize(encoder.tokenizer(), ["good fun", "the film was bad " * 20])
    assert ids["token_ids"].shape == (2, 16)
    assert ids["padding_mask"].sum(axis=1).tolist() == [4, 16]  # start, 2 words, end; truncated


def test_features_are_cached_by_content(encoder, tmp_path):
    texts = toy_texts(10, seed=3, cues=3, fillers=1)[0]
    first = encoder.features(texts)
    assert first.shape == (10, 32 * 3)  # layer features: embeddings + 2 layers, 32 each
    (cached,) = (tmp_path / "cache").glob("*.npy")
    stamp = cached.stat().st_mtime_ns
    np.testing.assert_array_equal(encoder.features(texts), first)
    assert cached.stat().st_mtime_ns == stamp  # read, not computed again
    assert encoder.info["embedding"]["texts"] == 10  # speed counts computed texts only
    encoder.features(texts[:5])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_the_network_ends_in_the_head_trained_on_the_features(encoder):
    texts = toy_texts(10, seed=3, cues=3, fillers=1)[0]
    features = encoder.features(texts)
    network = encoder.build_network(1, features)
    head = encoder.head(network)
    inputs = tokenize(encoder.tokenizer(), texts)
    np.testing.assert_allclose(
        network.predict(inputs, verbose=0), head.predict(features, verbose=0), atol=1e-5
    )
    assert not network.get_layer("encoder_layers").trainable
    encoder.unfreeze(network)
    assert network.get_layer("encoder_layers").trainable


def test_check_finds_a_missing_folder_before_loading(tmp_path):
    with pytest.raises(InputError, match=r"nowhere: no such model folder"):
        SentenceTransformer(tmp_path / "nowhere").check()
    with pytest.raises(InputError, match=r"`features` must be one of 'layers', 'sentence'"):
        SentenceTransformer("minilm", features="cls").check()
