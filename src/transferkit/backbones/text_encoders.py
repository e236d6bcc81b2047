"""Text encoders: the `TextEncoder` interface, and the registry of its kinds.

A text classifier is a text encoder plus a head. A kind of encoder is one module with one
`TextEncoder` subclass and one `register_text_encoder(...)` call; `TextClassifier` uses only the
interface below. Two kinds are registered:

* `"glove-bilstm"` (`transferkit.backbones.glove_bilstm`): frozen pretrained word vectors and a
  BiLSTM head that trains on token ids;
* sentence encoders (`transferkit.backbones.transformer_encoder`): a frozen transformer
  (all-MiniLM-L6-v2 by default) whose features are cached, and a linear head on them. It takes
  every other name: a packaged encoder (`"minilm"`), a model folder, a KerasHub preset.

What an encoder gives a classifier:

* `adapt(texts)` learns what it needs from the training texts (a vocabulary, a sequence length);
* `tokenizer()` is the Keras layer inside the saved model: strings -> fixed-length token ids;
* `build_network(outputs)` is the trainable network: token ids -> logits, encoder frozen;
* `features(texts)` are the frozen encoder's cached features, if the kind has them
  (`caches_features`): then `head(network)` trains on them first, in seconds an epoch;
* `unfreeze(network)` opens the encoder for fine-tuning;
* `tune_contrastive(...)` tunes the encoder on pairs of texts before the head, if the kind can
  (`contrastive`; `strategy="contrastive"`, see `transferkit.training.contrastive`).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from transferkit.backbones.registry import Registry
from transferkit.config import TextTrainConfig
from transferkit.errors import InputError

__all__ = [
    "EncoderDefaults",
    "TEXT_ENCODERS",
    "TextEncoder",
    "describe_default",
    "register_text_encoder",
    "text_encoder_class",
    "tokenize",
]


@dataclass(frozen=True)
class EncoderDefaults:
    """The training defaults that depend on the kind of encoder (`None` in `TextTrainConfig`).

    Args:
        epochs: the most head epochs.
        learning_rate: Adam's learning rate for the head.
        fine_tune_learning_rate: Adam's learning rate when the encoder is unfrozen.
        max_length: tokens per text; `None`: chosen from the training texts.
        fine_tune_batch_size: the most texts per fine-tuning step (gradients through a
            transformer are memory-hungry); `None`: the training batch size.
        regression_learning_rate: the head's learning rate for a regression target; `None`:
            `learning_rate`.
    """

    epochs: int
    learning_rate: float
    fine_tune_learning_rate: float
    max_length: int | None
    fine_tune_batch_size: int | None = None
    regression_learning_rate: float | None = None


class TextEncoder(abc.ABC):
    """Strings -> what a text classifier's head learns from. One subclass per kind.

    The constructor stores its arguments and loads nothing; options another kind owns are refused.

    Args:
        source: what the user named: `"glove-bilstm"`, `"minilm"`, a folder, a preset.
        max_length: tokens per text. Default `None`: the kind's default (`defaults.max_length`).
        seed: seed of anything random (new word vectors). Default `TextTrainConfig.seed`.
        cache_dir: where features are cached (kinds that cache). Default `None`: the
            transferkit cache's `features/text`.
        **options: the kind's own options (`option_defaults`); `None` keeps the default.

    Attributes:
        sequence_length: the tokenizer's fixed output length, set by `adapt`.
        info: facts for reports (coverage, speed), filled as the encoder works.
    """

    kind: ClassVar[str]
    label: ClassVar[str]  # who it is, in help texts: "glove-bilstm", "sentence encoders"
    example: ClassVar[str]  # a name that picks this kind, for messages
    defaults: ClassVar[EncoderDefaults]
    option_defaults: ClassVar[dict[str, Any]] = {}
    caches_features: ClassVar[bool] = False
    contrastive: ClassVar[bool] = False  # has `tune_contrastive`
    fallback: ClassVar[bool] = False  # takes every name no other kind registered

    def __init__(self, source: str | os.PathLike, *, max_length: int | None = None,
                 seed: int = TextTrainConfig.seed, cache_dir: str | os.PathLike | None = None,
                 runtime: str = TextTrainConfig.runtime, **options: Any):
        self.source = os.fspath(source)
        self.runtime = runtime
        self.max_length = max_length
        self.seed = seed
        self.cache_dir = cache_dir
        for name, value in options.items():
            if value is not None and name not in self.option_defaults:
                owners = [k for k in _kinds() if name in k.option_defaults]
                raise InputError(
                    f"`{name}` is an option of {' and '.join(k.label for k in owners)}, not of "
                    f"{self.source!r} ({self.label}). Leave `{name}` unset, or pick an encoder "
                    f"it applies to, such as {' or '.join(repr(k.example) for k in owners)}."
                )
        self.options = {
            name: default if options.get(name) is None else options[name]
            for name, default in self.option_defaults.items()
        }
        self.sequence_length: int | None = None
        self.info: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"

    def check(self) -> None:
        """Raises for settings or sources that cannot work, cheaply (loads no weights)."""

    @abc.abstractmethod
    def adapt(self, texts: list[str], state_dir: Path | None = None) -> None:
        """Learns from the training texts what tokenizing needs; sets `sequence_length`.

        Args:
            texts: the training texts only (fitting on validation or test texts leaks them).
            state_dir: a run folder; what was learned is kept there, so that a resumed run uses
                exactly what its checkpoints were trained with. Default `None`.
        """

    @abc.abstractmethod
    def tokenizer(self):
        """The Keras layer (`transferkit.layers.TextInputs`): strings -> token ids dict."""

    @abc.abstractmethod
    def build_network(self, outputs: int, features: np.ndarray | None = None):
        """The trainable network (a `keras.Model` named `"network"`): token ids -> logits.

        Args:
            outputs: the number of logits (`Classifier.num_logits`: one for two classes).
            features: the training texts' `features(...)`, for kinds that cache them (a head may
                standardise with them). Default `None`.
        """

    def features(self, texts: list[str], verbose: bool = False) -> np.ndarray:
        """The frozen encoder's features of `texts`, cached (kinds with `caches_features`)."""
        raise InputError(f"{self.label} encoders have no frozen features to cache.")

    def head(self, network):
        """The part of `network` trained on `features` in the head phase."""
        raise InputError(f"{self.label} encoders train their whole network on token ids.")

    def tune_contrastive(self, train: tuple[list[str], np.ndarray],
                         validation: tuple[list[str], np.ndarray] | None, **settings) -> list[dict]:
        """Tunes the encoder on pairs of `train` texts (`(texts, targets)`) before the head
        phase; `settings` are `transferkit.training.contrastive.tune_on_pairs`'s. Returns the
        phase's history rows. Afterwards `features` are the tuned encoder's."""
        raise InputError(f"{self.label} encoders cannot be tuned on pairs of texts.")

    @abc.abstractmethod
    def unfreeze(self, network) -> None:
        """Makes the encoder inside `network` trainable, for fine-tuning."""

    def describe(self) -> dict[str, Any]:
        """Plain data about the encoder, for the model's metadata and the report."""
        return {"kind": self.kind, "source": self.source, "sequence_length": self.sequence_length,
                **self.options, **self.info}


TEXT_ENCODERS = Registry(
    "text encoder",
    (
        "transferkit.backbones.glove_bilstm",
        "transferkit.backbones.transformer_encoder",
    ),
)
_FALLBACK: list[type[TextEncoder]] = []


def register_text_encoder(cls: type[TextEncoder], names: tuple[str, ...] = ()) -> type[TextEncoder]:
    """Registers a kind of text encoder under `names` (its `kind` if none); returns it.

    A class with `fallback = True` also takes every name no kind registered (model folders,
    presets); one kind may be the fallback.
    """
    names = names or (cls.kind,)
    if cls.fallback and _FALLBACK:
        raise ValueError(f"{_FALLBACK[0].__name__} already takes every other encoder name.")
    TEXT_ENCODERS.register(names[0], cls, aliases=names[1:])
    if cls.fallback:
        _FALLBACK.append(cls)
    return cls


def _kinds() -> list[type[TextEncoder]]:
    """The registered kinds, by name (not by which module happened to be imported first)."""
    return [TEXT_ENCODERS.get(name) for name in TEXT_ENCODERS.names()]


def text_encoder_class(source: str | os.PathLike) -> type[TextEncoder]:
    """The kind of encoder `source` names (`"glove-bilstm"`, `"minilm"`, a folder, a preset)."""
    kind = TEXT_ENCODERS.find(os.fspath(source))
    if kind is not None:
        return kind
    if _FALLBACK:
        return _FALLBACK[0]
    return TEXT_ENCODERS.get(os.fspath(source))  # raises, naming the nearest kinds


def text_encoder_table(pattern: str = "*") -> list[dict]:
    """One dict of plain data per named text encoder (`--encoder NAME`), as `backbone_table`
    gives the image backbones: `modality` ("text"), `name`, `family`, `feature_dim` (the
    sentence vector's; None for the BiLSTM, which learns its own), `available_offline`, `pip`,
    `description`, `license`. The packaged sentence encoders, and GloVe + BiLSTM on its
    packaged word vectors."""
    import fnmatch

    from transferkit.backbones.sentence_encoders import (
        get_sentence_encoder_spec,
        list_sentence_encoders,
    )
    from transferkit.backbones.word_vectors import DEFAULT_WORD_VECTORS, get_word_vectors_spec

    vectors = get_word_vectors_spec(DEFAULT_WORD_VECTORS)
    rows = [{
        "modality": "text", "name": "glove-bilstm", "family": "word vectors + BiLSTM",
        "feature_dim": None, "available_offline": vectors.available(), "pip": vectors.pip_name,
        "description": f"{vectors.name} word vectors (frozen, then fine-tunable) and a BiLSTM "
                       "trained on your texts",
        "license": vectors.license,
    }]
    for name in list_sentence_encoders():
        spec = get_sentence_encoder_spec(name)
        rows.append({"modality": "text", "name": spec.name, "family": "sentence transformer",
                     "feature_dim": spec.dim, "available_offline": spec.available(),
                     "pip": spec.pip_name, "description": spec.description,
                     "license": spec.license})
    return [row for row in rows if fnmatch.fnmatchcase(row["name"], pattern)]


def describe_default(option: str) -> str:
    """What a `None` setting of `TextTrainConfig` means, per kind: `"30 for glove-bilstm, 100 for
    sentence encoders"`."""
    parts = []
    for kind in _kinds():
        if option in kind.option_defaults:
            value = kind.option_defaults[option]
        elif hasattr(kind.defaults, option):
            value = getattr(kind.defaults, option)
        else:
            continue
        shown = "chosen from the training texts" if value is None else value
        regression = getattr(kind.defaults, "regression_learning_rate", None)
        if option == "learning_rate" and regression is not None:
            shown = f"{shown} ({regression} for regression)"
        parts.append(f"{shown} for {kind.label}")
    return "; ".join(parts) or "the encoder's"


def tokenize(layer, texts, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Runs a tokenizer layer (`TextEncoder.tokenizer()`) over `texts` in chunks.

    Returns:
        name -> int32 array `(len(texts), sequence_length)`.
    """
    import keras

    from transferkit.training.distribute import outside

    texts = [str(t) for t in texts]
    parts: dict[str, list[np.ndarray]] = {}
    with outside():  # strings in: no device placement
        for start in range(0, len(texts), chunk):
            batch = np.asarray(texts[start : start + chunk], dtype=object)
            for name, value in _tokenized(layer, batch).items():
                parts.setdefault(name, []).append(
                    np.asarray(keras.ops.convert_to_numpy(value), dtype=np.int32))
    if not parts:
        return {name: np.zeros((0, layer.sequence_length), np.int32) for name in layer.names}
    return {name: np.concatenate(values) for name, values in parts.items()}


def _tokenized(layer, batch: np.ndarray) -> dict:
    """`layer(batch)`; on JAX or torch the wrapped tokenizer itself (Keras's and KerasHub's
    preprocessing layers take strings on every backend; a plain layer's call would first turn
    them into the backend's numeric arrays and fail)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return layer(batch)
    outputs = layer.tokenizer(batch)
    if not isinstance(outputs, dict):
        outputs = {"token_ids": outputs}
    return {name: outputs[name] for name in layer.names}
