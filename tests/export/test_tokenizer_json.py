"""`tokenizer.json` from a text model's own tokenizer: `tokenizers` must give the ids Keras does."""

from __future__ import annotations

import numpy as np
import pytest

import transferkit
from transferkit.errors import InputError
from transferkit.export.graphs import token_inputs
from transferkit.export.tokenizer_json import encode, tokenizer_fields, write_tokenizer_json

TRICKY = [
    "The film was GREAT!", "dull, boring... plot -- (really)", "", "   ", "a" * 300,
    "Ça, c'est très-bon!! 100% naïve café", "unknownword superb\tlovely\nfun", "good " * 400,
    "don't won't it's", "#hashtag @user http://example.com/x?y=1", "中文 字符 mixed",
]


@pytest.mark.parametrize(
    "run_fixture", ["text_run", pytest.param("sentence_run", marks=pytest.mark.slow)])
def test_tokenizers_gives_the_ids_keras_gives(run_fixture, request, tmp_path):
    from tokenizers import Tokenizer

    classifier = transferkit.load(request.getfixturevalue(run_fixture)[3])
    layer = classifier.model.get_layer("tokenize")
    write_tokenizer_json(layer, tmp_path / "tokenizer.json")
    tokenizer = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    got = encode(tokenizer, tokenizer_fields(layer), TRICKY)
    expected = token_inputs(classifier, TRICKY)
    assert set(got) == set(expected) == set(layer.names)
    for name in expected:
        assert got[name].shape == (len(TRICKY), layer.sequence_length)
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_a_tokenizer_it_cannot_express_is_refused(tmp_path):
    import keras

    from transferkit.layers import TextInputs

    vectorizer = keras.layers.TextVectorization(split="character", output_sequence_length=8)
    vectorizer.adapt(["abc", "def"])
    with pytest.raises(InputError, match="split='character'.*--format saved_model"):
        write_tokenizer_json(TextInputs(vectorizer, 8, ("token_ids",)), tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
