"""A text model's tokenizer as a Hugging Face `tokenizer.json`, so that an ONNX or LiteRT export
maps raw strings to token ids with the `tokenizers` library alone (no TensorFlow, no Keras).

Two tokenizers are covered, the two that transferkit's text encoders use:

* Keras `TextVectorization` (GloVe + BiLSTM): a word-level model with the same vocabulary (id 0
  padding, id 1 `[UNK]`), lower-casing and punctuation stripping (Keras's
  `lower_and_strip_punctuation`), splitting on whitespace, padding and truncating to the model's
  sequence length;
* a KerasHub `BertTokenizer` in a `TextClassifierPreprocessor` (MiniLM and other BERT-style
  encoders): BERT's WordPiece with `[CLS]`/`[SEP]`, the same lower-casing and accent stripping,
  padded and truncated to the sequence length.

Keras and KerasHub write no `tokenizer.json`, and `tokenizers` cannot read theirs, so this module
builds one from their configuration with the `tokenizers` API. The export verifies it: the
exported model's scores on texts tokenized by this file must match the Keras model's on the raw
texts.

One corner differs, which a `tokenizer.json` cannot express: KerasHub splits words off
punctuation first and then case-folds each piece with NFKC (`tf_text.case_fold_utf8`), so "…"
becomes the single token "..." and "ß" becomes "ss"; `tokenizers` normalises before splitting.
On rt_polarity's 10,662 sentences, 33 (0.3%, all with "…" or "½") get different ids; all others
get the same ids.
"""

from __future__ import annotations

import os

from transferkit.errors import InputError
from transferkit.extras import require

__all__ = ["write_tokenizer_json", "tokenizer_fields", "encode"]

# Keras's DEFAULT_STRIP_REGEX (keras/src/layers/preprocessing/text_vectorization.py).
_KERAS_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


def tokenizer_fields(tokenize_layer) -> dict[str, str]:
    """Model input name -> the field of a `tokenizers.Encoding` that feeds it."""
    fields = {"token_ids": "ids", "segment_ids": "type_ids", "padding_mask": "attention_mask"}
    return {name: fields[name] for name in tokenize_layer.names}


def write_tokenizer_json(tokenize_layer, path: str | os.PathLike) -> None:
    """Writes `tokenize_layer` (a `transferkit.layers.TextInputs`) as a `tokenizer.json`.

    Raises:
        InputError: the tokenizer is of a kind this module cannot express.
    """
    require("tokenizers", "Writing tokenizer.json")
    inner = tokenize_layer.tokenizer
    length = int(tokenize_layer.sequence_length)
    kind = type(inner).__name__
    if kind == "TextVectorization":
        tokenizer = _word_level(inner, length)
    elif hasattr(inner, "tokenizer") and type(inner.tokenizer).__name__ == "BertTokenizer":
        tokenizer = _word_piece(inner.tokenizer, length)
    else:
        inner_kind = type(getattr(inner, "tokenizer", inner)).__name__
        raise InputError(
            f"This text model's tokenizer ({inner_kind}) cannot be written as a tokenizer.json, "
            "which ONNX and LiteRT exports need to take text. Export it with --format "
            "saved_model, which takes strings."
        )
    tokenizer.save(os.fspath(path))


def _word_level(vectorizer, length: int):
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    config = vectorizer.get_config()
    if config.get("split") != "whitespace" or config.get("standardize") not in (
            "lower_and_strip_punctuation", "lower", None):
        raise InputError(
            f"A TextVectorization with split={config.get('split')!r} and "
            f"standardize={config.get('standardize')!r} cannot be written as a tokenizer.json. "
            "Export with --format saved_model."
        )
    vocabulary = vectorizer.get_vocabulary()  # ["", "[UNK]", words...]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary)},
                                           unk_token=vocabulary[1]))
    steps = []
    if config.get("standardize") is not None:
        steps.append(normalizers.Lowercase())
    if config.get("standardize") == "lower_and_strip_punctuation":
        steps.append(normalizers.Replace(Regex(_KERAS_PUNCTUATION), ""))
    if steps:
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=0, pad_token=vocabulary[0] or "[PAD]")
    return tokenizer


def _word_piece(bert_tokenizer, length: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    config = bert_tokenizer.get_config()
    vocabulary = list(bert_tokenizer.get_vocabulary())
    ids = {token: i for i, token in enumerate(vocabulary)}
    tokenizer = Tokenizer(models.WordPiece(
        ids, unk_token=config["oov_token"], continuing_subword_prefix=config["suffix_indicator"],
        max_input_chars_per_word=100,
    ))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=bool(config["strip_accents"]),
        lowercase=bool(config["lowercase"]),
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = bert_tokenizer.cls_token, bert_tokenizer.sep_token
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix=config["suffix_indicator"])
    pad = bert_tokenizer.pad_token
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=ids[pad], pad_token=pad)
    return tokenizer


def encode(tokenizer, fields: dict[str, str], texts) -> dict:
    """Model inputs for `texts`: `tokenizer` (a `tokenizers.Tokenizer`) encodes them and `fields`
    (input name -> `Encoding` field, from `input.json`) names the arrays, int32 each."""
    import numpy as np

    encodings = tokenizer.encode_batch([str(t) for t in texts])
    return {name: np.asarray([getattr(e, field) for e in encodings], dtype=np.int32)
            for name, field in fields.items()}

