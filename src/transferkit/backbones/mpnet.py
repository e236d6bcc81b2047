"""MPNet in Keras: the architecture of sentence-transformers' all-mpnet-base-v2, read from a Hugging
Face folder (`config.json`, `model.safetensors`, `vocab.txt`) without torch.

KerasHub 0.32 has no MPNet (its `from_preset` says "no converter for ... 'mpnet'"), and MPNet is
not a BERT with other weights, so it is written here, after Hugging Face's `modeling_mpnet.py`:

- a post-LayerNorm BERT encoder (GELU, LayerNorm epsilon 1e-5), with no token-type embeddings;
- absolute positions as RoBERTa counts them: the first token is position 2 (`padding_idx` 1 is
  kept for padding), so with padding at the end token `i` reads row `i + 2` of the table;
- a T5-style relative position bias: 32 buckets of the signed distance between two tokens
  (exact up to 8, logarithmic up to 128), one learned number per bucket and head, computed once
  and added to every layer's attention logits. Neither `keras.layers.MultiHeadAttention` nor
  KerasHub's `TransformerEncoder` takes such a bias, hence `MPNetEncoderLayer`.

The tokenizer is BERT's WordPiece (lower-cased, accents stripped) with RoBERTa's special tokens:
`<s>` 0 starts a text, `</s>` 2 ends it, `<pad>` 1 pads. Parity with Hugging Face's
implementation: `tests/backbones/test_mpnet.py`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import keras_hub
import numpy as np
from keras import ops

from transferkit.errors import WeightsError

__all__ = ["MPNetBackbone", "MPNetEncoderLayer", "MPNetTokenizer", "RelativePositionBias",
           "is_mpnet_folder", "load_mpnet"]

#: Rows of the position table before the first real position (RoBERTa's padding_idx + 1).
POSITION_OFFSET = 2


def is_mpnet_folder(folder) -> bool:
    """Whether `folder` holds a Hugging Face MPNet (`config.json` says `model_type: mpnet`)."""
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type") == "mpnet"
    except (OSError, ValueError, AttributeError):
        return False


def relative_position_buckets(length, num_buckets: int = 32, max_distance: int = 128):
    """`(length, length)` int32: the bucket of each (query, key) pair's distance `key - query`,
    as Hugging Face's `MPNetEncoder.relative_position_bucket`: half the buckets for keys before
    the query, half for keys after; within each half, distances below a quarter of the buckets
    exactly, longer ones on a log scale up to `max_distance`."""
    positions = ops.arange(length, dtype="int32")
    distance = positions[:, None] - positions[None, :]  # query - key: -(key - query)
    half = num_buckets // 2
    bucket = ops.cast(distance < 0, "int32") * half
    distance = ops.abs(distance)
    exact = half // 2
    scaled = ops.log(ops.cast(ops.maximum(distance, 1), "float32") / exact) / math.log(
        max_distance / exact) * (half - exact)
    large = ops.minimum(exact + ops.cast(scaled, "int32"), half - 1)
    return bucket + ops.where(distance < exact, distance, large)


@keras.saving.register_keras_serializable(package="transferkit")
class RelativePositionBias(keras.layers.Layer):
    """Token embeddings `(batch, length, dim)` -> the attention bias `(1, heads, length,
    length)` of their relative positions (one learned value per bucket and head)."""

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.num_buckets, self.max_distance = num_heads, num_buckets, max_distance

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.num_buckets, self.num_heads), name="embeddings",
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, inputs):
        buckets = relative_position_buckets(ops.shape(inputs)[1], self.num_buckets,
                                            self.max_distance)
        values = ops.take(self.embeddings, buckets, axis=0)  # (length, length, heads)
        return ops.expand_dims(ops.transpose(values, (2, 0, 1)), 0)

    def compute_output_shape(self, input_shape):
        return (1, self.num_heads, input_shape[1], input_shape[1])

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "num_buckets": self.num_buckets, "max_distance": self.max_distance}


def _gelu(x):
    """The exact (erf) GELU, as Hugging Face's "gelu", written with `erf`: Keras's own exact GELU
    is `erfc` on TensorFlow, which tf2onnx cannot export (the ONNX feature runtime)."""
    return 0.5 * x * (1.0 + ops.erf(x / math.sqrt(2.0)))


@keras.saving.register_keras_serializable(package="transferkit")
class MPNetEncoderLayer(keras.layers.Layer):
    """One MPNet layer: self-attention with the relative position bias added to its logits,
    then the feed-forward block; post-LayerNorm residuals, as BERT's.

    Called as `layer(x, position_bias, padding_mask=mask)`: `x` `(batch, length, dim)`, the
    bias `(1, heads, length, length)`, the mask `(batch, length)` (1 for tokens, 0 for padding).
    """

    def __init__(self, num_heads: int, intermediate_dim: int, dropout: float,
                 layer_norm_epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.intermediate_dim = num_heads, intermediate_dim
        self.dropout, self.layer_norm_epsilon = dropout, layer_norm_epsilon
        self.supports_masking = True

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if dim % self.num_heads:
            raise ValueError(f"hidden size {dim} is not a multiple of {self.num_heads} heads")
        self.head_dim = dim // self.num_heads

        def dense(units, name):
            return keras.layers.Dense(units, dtype=self.dtype_policy, name=name)

        self.query, self.key, self.value = (dense(dim, n) for n in ("query", "key", "value"))
        self.attention_output = dense(dim, "attention_output")
        self.intermediate = dense(self.intermediate_dim, "intermediate")  # then `_gelu`
        self.output_dense = dense(dim, "output")
        for layer in (self.query, self.key, self.value, self.intermediate):
            layer.build(input_shape)
        self.attention_output.build(input_shape)
        self.output_dense.build((*input_shape[:-1], self.intermediate_dim))
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="attention_norm")
        self.output_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="output_norm")
        self.attention_norm.build(input_shape)
        self.output_norm.build(input_shape)
        self.probabilities_dropout = keras.layers.Dropout(self.dropout)
        self.attention_dropout = keras.layers.Dropout(self.dropout)
        self.output_dropout = keras.layers.Dropout(self.dropout)

    def _heads(self, x, batch, length):
        x = ops.reshape(x, (batch, length, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))  # (batch, heads, length, head_dim)

    def call(self, inputs, position_bias, padding_mask=None, training=None):
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        query = self._heads(self.query(inputs), batch, length)
        key = self._heads(self.key(inputs), batch, length)
        value = self._heads(self.value(inputs), batch, length)
        logits = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        logits = logits / math.sqrt(self.head_dim) + ops.cast(position_bias, logits.dtype)
        if padding_mask is not None:  # keys that are padding get no attention
            keep = ops.cast(padding_mask, logits.dtype)[:, None, None, :]
            logits = logits + (1.0 - keep) * -1e9
        weights = self.probabilities_dropout(ops.softmax(logits, axis=-1), training=training)
        context = ops.transpose(ops.matmul(weights, value), (0, 2, 1, 3))
        context = ops.reshape(context, (batch, length, self.num_heads * self.head_dim))
        attended = self.attention_dropout(self.attention_output(context), training=training)
        x = self.attention_norm(inputs + attended)
        y = self.output_dropout(self.output_dense(_gelu(self.intermediate(x))), training=training)
        return self.output_norm(x + y)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim, "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon}


@keras.saving.register_keras_serializable(package="transferkit")
class MPNetBackbone(keras_hub.models.Backbone):
    """MPNet's encoder: `{"token_ids", "padding_mask"}` -> `{"sequence_output"}`, `(batch,
    length, hidden_dim)`, as KerasHub's text backbones (no `segment_ids`: MPNet has no token
    types). `max_sequence_length` counts usable positions (the table's rows less the offset)."""

    def __init__(self, vocabulary_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 intermediate_dim: int, dropout: float, max_sequence_length: int = 512,
                 num_buckets: int = 32, layer_norm_epsilon: float = 1e-5, dtype=None,
                 **kwargs):
        self.token_embedding = keras.layers.Embedding(vocabulary_size, hidden_dim, dtype=dtype,
                                                      name="token_embedding")
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            sequence_length=max_sequence_length, dtype=dtype, name="position_embedding")
        self.embeddings_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype,
                                                       name="embeddings_dropout")
        self.position_bias = RelativePositionBias(num_heads, num_buckets, dtype=dtype,
                                                  name="relative_position_bias")
        self.transformer_layers = [
            MPNetEncoderLayer(num_heads, intermediate_dim, dropout, layer_norm_epsilon,
                              dtype=dtype, name=f"transformer_layer_{i}")
            for i in range(num_layers)
        ]
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        tokens = self.token_embedding(token_ids)
        x = self.embeddings_dropout(self.embeddings_norm(tokens + self.position_embedding(tokens)))
        bias = self.position_bias(x)
        for layer in self.transformer_layers:
            x = layer(x, bias, padding_mask=padding_mask)
        super().__init__(inputs={"token_ids": token_ids, "padding_mask": padding_mask},
                         outputs={"sequence_output": x}, dtype=dtype, **kwargs)
        self.vocabulary_size, self.num_layers, self.num_heads = vocabulary_size, num_layers, num_heads
        self.hidden_dim, self.intermediate_dim, self.dropout = hidden_dim, intermediate_dim, dropout
        self.max_sequence_length, self.num_buckets = max_sequence_length, num_buckets
        self.layer_norm_epsilon = layer_norm_epsilon

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim, "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout, "max_sequence_length": self.max_sequence_length,
                "num_buckets": self.num_buckets, "layer_norm_epsilon": self.layer_norm_epsilon}


@keras.saving.register_keras_serializable(package="transferkit")
class MPNetTokenizer(keras_hub.tokenizers.WordPieceTokenizer):
    """BERT's WordPiece (lower-cased, accents stripped, `[UNK]` for unknown pieces) with MPNet's
    special tokens: `<s>` starts a text, `</s>` ends it, `<pad>` pads (KerasHub's
    `BertTokenizer` would take `[CLS]`, `[SEP]` and `[PAD]`, which MPNet's vocabulary also has,
    at other ids)."""

    def __init__(self, vocabulary=None, lowercase=True, strip_accents=True, **kwargs):
        self._add_special_token("<s>", "cls_token")
        self._add_special_token("</s>", "sep_token")
        self._add_special_token("<pad>", "pad_token")
        self._add_special_token("<mask>", "mask_token")
        # What KerasHub's preprocessors read (as `BertTokenizer` sets them).
        self._add_special_token("<s>", "start_token")
        self._add_special_token("</s>", "end_token")
        kwargs.setdefault("oov_token", "[UNK]")
        super().__init__(vocabulary=vocabulary, lowercase=lowercase,
                         strip_accents=strip_accents, **kwargs)


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{folder}: cannot read config.json ({exc})") from exc


def _hf_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    # Saved from MPNetModel ("embeddings...") or MPNetForMaskedLM ("mpnet.embeddings...").
    return {name.removeprefix("mpnet."): value for name, value in tensors.items()}


def _assign(backbone: MPNetBackbone, tensors: dict[str, np.ndarray], folder: Path) -> None:
    """Hugging Face's MPNet weights -> the Keras layers (torch's `Linear` keeps `(out, in)`:
    transposed for `Dense`)."""

    def take(name):
        if name not in tensors:
            raise WeightsError(f"{folder}/model.safetensors has no {name!r}: not an MPNet model")
        return tensors[name]

    def dense(layer, prefix):
        layer.set_weights([take(f"{prefix}.weight").T, take(f"{prefix}.bias")])

    def norm(layer, prefix):
        layer.set_weights([take(f"{prefix}.weight"), take(f"{prefix}.bias")])

    backbone.token_embedding.set_weights([take("embeddings.word_embeddings.weight")])
    positions = take("embeddings.position_embeddings.weight")[POSITION_OFFSET:]
    backbone.position_embedding.set_weights([positions[: backbone.max_sequence_length]])
    norm(backbone.embeddings_norm, "embeddings.LayerNorm")
    backbone.position_bias.set_weights([take("encoder.relative_attention_bias.weight")])
    for i, layer in enumerate(backbone.transformer_layers):
        prefix = f"encoder.layer.{i}"
        for sub, name in ((layer.query, "q"), (layer.key, "k"), (layer.value, "v"),
                          (layer.attention_output, "o")):
            dense(sub, f"{prefix}.attention.attn.{name}")
        norm(layer.attention_norm, f"{prefix}.attention.LayerNorm")
        dense(layer.intermediate, f"{prefix}.intermediate.dense")
        dense(layer.output_dense, f"{prefix}.output.dense")
        norm(layer.output_norm, f"{prefix}.output.LayerNorm")


def load_mpnet(folder) -> tuple[MPNetBackbone, MPNetTokenizer]:
    """`(backbone, tokenizer)` of the Hugging Face MPNet in `folder`, weights loaded.

    Raises:
        WeightsError: a config, weights file or vocabulary that is missing or not MPNet's.
    """
    folder = Path(folder)
    config = _config(folder)
    try:
        backbone = MPNetBackbone(
            vocabulary_size=int(config["vocab_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            hidden_dim=int(config["hidden_size"]),
            intermediate_dim=int(config["intermediate_size"]),
            dropout=float(config.get("hidden_dropout_prob", 0.1)),
            max_sequence_length=int(config["max_position_embeddings"]) - POSITION_OFFSET,
            num_buckets=int(config.get("relative_attention_num_buckets", 32)),
            layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-5)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{folder}/config.json: not an MPNet config ({exc!r})") from exc
    _assign(backbone, _hf_weights(folder), folder)
    vocabulary = folder / "vocab.txt"
    if not vocabulary.is_file():
        raise WeightsError(f"{folder}: no vocab.txt (MPNet's WordPiece vocabulary)")
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")) if (
        folder / "tokenizer_config.json").is_file() else {}
    lowercase = bool(settings.get("do_lower_case", True))
    # Hugging Face strips accents whenever it lower-cases, unless told `strip_accents: false`.
    strip = settings.get("strip_accents")
    tokenizer = MPNetTokenizer(vocabulary=str(vocabulary), lowercase=lowercase,
                               strip_accents=lowercase if strip is None else bool(strip))
    return backbone, tokenizer
