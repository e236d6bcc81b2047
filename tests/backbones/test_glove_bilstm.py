"""The "glove-bilstm" text encoder: the vocabulary it learns, the tokenizer inside the saved model,
and its network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferkit.backbones.glove_bilstm import GloveBiLSTM
from transferkit.backbones.text_encoders import tokenize
from transferkit.errors import InputError

TEXTS = ["The movie was GREAT!", "bad, bad film...", "great great great"]


def test_the_vocabulary_comes_from_the_training_texts_only(vectors_file, tmp_path):
    encoder = GloveBiLSTM("glove-bilstm", word_vectors=vectors_file, vocabulary_size=5,
                          max_length=3)
    encoder.adapt(TEXTS, state_dir=tmp_path)
    assert json.loads((tmp_path / "vocabulary.json").read_text()) == ["great", "bad", "was"]
    ids = tokenize(encoder.tokenizer(), ["GREAT film, truly great", "", "?!"])["token_ids"]
    # Lower-cased, punctuation stripped, unknown words -> 1, truncated and padded to 3.
    assert ids.tolist() == [[2, 1, 1], [0, 0, 0], [0, 0, 0]] and ids.dtype == np.int32
    # A resumed run reads the vocabulary it trained with, whatever the texts are now.
    again = GloveBiLSTM("glove-bilstm", word_vectors=vectors_file, max_length=3)
    again.adapt(["completely different words"], state_dir=tmp_path)
    assert tokenize(again.tokenizer(), ["bad was great"])["token_ids"].tolist() == [[3, 4, 2]]


def test_coverage_and_the_frozen_embedding(vectors_file):
    encoder = GloveBiLSTM("glove-bilstm", word_vectors=vectors_file)
    encoder.adapt(["a great film", "a dull plot zzzunknown"])
    coverage = encoder.info["coverage"]
    assert coverage["vocabulary_words"] == 6 and coverage["vocabulary_words_with_vectors"] == 5
    assert encoder.sequence_length == 100  # the kind's default
    network = encoder.build_network(1)
    embedding = network.get_layer("word_embedding")
    assert not embedding.trainable and embedding.get_weights()[0].shape == (8, 8)
    assert network.output.shape == (None, 1)
    encoder.unfreeze(network)
    assert embedding.trainable
    assert encoder.build_network(4).output.shape == (None, 4)


def test_settings_are_checked_before_anything_is_read(tmp_path):
    with pytest.raises(InputError, match=r"`vocabulary_size` must be an int >= 3"):
        GloveBiLSTM("glove-bilstm", vocabulary_size=2).check()
    with pytest.raises(InputError, match=r"nope\.txt: no such word-vectors file"):
        GloveBiLSTM("glove-bilstm", word_vectors=tmp_path / "nope.txt").check()
