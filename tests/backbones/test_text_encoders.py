"""Kinds of text encoders: one registry, names resolved to kinds, defaults, refused options."""

from __future__ import annotations

import pytest

from transferkit.backbones.glove_bilstm import GloveBiLSTM
from transferkit.backbones.text_encoders import (
    TEXT_ENCODERS,
    EncoderDefaults,
    TextEncoder,
    describe_default,
    register_text_encoder,
    text_encoder_class,
)
from transferkit.backbones.transformer_encoder import SentenceTransformer
from transferkit.errors import InputError


def test_names_resolve_to_kinds(tmp_path):
    assert text_encoder_class("glove-bilstm") is GloveBiLSTM
    assert text_encoder_class("GloVe_BiLSTM") is GloveBiLSTM  # one normaliser for every registry
    for name in ("minilm", tmp_path, "hf://sentence-transformers/all-MiniLM-L6-v2"):
        assert text_encoder_class(name) is SentenceTransformer  # the kind that takes the rest
    assert TEXT_ENCODERS.names() == ["glove-bilstm", "sentence-encoder"]


def test_defaults_per_kind_are_described_for_the_help():
    assert describe_default("epochs") == "30 for glove-bilstm; 100 for sentence encoders"
    assert describe_default("features") == "layers for sentence encoders"
    assert describe_default("max_length") == (
        "100 for glove-bilstm; chosen from the training texts for sentence encoders"
    )


def test_a_kind_owns_its_options():
    encoder = GloveBiLSTM("glove-bilstm", vocabulary_size=None, word_vectors="x.txt")
    assert encoder.options == {"word_vectors": "x.txt", "vocabulary_size": 10_000}
    with pytest.raises(InputError, match=r"`head_units` is an option of sentence encoders, not of "
                                         r"'glove-bilstm' \(glove-bilstm\)"):
        GloveBiLSTM("glove-bilstm", head_units=8)
    with pytest.raises(InputError, match=r"`vocabulary_size` is an option of glove-bilstm, not of "
                                         r"'minilm' \(sentence encoders\)\. Leave "
                                         r"`vocabulary_size` unset, or pick an encoder it applies "
                                         r"to, such as 'glove-bilstm'\."):
        SentenceTransformer("minilm", vocabulary_size=500)


def test_a_second_kind_under_a_taken_name_or_a_second_fallback_is_refused():
    defaults = EncoderDefaults(epochs=1, learning_rate=1.0, fine_tune_learning_rate=1.0,
                               max_length=8)
    taken = type("Taken", (TextEncoder,), {"kind": "glove-bilstm", "defaults": defaults})
    with pytest.raises(ValueError, match=r"The text encoder name 'glove-bilstm' is already "
                                         r"registered"):
        register_text_encoder(taken)
    greedy = type("Greedy", (TextEncoder,), {"kind": "greedy", "defaults": defaults,
                                             "fallback": True})
    with pytest.raises(ValueError, match=r"SentenceTransformer already takes every other"):
        register_text_encoder(greedy)
    assert "greedy" not in TEXT_ENCODERS  # a refused kind leaves no trace
