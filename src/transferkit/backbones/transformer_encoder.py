"""Sentence encoders as text encoders: a frozen transformer, cached features, a linear head.

The kind behind `--encoder minilm` and every name no other kind registered (a model folder, a
KerasHub preset). The encoder stays frozen while its features (by default every layer's
mean-pooled output, concatenated; or the sentence vector, see
`transferkit.backbones.sentence_encoders`) are computed once and cached on disk, and a linear head
trains on them in seconds per epoch. Fine-tuning then trains encoder and head together at a low
learning rate. The saved model starts with KerasHub's own tokenizer (`TextInputs` around
`TextClassifierPreprocessor`), so it takes strings.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from transferkit.backbones.text_encoders import (
    EncoderDefaults,
    TextEncoder,
    register_text_encoder,
    tokenize,
)

__all__ = ["SentenceTransformer", "build_sentence_head"]

_FEATURES_VERSION = 2  # bump when the way features are computed changes, to retire old caches
_EMBED_BATCH_SIZE = 64  # texts per forward pass of the frozen encoder (inference only)


def build_sentence_head(dim: int, outputs: int, *, dropout: float, hidden_units: int,
                        normalization_data: np.ndarray | None = None):
    """The head on sentence features: (`Normalization`) -> `Dropout` -> (`Dense(hidden_units,
    relu)`) -> logits.

    Args:
        dim: the features' dimension.
        outputs: the number of logits.
        dropout: dropout rate on the features.
        hidden_units: a hidden layer's units; `0` for a linear (logistic) head.
        normalization_data: training features; when given, a `Normalization` layer adapted to
            them standardises every feature first (mean 0, variance 1), as one would for a
            logistic regression. Default `None`: no such layer.

    Returns:
        A `keras.Model` named `"head"`: `(batch, dim)` -> logits.
    """
    import keras

    inputs = keras.Input((dim,), name="sentence_features")
    x = inputs
    if normalization_data is not None:
        normalization = keras.layers.Normalization(name="head_standardize")
        normalization.adapt(np.asarray(normalization_data, dtype=np.float32))
        x = normalization(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
    logits = keras.layers.Dense(outputs, name="head_logits")(x)
    return keras.Model(inputs, logits, name="head")


def _texts_digest(texts) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(str(text).encode("utf-8", errors="surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


class SentenceTransformer(TextEncoder):
    """A frozen KerasHub transformer with mean pooling, its features cached, a linear head on them.

    Options (of `TextClassifier` and `train text`):
        features: `"layers"` (every layer's mean-pooled output, concatenated; about two points
            more accurate on rt-polarity) or `"sentence"` (the encoder's own sentence vector).
            Default `"layers"`.
        head_units: hidden units of the head; `0` is a linear head. Default `0`.
        dropout: dropout rate on the features before the head. Default `0.5`.
    """

    kind = "sentence-encoder"
    label = "sentence encoders"
    example = "minilm"
    defaults = EncoderDefaults(
        epochs=100,
        # A linear head on standardised layer features with dropout 0.5. On rt-polarity (three
        # seeded splits) 3e-4 and 1e-4 score about half a point higher than 1e-3, within the
        # spread, but take too few steps to converge on a few hundred texts; 1e-3 does both.
        learning_rate=1e-3,
        fine_tune_learning_rate=2e-5,
        max_length=None,  # the 95th percentile of the training texts' token counts, <= 256
        fine_tune_batch_size=16,
        # A regression head at 1e-3 stops early on a noisy validation loss: EmoBank valence MAE
        # 0.209, R² 0.35; at 1e-4 0.191, R² 0.42 over three seeds (ridge: 0.192, 0.43;
        # benchmarks/targets.py). 3e-4 and 3e-5 were no better.
        regression_learning_rate=1e-4,
    )
    option_defaults = {"features": "layers", "head_units": 0, "dropout": 0.5}
    caches_features = True
    contrastive = True
    fallback = True

    def sentence_encoder(self):
        """The loaded sentence encoder (`transferkit.backbones.sentence_encoders`), once."""
        from transferkit.backbones.sentence_encoders import load_sentence_encoder

        if getattr(self, "_loaded", None) is None:
            self._loaded = load_sentence_encoder(self.source)
        return self._loaded

    def check(self) -> None:
        from transferkit.backbones.sentence_encoders import (
            check_features,
            check_max_length,
            resolve_encoder,
        )

        check_features(self.options["features"])
        preset = resolve_encoder(self.source)[0]
        if self.max_length is not None:
            check_max_length(preset, int(self.max_length))

    def adapt(self, texts: list[str], state_dir: Path | None = None) -> None:
        from transferkit.backbones.sentence_encoders import check_features, choose_sequence_length

        check_features(self.options["features"])
        encoder = self.sentence_encoder()
        length = self.max_length
        if length is None:
            counts = encoder.token_counts(texts)
            length = choose_sequence_length(counts, cap=min(256, encoder.max_sequence_length))
            self.info["longest_training_text"] = int(counts.max()) if len(counts) else 0
        self.sequence_length = int(length)
        self._tokenizer = encoder.text_inputs(self.sequence_length)
        self.info["sentence_encoder"] = _summary(encoder)

    def tokenizer(self):
        return self._tokenizer

    def features(self, texts: list[str], verbose: bool = False) -> np.ndarray:
        """The frozen encoder's features of `texts`, cached on disk by content."""
        import keras

        from transferkit.files import cache_dir
        from transferkit.training.feature_cache import FeatureCache

        encoder = self.sentence_encoder()
        features = self.options["features"]
        cache = FeatureCache(self.cache_dir or cache_dir("features", "text"))
        key = cache.key(
            kind=f"sentence-{features}", version=_FEATURES_VERSION, encoder=encoder.fingerprint,
            pooling=encoder.pooling, normalize=encoder.normalize,
            sequence_length=self.sequence_length, texts=_texts_digest(texts),
        )
        cached = cache.get(key)
        if cached is not None and cached.shape == (len(texts), encoder.feature_dim(features)):
            return cached
        inputs = tokenize(self._tokenizer, texts)
        bar = keras.utils.Progbar(len(texts), unit_name="text") if verbose else None
        progress = None if bar is None else (lambda done, total: bar.update(done))
        started = time.perf_counter()
        vectors = encoder.embed(inputs, features=features, batch_size=_EMBED_BATCH_SIZE,
                                progress=progress, runtime=self.runtime, cache=cache.root)
        self.info["runtime"] = encoder.last_runtime
        self._count_speed(len(texts), time.perf_counter() - started)
        cache.put(key, vectors)
        return vectors

    def _count_speed(self, texts: int, seconds: float) -> None:
        # Totals over every pass this encoder computed (cache hits are not counted).
        stats = self.info.get("embedding") or {"texts": 0, "seconds": 0.0}
        total_texts, total_seconds = stats["texts"] + texts, stats["seconds"] + seconds
        self.info["embedding"] = {
            "texts": total_texts,
            "seconds": round(total_seconds, 2),
            "sentences_per_second": round(total_texts / total_seconds, 1)
            if total_seconds > 0 else None,
        }

    def tune_contrastive(self, train, validation, **settings) -> list[dict]:
        from transferkit.backbones.sentence_encoders import set_trainable
        from transferkit.training.contrastive import tune_on_pairs, weights_digest

        encoder = self.sentence_encoder()
        set_trainable(encoder.backbone)
        started = time.perf_counter()
        rows = tune_on_pairs(
            encoder, (tokenize(self._tokenizer, train[0]), np.asarray(train[1])),
            None if validation is None else
            (tokenize(self._tokenizer, validation[0]), np.asarray(validation[1])),
            **settings,
        )
        # The tuned weights are another encoder: their features must not be read from (or
        # written to) the pretrained encoder's cache entries.
        base = encoder.fingerprint.split("+contrastive-")[0]
        encoder.fingerprint = f"{base}+contrastive-{weights_digest(encoder.backbone)}"
        self.info["sentence_encoder"] = _summary(encoder)
        self.info["contrastive"] = {
            "pairs": settings["pairs"], "epochs": settings["epochs"],
            "learning_rate": settings["learning_rate"],
            "seconds": round(time.perf_counter() - started, 1),
        }
        return rows

    def build_network(self, outputs: int, features: np.ndarray | None = None):
        import keras

        encoder = self.sentence_encoder()
        kind = self.options["features"]
        head = build_sentence_head(
            encoder.feature_dim(kind), outputs, dropout=self.options["dropout"],
            hidden_units=self.options["head_units"], normalization_data=features,
        )
        inputs = encoder.inputs()
        logits = head(encoder.pool(inputs, kind))
        # Freeze the model that sits in the network (for layer features not the backbone, whose
        # layers it shares): `unfreeze` setting it trainable again then reaches every layer.
        encoder.encoder_model(kind).trainable = False
        return keras.Model(inputs, logits, name="network")

    def head(self, network):
        return network.get_layer("head")

    def unfreeze(self, network) -> None:
        from transferkit.backbones.sentence_encoders import set_trainable

        for layer in network.layers:
            set_trainable(layer)


def _summary(encoder) -> dict:
    return {
        "source": encoder.source,
        "backbone": type(encoder.backbone).__name__,
        "dim": encoder.dim,
        "pooling": encoder.pooling,
        "normalize": encoder.normalize,
        "fingerprint": encoder.fingerprint,
    }


register_text_encoder(SentenceTransformer)
