"""Text classification by transfer learning: word vectors + BiLSTM, or a sentence encoder.

Two encoders, one task:

* `"glove-bilstm"`: Keras `TextVectorization` fitted on the training texts, a frozen embedding
  initialised from pretrained word vectors (GloVe 6B 50d by default), two bidirectional LSTMs and
  a small dense head. Fine-tuning unfreezes the embedding at a low learning rate.
* `"minilm"` (or any mean-pooling sentence-transformers model): the encoder stays frozen, its
  features (by default every layer's mean-pooled output, concatenated; or the sentence vector)
  are computed once and cached on disk, and a linear head trains on them in seconds per epoch.
  Fine-tuning then trains encoder and head together at a low learning rate.

Either way the saved `.keras` file is one Keras model from token ids to class probabilities whose
last layer is `ClassLabels` (task `"text"`): the class names and, in its metadata, the tokenizer
(vocabulary and settings as plain data). So `transferkit.load(path)` gives back a `TextClassifier`
that takes raw strings, and the file loads with `safe_mode=True`.

Tokenizing runs outside the model (TensorFlow string ops, on any Keras backend); the model itself
is plain Keras layers. Batches group texts of similar length and are padded only to their longest
text, which is what makes CPU training and embedding fast.

Example:
    >>> clf = TextClassifier(encoder="minilm").fit(texts, labels, validation_data=(vt, vl))
    >>> clf.predict(["a gripping, beautifully shot film"])
    [{'label': 'positive', 'score': 0.97}]
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.backbones.sentence_encoders import check_features, padded_batches, predict_padded
from transferkit.errors import DataError, InputError

__all__ = [
    "WORD_VECTOR_ENCODERS",
    "TextClassificationPipeline",
    "TextClassifier",
    "build_bilstm_model",
    "pipeline",
    "train_text_classifier",
]

# Encoder names that mean "word vectors + BiLSTM"; every other name is a sentence encoder.
WORD_VECTOR_ENCODERS = ("glove-bilstm",)

# Defaults per kind of encoder; `None` arguments of `TextClassifier` take these.
_DEFAULTS = {
    "word": {
        "epochs": 30,
        "batch_size": 32,
        # The seed's Dense(6, relu) bottleneck loses all its units at Adam's usual 1e-3 on some
        # seeds (the loss then stays at log 2); 3e-4 trains every seed we tried, and faster.
        "learning_rate": 3e-4,
        "fine_tune_learning_rate": 3e-5,
        "max_length": 100,
        "features": None,
    },
    "sentence": {
        "epochs": 100,
        "batch_size": 32,
        # A linear head on standardised layer features with dropout 0.5. On rt-polarity (three
        # seeded splits) 3e-4 and 1e-4 score about half a point higher than 1e-3, within the
        # spread, but take too few steps to converge on a few hundred texts; 1e-3 does both.
        "learning_rate": 1e-3,
        "fine_tune_learning_rate": 2e-5,
        "features": "layers",
        "max_length": None,  # the 95th percentile of the training texts' token counts, <= 256
    },
}


def _kind(encoder: str) -> str:
    return "word" if str(encoder).strip().lower() in WORD_VECTOR_ENCODERS else "sentence"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(str(text).encode("utf-8", errors="surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


# -- models ---------------------------------------------------------------------------------------


def _output_layer(num_classes: int):
    import keras

    if num_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name="predictions")
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")


def build_bilstm_model(
    embedding_matrix: np.ndarray,
    num_classes: int,
    lstm_units: int = 150,
    dense_units: int = 6,
):
    """The word-vector classifier, without its labels layer.

    `{"token_ids": (batch, length) int32}` -> frozen `Embedding` (initialised from
    `embedding_matrix`, padding id 0 masked) -> `Bidirectional(LSTM(lstm_units,
    return_sequences=True))` -> `Bidirectional(LSTM(lstm_units))` -> `Dense(dense_units, relu)` ->
    `Dense(1, sigmoid)` for two classes, `Dense(num_classes, softmax)` for more.

    Args:
        embedding_matrix: float32 `(vocabulary_size, dim)`; the embedding's width is `dim`.
        num_classes: the number of classes (>= 2).
        lstm_units: units of each LSTM direction. Default `150`.
        dense_units: units of the hidden dense layer. Default `6`.

    Returns:
        `(inputs, outputs)` symbolic tensors, to close with `ClassLabels` into a model.
    """
    import keras

    vocabulary_size, dim = embedding_matrix.shape
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    embedding = keras.layers.Embedding(
        vocabulary_size,
        dim,
        mask_zero=True,
        trainable=False,
        embeddings_initializer=keras.initializers.Constant(embedding_matrix),
        name="word_embedding",
    )
    x = embedding(token_ids)
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(lstm_units, return_sequences=True), name="bilstm_1"
    )(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(lstm_units), name="bilstm_2")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    return {"token_ids": token_ids}, _output_layer(num_classes)(x)


def build_sentence_head(
    dim: int,
    num_classes: int,
    dropout: float = 0.5,
    hidden_units: int = 0,
    normalization_data: np.ndarray | None = None,
):
    """The head on sentence features: (`Normalization`) -> `Dropout` -> (`Dense(hidden_units,
    relu)`) -> output layer.

    Args:
        dim: the features' dimension.
        num_classes: the number of classes (>= 2).
        dropout: dropout rate on the features. Default `0.5`.
        hidden_units: a hidden layer's units; `0` (default) for a linear (logistic) head.
        normalization_data: training features; when given, a `Normalization` layer adapted to
            them standardises every feature first (mean 0, variance 1), as one would for a
            logistic regression. Default `None`: no such layer.

    Returns:
        A `keras.Model` named `"head"`: `(batch, dim)` -> probabilities.
    """
    import keras

    inputs = keras.Input((dim,), name="sentence_vector")
    x = inputs
    if normalization_data is not None:
        normalization = keras.layers.Normalization(name="head_standardize")
        normalization.adapt(np.asarray(normalization_data, dtype=np.float32))
        x = normalization(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
    return keras.Model(inputs, _output_layer(num_classes)(x), name="head")


def _check_features_setting(encoder, features, option: str, fix: str) -> None:
    """`features` must be unset for word vectors and one of `SENTENCE_FEATURES` otherwise.

    `option` names the setting in the message (`--features` or `` `features` ``), `fix` ends it.
    """
    if _kind(encoder) == "word":
        if features is not None:
            raise InputError(
                f"{option} chooses what a sentence encoder gives its head; {os.fspath(encoder)!r} "
                f"uses word vectors and a BiLSTM. {fix}"
            )
    elif features is not None:
        check_features(features)


def _compile(model, num_classes: int, learning_rate: float) -> None:
    import keras

    loss = "binary_crossentropy" if num_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])


def _targets(y: np.ndarray, num_classes: int) -> np.ndarray:
    y = np.asarray(y)
    return y.astype(np.float32).reshape(-1, 1) if num_classes == 2 else y.astype(np.int32)


def _probabilities(outputs: np.ndarray, num_classes: int) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    if num_classes == 2 and outputs.shape[-1] == 1:
        positive = outputs[:, 0]
        return np.stack([1.0 - positive, positive], axis=1)
    return outputs


def _preprocessor_from_config(config: dict):
    kind = config.get("kind")
    if kind == "text_vectorization":
        from transferkit.backbones.word_vectors import WordTokenizer

        return WordTokenizer.from_config(config)
    if kind == "keras_hub_tokenizer":
        from transferkit.backbones.sentence_encoders import SentenceTokenizer

        return SentenceTokenizer.from_config(config)
    raise InputError(
        f"Unknown tokenizer kind {kind!r} in the model's metadata; it was saved by a newer or "
        "different transferkit. Retrain it with this version."
    )


@contextlib.contextmanager
def _run_directory(run):
    from transferkit.training.run import RunDirectory

    if run is not None:
        yield run if isinstance(run, RunDirectory) else RunDirectory(run)
        return
    with tempfile.TemporaryDirectory(prefix="transferkit-text-") as folder:
        yield RunDirectory(folder)


# -- the task -------------------------------------------------------------------------------------


class TextClassifier:
    """A text classifier trained by transfer learning.

    The constructor only stores its arguments; `fit` trains the head, `fine_tune` (optional)
    unfreezes the encoder. `None` means "the encoder's default" (see each argument).

    Args:
        encoder: `"glove-bilstm"` (default), `"minilm"`, a sentence-transformers model folder, or a
            KerasHub preset (`hf://...`, a Kaggle preset name) for users online.
        word_vectors: for `"glove-bilstm"`: a packaged name or a GloVe/word2vec/fastText file.
            Default `None`: `"glove-6b-50d"`.
        max_length: the most tokens per text. Default `None`: 100 words for `"glove-bilstm"`; for
            sentence encoders the 95th percentile of the training texts' token counts (<= 256).
        vocabulary_size: word ids in all for `"glove-bilstm"` (padding and OOV included).
            Default `10_000`.
        epochs: the most epochs of the head phase (early stopping usually ends it sooner).
            Default `None`: 30 for `"glove-bilstm"`, 100 for sentence encoders (seconds each).
        batch_size: texts per training batch. Default `None`: 32.
        learning_rate: Adam's learning rate for the head phase. Default `None`: `3e-4` for
            `"glove-bilstm"`, `1e-3` for a sentence encoder's head.
        fine_tune_learning_rate: for `fine_tune`. Default `None`: `3e-5` (embedding) or `2e-5`
            (transformer).
        patience: epochs without a better validation loss before stopping. Default `10`.
        head_units: hidden units of a sentence encoder's head; `0` (default) is a linear head.
        features: what a frozen sentence encoder gives its head: `"layers"` (every layer's
            mean-pooled output, concatenated; about two points more accurate on rt-polarity) or
            `"sentence"` (the encoder's own sentence vector). Default `None`: `"layers"`.
        seed: seed of weights, shuffling and dropout. Default `0`.
        cache_dir: where the encoder's features are cached. Default `None`: `default_cache_root()`.
        verbose: Keras's `verbose` for training, and progress lines on stderr when truthy.
            Default `"auto"`.
    """

    def __init__(
        self,
        encoder: str = "glove-bilstm",
        *,
        word_vectors: str | os.PathLike | None = None,
        max_length: int | None = None,
        vocabulary_size: int = 10_000,
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        fine_tune_learning_rate: float | None = None,
        patience: int = 10,
        head_units: int = 0,
        features: str | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        verbose: Any = "auto",
    ):
        self.encoder = encoder
        self.word_vectors = word_vectors
        self.max_length = max_length
        self.vocabulary_size = vocabulary_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.patience = patience
        self.head_units = head_units
        self.features = features
        self.seed = seed
        self.cache_dir = cache_dir
        self.verbose = verbose
        # Set by fit / from_keras_model:
        self.model = None
        self.class_names: list[str] | None = None
        self.preprocessor = None
        self.metadata: dict = {}
        self.history: list[dict] = []
        self.coverage: dict | None = None
        self.embedding_stats: dict | None = None
        self._encoder = None
        self._head = None
        self._word_vectors_found = None

    def __repr__(self) -> str:
        state = f"classes={self.class_names}" if self.class_names else "not fitted"
        return f"TextClassifier(encoder={self.encoder!r}, {state})"

    def get_config(self) -> dict:
        """The constructor's arguments, as plain data."""
        return {
            "encoder": os.fspath(self.encoder),
            "word_vectors": None if self.word_vectors is None else os.fspath(self.word_vectors),
            "max_length": self.max_length,
            "vocabulary_size": self.vocabulary_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "fine_tune_learning_rate": self.fine_tune_learning_rate,
            "patience": self.patience,
            "head_units": self.head_units,
            "features": self.features,
            "seed": self.seed,
            "cache_dir": None if self.cache_dir is None else os.fspath(self.cache_dir),
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict) -> TextClassifier:
        config = dict(config)
        return cls(config.pop("encoder", "glove-bilstm"), **config)

    # -- helpers --

    @property
    def kind(self) -> str:
        """`"word"` for word vectors + BiLSTM, `"sentence"` for a transformer sentence encoder."""
        return _kind(self.encoder)

    def _default(self, name: str):
        value = getattr(self, name)
        return _DEFAULTS[self.kind][name] if value is None else value

    def _say(self, message: str) -> None:
        if self.verbose:
            _log(message)

    def _check_fitted(self) -> None:
        if self.model is None:
            raise InputError(
                "This TextClassifier is not trained yet. Call `fit(texts, labels)` first, or load "
                "a saved one with `transferkit.load(path)`."
            )

    def _encode_labels(
        self, texts, labels, class_names=None
    ) -> tuple[list[str], np.ndarray, list[str]]:
        """`(texts, int labels, class names)`; the classes are learned from `labels` when
        `class_names` is None."""
        from transferkit.data.text import sort_class_names

        texts = [str(t) for t in texts]
        labels = [str(label) for label in labels]
        if len(texts) != len(labels):
            raise InputError(
                f"`texts` and `labels` must have the same length. Received: {len(texts)} texts and "
                f"{len(labels)} labels."
            )
        if not texts:
            raise DataError("No texts: `texts` is empty.")
        class_names = sort_class_names(labels) if class_names is None else list(class_names)
        if len(class_names) < 2:
            raise DataError(
                f"The labels have only one class ({class_names[0]!r}); a classifier needs at "
                "least two."
            )
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise DataError(
                f"Labels not among the classes {class_names}: {unknown[:10]}. Use the same classes "
                "as in training."
            )
        return texts, np.array([index[label] for label in labels], dtype=np.int64), class_names

    def _validation(self, validation_data, class_names):
        if validation_data is None:
            return None
        try:
            texts, labels = validation_data
        except (TypeError, ValueError):
            raise InputError(
                "`validation_data` must be a pair `(texts, labels)`. Received: "
                f"{type(validation_data).__name__}."
            ) from None
        return self._encode_labels(texts, labels, class_names)[:2]

    # -- training --

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence,
        validation_data: tuple | None = None,
        *,
        run=None,
    ) -> TextClassifier:
        """Fits the tokenizer on `texts` and trains the head on a frozen encoder.

        Args:
            texts: training texts.
            labels: one label per text (any type; stored as strings, classes sorted).
            validation_data: `(texts, labels)` for early stopping and the best epoch. Default
                `None`: the training loss is watched instead.
            run: a `RunDirectory` (or folder) for checkpoints, logs and history; a rerun on the same
                folder resumes. Default `None`: a temporary folder.

        Returns:
            `self`.

        Raises:
            InputError / DataError: mismatched lengths, fewer than two classes, bad settings.
        """
        import keras

        _check_features_setting(
            self.encoder,
            self.features,
            "`features`",
            "Leave `features` unset, or pick a sentence encoder such as 'minilm'. "
            f"Received: features={self.features!r}.",
        )
        texts, y, class_names = self._encode_labels(texts, labels)
        validation = self._validation(validation_data, class_names)
        keras.utils.set_random_seed(self.seed)
        self.embedding_stats = None
        self.class_names = class_names
        with _run_directory(run) as run_dir:
            if self.kind == "word":
                self._fit_word(texts, y, validation, run_dir)
            else:
                self._fit_sentence(texts, y, validation, run_dir)
        return self

    def fine_tune(
        self,
        texts: Sequence[str],
        labels: Sequence,
        validation_data: tuple | None = None,
        *,
        epochs: int = 2,
        run=None,
    ) -> TextClassifier:
        """Unfreezes the encoder (the embedding, or the transformer) and trains on at a low rate.

        Call after `fit`, with the same training texts.

        Args:
            texts: training texts.
            labels: their labels.
            validation_data: `(texts, labels)`. Default `None`.
            epochs: the most fine-tuning epochs. Default `2`.
            run: the same run folder as `fit`. Default `None`: a temporary folder.

        Returns:
            `self`.
        """
        import keras

        from transferkit.training.callbacks import fit_phase

        self._check_fitted()
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise InputError(f"`epochs` must be an int >= 0. Received: epochs={epochs!r}.")
        if epochs == 0:
            return self
        texts, y, _ = self._encode_labels(texts, labels, self.class_names)
        validation = self._validation(validation_data, self.class_names)
        keras.utils.set_random_seed(self.seed + 1)
        num_classes = len(self.class_names)
        for layer in self.model.layers:
            layer.trainable = True
        for layer in self.model.layers:
            # KerasHub BERT backbones carry a pooler our pooling does not use; frozen, so that no
            # "gradients do not exist" warning fires for it.
            if hasattr(layer, "get_layer"):
                with contextlib.suppress(ValueError):
                    layer.get_layer("pooled_dense").trainable = False
        learning_rate = self._default("fine_tune_learning_rate")
        _compile(self.model, num_classes, learning_rate)
        batch_size = self._default("batch_size")
        if self.kind == "sentence":
            batch_size = min(batch_size, 16)  # gradients through a transformer: smaller batches
        train, val = self._sequence_data(texts, y, validation, batch_size)
        self._say(
            f"fine-tuning the {self.kind == 'word' and 'embedding' or 'encoder'} "
            f"(learning rate {learning_rate:g}, at most {epochs} epochs)"
        )
        with _run_directory(run) as run_dir:
            rows = fit_phase(
                self.model,
                train,
                val,
                epochs=epochs,
                run=run_dir,
                phase="fine_tune",
                patience=self.patience,
                verbose=self.verbose,
                shuffle=False,  # the batches shuffle themselves, by length groups
            )
        self.history = [*self.history, *rows]
        self.metadata["fine_tuned"] = True
        self.metadata["fine_tune_learning_rate"] = learning_rate
        self._refresh_labels()
        return self

    def _sequence_data(self, texts, y, validation, batch_size):
        num_classes = len(self.class_names)
        train = padded_batches(
            self.preprocessor.encode(texts),
            self.preprocessor,
            batch_size,
            targets=_targets(y, num_classes),
            shuffle=True,
            seed=self.seed,
        )
        val = None
        if validation is not None:
            val = padded_batches(
                self.preprocessor.encode(validation[0]),
                self.preprocessor,
                64,
                targets=_targets(validation[1], num_classes),
            )
        return train, val

    def _fit_word(self, texts, y, validation, run) -> None:
        import keras

        from transferkit.backbones.word_vectors import (
            DEFAULT_WORD_VECTORS,
            WordTokenizer,
            coverage,
            embedding_matrix,
            load_word_vectors,
        )
        from transferkit.training.callbacks import fit_phase
        from transferkit.training.io import read_json, write_json

        max_length = self._default("max_length")
        saved = run.path / "tokenizer.json"
        if saved.is_file():  # a resumed run: the very vocabulary its checkpoints were trained with
            self.preprocessor = WordTokenizer.from_config(read_json(saved))
        else:
            self.preprocessor = WordTokenizer.adapt(
                texts, vocabulary_size=self.vocabulary_size, max_length=max_length
            )
            write_json(saved, self.preprocessor.get_config())
        source = self.word_vectors or DEFAULT_WORD_VECTORS
        vocabulary = self.preprocessor.get_vocabulary()
        self._say(f"reading word vectors {os.fspath(source)} for {len(vocabulary)} words")
        vectors = load_word_vectors(source, vocabulary=vocabulary[2:])
        matrix, found = embedding_matrix(vocabulary, vectors, seed=self.seed)
        sequences = self.preprocessor.encode(texts)
        self.coverage = coverage(found, sequences)
        self._say(
            f"word vectors: {vectors.dim}d, vocabulary coverage "
            f"{self.coverage['vocabulary_coverage']:.1%}, token coverage "
            f"{self.coverage['token_coverage']:.1%}"
        )
        num_classes = len(self.class_names)
        inputs, outputs = build_bilstm_model(matrix, num_classes)
        self.metadata = {
            "encoder": "glove-bilstm",
            "word_vectors": os.fspath(source),
            "embedding_dim": int(vectors.dim),
            "max_length": max_length,
            "output": "sigmoid" if num_classes == 2 else "softmax",
            "coverage": self.coverage,
            "fine_tuned": False,
        }
        self.model = keras.Model(inputs, self._labels_layer()(outputs), name="text_classifier")
        _compile(self.model, num_classes, self._default("learning_rate"))
        train, val = self._sequence_data(texts, y, validation, self._default("batch_size"))
        self._say(f"training the BiLSTM head on {len(texts)} texts (embedding frozen)")
        self.history = fit_phase(
            self.model,
            train,
            val,
            epochs=self._default("epochs"),
            run=run,
            phase="head",
            patience=self.patience,
            verbose=self.verbose,
            shuffle=False,
        )

    def _labels_layer(self):
        from transferkit.tasks.base import ClassLabels

        metadata = {**self.metadata, "preprocessor": self.preprocessor.get_config()}
        return ClassLabels(self.class_names, task="text", metadata=metadata)

    def _refresh_labels(self) -> None:
        """Keeps the labels layer's metadata in step with `self.metadata`."""
        from transferkit.tasks.base import labels_layer

        layer = labels_layer(self.model)
        layer.metadata = {**self.metadata, "preprocessor": self.preprocessor.get_config()}

    def _load_encoder(self):
        from transferkit.backbones.sentence_encoders import load_sentence_encoder

        if self._encoder is None:
            self._say(f"loading the sentence encoder {os.fspath(self.encoder)}")
            self._encoder = load_sentence_encoder(self.encoder)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The frozen encoder's features of `texts` (see `features`), cached on disk by content.

        Only for sentence encoders, after `fit` chose the sequence length (or with
        `max_length` set).

        Returns:
            float32 `(len(texts), feature_dim)`: 384 numbers a text for MiniLM's sentence vector,
            2,688 for its layer features.
        """
        from transferkit.training.feature_cache import FeatureCache, default_cache_root

        if self.kind != "sentence":
            raise InputError("`embed` is for sentence encoders; this classifier uses word vectors.")
        encoder = self._load_encoder()
        features = check_features(self._default("features"))
        if self.preprocessor is None:
            self.preprocessor = encoder.preprocessor(self.max_length or 128)
        texts = [str(t) for t in texts]
        cache = FeatureCache(self.cache_dir or default_cache_root())
        key = cache.key(
            kind="sentence_vectors" if features == "sentence" else f"sentence_{features}",
            encoder=encoder.fingerprint,
            pooling=encoder.pooling,
            normalize=encoder.normalize,
            sequence_length=self.preprocessor.sequence_length,
            texts=_texts_digest(texts),
        )
        cached = cache.get(key)
        if cached is not None and cached.shape == (len(texts), encoder.feature_dim(features)):
            return cached
        sequences = self.preprocessor.encode(texts)
        started = time.perf_counter()
        last = [started]

        def progress(done, total):
            now = time.perf_counter()
            if self.verbose and (now - last[0] > 10 or done == total):
                last[0] = now
                _log(f"  embedded {done}/{total} texts ({done / (now - started):.0f}/s)")

        vectors = encoder.embed(sequences, self.preprocessor, progress=progress, features=features)
        seconds = time.perf_counter() - started
        # Totals over every pass this classifier computed (cache hits are not counted).
        stats = self.embedding_stats or {"texts": 0, "seconds": 0.0}
        total_texts, total_seconds = stats["texts"] + len(texts), stats["seconds"] + seconds
        self.embedding_stats = {
            "texts": total_texts,
            "seconds": round(total_seconds, 2),
            "sentences_per_second": round(total_texts / total_seconds, 1)
            if total_seconds > 0
            else None,
        }
        cache.put(key, vectors)
        return vectors

    def _fit_sentence(self, texts, y, validation, run) -> None:
        import keras

        from transferkit.backbones.sentence_encoders import choose_sequence_length, encoder_summary
        from transferkit.training.callbacks import fit_phase

        encoder = self._load_encoder()
        max_length = self.max_length
        if max_length is None:
            counts = encoder.preprocessor(encoder.max_sequence_length).token_counts(texts)
            max_length = choose_sequence_length(counts, cap=min(256, encoder.max_sequence_length))
            self._say(
                f"sequence length {max_length} tokens (95th percentile of the training texts; "
                f"longest {int(counts.max())})"
            )
        self.preprocessor = encoder.preprocessor(int(max_length))
        num_classes = len(self.class_names)
        self._say(f"embedding {len(texts)} training texts with the frozen encoder")
        train_vectors = self.embed(texts)
        val = None
        if validation is not None:
            val = (self.embed(validation[0]), _targets(validation[1], num_classes))
        features = self._default("features")
        head = build_sentence_head(
            encoder.feature_dim(features),
            num_classes,
            hidden_units=self.head_units,
            normalization_data=train_vectors,
        )
        _compile(head, num_classes, self._default("learning_rate"))
        self._say(
            f"training the head on {len(texts)} cached feature vectors "
            f"({features}: {encoder.feature_dim(features)} numbers each)"
        )
        self.history = fit_phase(
            head,
            train_vectors,
            val,
            epochs=self._default("epochs"),
            run=run,
            phase="head",
            patience=self.patience,
            verbose=self.verbose,
            y=_targets(y, num_classes),
            batch_size=self._default("batch_size"),
            shuffle=True,
        )
        self._head = head
        self.metadata = {
            "encoder": os.fspath(self.encoder),
            "sentence_encoder": encoder_summary(encoder),
            "max_length": int(max_length),
            "features": features,
            "output": "sigmoid" if num_classes == 2 else "softmax",
            "fine_tuned": False,
        }
        inputs = encoder.inputs()
        outputs = head(encoder.pool(inputs, features))
        # Freeze the model that sits in the classifier (for layer features not the backbone, whose
        # layers it shares): `fine_tune` setting it trainable again then reaches every layer.
        encoder.encoder_model(features).trainable = False
        self.model = keras.Model(inputs, self._labels_layer()(outputs), name="text_classifier")

    # -- inference --

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities, `(len(texts), len(class_names))`, columns in `class_names` order."""
        self._check_fitted()
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.class_names)))
        if self._head is not None and not self.metadata.get("fine_tuned"):
            # Right after `fit`: the frozen encoder's vectors are cached, only the head runs.
            outputs = self._head.predict(self.embed(texts), batch_size=256, verbose=0)
            return _probabilities(outputs, len(self.class_names))
        outputs = predict_padded(
            self.model, self.preprocessor.encode(texts), self.preprocessor, batch_size
        )
        return _probabilities(outputs, len(self.class_names))

    def predict(self, texts: str | Sequence[str], batch_size: int = 64) -> list[dict]:
        """The most likely label of each text and its probability.

        Args:
            texts: a string or a list of strings.
            batch_size: texts per forward pass. Default `64`.

        Returns:
            `[{"label": str, "score": float}, ...]`, one per text, like a Hugging Face pipeline.
        """
        probabilities = self.predict_proba(texts, batch_size)
        best = probabilities.argmax(axis=1) if len(probabilities) else []
        return [
            {"label": self.class_names[i], "score": float(probabilities[row, i])}
            for row, i in enumerate(best)
        ]

    def evaluate(
        self,
        data,
        report_dir: str | os.PathLike | None = None,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        batch_size: int = 64,
    ) -> dict:
        """Accuracy and per-class metrics on labelled texts; optionally a full report.

        Args:
            data: a table (CSV, TSV, JSON Lines, Parquet; columns as for training) or a pair
                `(texts, labels)`.
            report_dir: also write `metrics.json`, `summary.txt`, `confusion_matrix.png` and
                `mistakes.txt` here. Default `None`.
            text_column: the texts' column. Default `None`: the training column if present, else
                guessed.
            label_column: the labels' column. Default `None`: as for `text_column`.
            batch_size: texts per forward pass. Default `64`.

        Returns:
            `accuracy`, `n`, `classes`, `per_class`, `macro_avg`, `confusion_matrix`,
            `dropped_rows` (rows of the table that could not be used).

        Raises:
            DataError: labels that are not among the model's classes (the message lists them).
        """
        from transferkit.reports import write_classification_report, write_text_mistakes
        from transferkit.reports.metrics import classification_metrics

        self._check_fitted()
        dropped = 0
        if isinstance(data, (str, os.PathLike)):
            table = self._read_table(data, text_column, label_column)
            texts, labels, dropped = table.texts, table.labels, table.num_dropped
        else:
            try:
                texts, labels = data
            except (TypeError, ValueError):
                raise InputError(
                    "`data` must be a table path or a pair `(texts, labels)`. Received: "
                    f"{type(data).__name__}."
                ) from None
        texts, y, _ = self._encode_labels(texts, labels, self.class_names)
        probabilities = self.predict_proba(texts, batch_size)
        if report_dir is not None:
            report = write_classification_report(
                report_dir,
                y_true=y,
                probabilities=probabilities,
                class_names=self.class_names,
                title="Text classifier: evaluation",
            )
            predicted = probabilities.argmax(axis=1)
            write_text_mistakes(
                Path(report_dir) / "mistakes.txt",
                texts,
                [self.class_names[i] for i in y],
                [self.class_names[i] for i in predicted],
                probabilities.max(axis=1),
            )
            metrics = dict(report)
        else:
            metrics = classification_metrics(y, probabilities, self.class_names)
        metrics["classes"] = list(self.class_names)
        metrics["dropped_rows"] = dropped
        return metrics

    def _read_table(self, path, text_column, label_column):
        from transferkit.data.text import read_text_table

        if text_column is None or label_column is None:
            # Prefer the columns the model was trained with, when the table has them.
            try:
                return read_text_table(
                    path,
                    text_column or self.metadata.get("text_column"),
                    label_column or self.metadata.get("label_column"),
                )
            except DataError:
                if not (self.metadata.get("text_column") or self.metadata.get("label_column")):
                    raise
        return read_text_table(path, text_column, label_column)

    # -- saving --

    def save(self, path: str | os.PathLike) -> Path:
        """Saves the classifier as one `.keras` file (atomically). Returns the path."""
        from transferkit.training.io import save_model_atomic

        self._check_fitted()
        path = Path(path)
        if path.suffix != ".keras":
            raise InputError(f"The file name must end in `.keras`. Received: path={str(path)!r}.")
        self._refresh_labels()
        save_model_atomic(self.model, path)
        return path

    @classmethod
    def from_keras_model(cls, model) -> TextClassifier:
        """Wraps a model saved by transferkit (its last layer is `ClassLabels` with task "text")."""
        from transferkit.tasks.base import labels_layer

        layer = labels_layer(model)
        if layer.task != "text":
            raise InputError(
                f"{model.name!r} is a {layer.task} classifier, not a text classifier. Use "
                "`transferkit.load(path)`, which returns the right kind."
            )
        metadata = dict(layer.metadata)
        preprocessor_config = metadata.pop("preprocessor", None)
        if not preprocessor_config:
            raise InputError(
                f"{model.name!r} has no tokenizer in its metadata; it was not saved by "
                "transferkit's TextClassifier."
            )
        classifier = cls(
            encoder=metadata.get("encoder", "glove-bilstm"),
            max_length=metadata.get("max_length"),
            # Models saved before `features` existed pooled the sentence vector.
            features=metadata.get("features", "sentence" if "sentence_encoder" in metadata else None),
        )
        classifier.model = model
        classifier.class_names = list(layer.class_names)
        classifier.preprocessor = _preprocessor_from_config(preprocessor_config)
        classifier.metadata = metadata
        classifier.coverage = metadata.get("coverage")
        return classifier

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextClassifier:
        """Loads a text classifier saved by transferkit (a `.keras` file or a run folder)."""
        from transferkit.tasks.base import load

        classifier = load(path)
        if not isinstance(classifier, cls):
            raise InputError(f"{path}: is a {type(classifier).__name__}, not a text classifier.")
        return classifier


class TextClassificationPipeline:
    """A saved text classifier as a function of texts, like a Hugging Face pipeline.

    Args:
        classifier: a fitted `TextClassifier`.

    Example:
        >>> classify = pipeline("runs/text-20240501-120000")
        >>> classify("a gripping, beautifully shot film")
        [{'label': 'positive', 'score': 0.97}]
    """

    def __init__(self, classifier: TextClassifier):
        self.classifier = classifier

    def __repr__(self) -> str:
        return f"TextClassificationPipeline({self.classifier!r})"

    def __call__(self, texts: str | Sequence[str], batch_size: int = 64) -> list[dict]:
        """`[{"label": ..., "score": ...}]`, one dict per text (a string counts as one text)."""
        return self.classifier.predict(texts, batch_size=batch_size)


def pipeline(model: str | os.PathLike | TextClassifier) -> TextClassificationPipeline:
    """A callable that labels texts with a saved classifier.

    Args:
        model: a `.keras` file or run folder written by `transferkit train text`, or a
            `TextClassifier`.

    Returns:
        A `TextClassificationPipeline`: `pipeline(path)(texts)` ->
        `[{"label": ..., "score": ...}, ...]`.

    Raises:
        InputError: the path is missing, not a transferkit model, or an image model.
    """
    if isinstance(model, TextClassifier):
        return TextClassificationPipeline(model)
    return TextClassificationPipeline(TextClassifier.load(model))


# -- the whole run (what `transferkit train text` does) -------------------------------------------


def _accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == np.asarray(y)).mean())


def train_text_classifier(
    data: str | os.PathLike | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    encoder: str = "glove-bilstm",
    word_vectors: str | os.PathLike | None = None,
    max_length: int | None = None,
    vocabulary_size: int = 10_000,
    features: str | None = None,
    epochs: int | None = None,
    fine_tune_epochs: int = 0,
    batch_size: int | None = None,
    test_size: float = 0.2,
    validation_size: float = 0.1,
    output: str | os.PathLike | None = None,
    seed: int = 0,
    resume: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    verbose: Any = "auto",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Reads a table, splits it, trains, evaluates, reports and saves: `transferkit train text`.

    Args:
        data: a CSV, TSV, JSON Lines or Parquet table of texts and labels (not needed with
            `resume`).
        text_column: the texts' column. Default `None`: guessed (`text`, `sentence`, `review`).
        label_column: the labels' column. Default `None`: guessed (`label`, `sentiment`).
        encoder: `"glove-bilstm"` (default), `"minilm"`, a model folder or a KerasHub preset.
        word_vectors: word vectors for `"glove-bilstm"`. Default `None`: GloVe 6B 50d.
        max_length: tokens per text. Default `None`: the encoder's default (see `TextClassifier`).
        vocabulary_size: word ids for `"glove-bilstm"`. Default `10_000`.
        features: for sentence encoders, `"layers"` or `"sentence"` (see `TextClassifier`).
            Default `None`: `"layers"`.
        epochs: the most head epochs. Default `None`: the encoder's default.
        fine_tune_epochs: epochs with the encoder unfrozen after the head. Default `0` (none).
        batch_size: training batch size. Default `None`: 32.
        test_size: share of each class held out for the test. Default `0.2`.
        validation_size: share of each class for validation. Default `0.1`.
        output: the run folder. Default `None`: `runs/text-<date>-<time>`.
        seed: seed of the split and of training. Default `0`.
        resume: a run folder to continue: its saved configuration is used and training goes on
            from the last finished epoch. Default `None`.
        cache_dir: the sentence-vector cache. Default `None`: the user cache.
        verbose: Keras's `verbose` for training. Default `"auto"`.
        log: called with progress lines. Default `None` (silent).

    Returns:
        A dict: `classes`, `validation_accuracy`, `test_accuracy`, `head_test_accuracy`,
        `fine_tune_test_accuracy` (None without fine-tuning), `model_path`, `report_dir`,
        `seconds`, `dropped_rows`, `vocabulary_coverage` and `token_coverage` (word vectors only),
        and more detail (`encoder`, `max_length`, `splits`, `embedding_sentences_per_second`...).

    Raises:
        InputError / DataError: unreadable data, unknown columns, unusable labels.
    """
    from transferkit.data.text import read_text_table, sort_class_names, stratified_split
    from transferkit.reports import write_classification_report, write_text_mistakes
    from transferkit.training.io import write_json
    from transferkit.training.run import RunDirectory, default_run_dir

    started = time.perf_counter()
    say = log or (lambda message: None)
    settings = {
        "data": None if data is None else os.fspath(Path(data).resolve()),
        "text_column": text_column,
        "label_column": label_column,
        "encoder": os.fspath(encoder),
        "word_vectors": None if word_vectors is None else os.fspath(word_vectors),
        "max_length": max_length,
        "vocabulary_size": vocabulary_size,
        "features": features,
        "epochs": epochs,
        "fine_tune_epochs": fine_tune_epochs,
        "batch_size": batch_size,
        "test_size": test_size,
        "validation_size": validation_size,
        "seed": seed,
    }
    run = None
    if resume is not None:
        if not Path(resume).is_dir():
            raise InputError(
                f"{resume}: no such run folder. Pass a folder written by `transferkit train text`."
            )
        run = RunDirectory(resume)
        saved = run.load_config()
        if saved.get("task") != "text":
            raise InputError(
                f"{run.path} is a run of `train {saved.get('task', '?')}`, not `train text`. "
                "Resume it with the matching command."
            )
        settings = {key: saved.get(key, value) for key, value in settings.items()}
        say(f"resuming {run.path}")
    elif data is None:
        raise InputError("Pass the DATA table to train on, or --resume RUN_DIR.")
    if (
        isinstance(settings["fine_tune_epochs"], bool)
        or not isinstance(settings["fine_tune_epochs"], int)
        or settings["fine_tune_epochs"] < 0
    ):
        raise InputError(
            "`fine_tune_epochs` must be an int >= 0. Received: "
            f"fine_tune_epochs={settings['fine_tune_epochs']!r}."
        )

    _check_features_setting(
        settings["encoder"],
        settings.get("features"),
        "--features",
        "Drop --features, or pass --encoder minilm.",
    )

    # Read and split before making the run folder, so bad data leaves nothing behind.
    table = read_text_table(settings["data"], settings["text_column"], settings["label_column"])
    if table.num_dropped:
        say(table.describe_drops())
    class_names = sort_class_names(table.labels)
    index = {name: i for i, name in enumerate(class_names)}
    y = np.array([index[label] for label in table.labels])
    if len(class_names) < 2:
        raise DataError(
            f"{table.path}: the label column {table.label_column!r} has only one class "
            f"({class_names[0]!r}) after dropping unusable rows; a classifier needs at least two."
        )
    try:
        splits = stratified_split(
            table.labels, settings["test_size"], settings["validation_size"], settings["seed"]
        )
    except DataError as exc:
        raise DataError(f"{table.path}, column {table.label_column!r}: {exc}") from None
    if run is None:
        target = Path(output) if output is not None else default_run_dir("text")
        if target.is_dir() and (RunDirectory(target).state() or (target / "model.keras").exists()):
            raise InputError(
                f"{target} already holds a run. Pass --resume {target} to continue it, or a "
                "new --output folder."
            )
        run = RunDirectory(target)
        run.save_config({"task": "text", **settings})
    texts = np.asarray(table.texts, dtype=object)
    part = {name: (texts[idx].tolist(), y[idx]) for name, idx in splits.items()}
    say(
        f"{len(table)} texts, {len(class_names)} classes; train {len(splits['train'])}, "
        f"validation {len(splits['validation'])}, test {len(splits['test'])}"
    )

    classifier = TextClassifier(
        settings["encoder"],
        word_vectors=settings["word_vectors"],
        max_length=settings["max_length"],
        vocabulary_size=settings["vocabulary_size"],
        features=settings.get("features"),
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        seed=settings["seed"],
        cache_dir=cache_dir,
        verbose=verbose,
    )
    train_texts, train_y = part["train"]
    val_texts, val_y = part["validation"]
    test_texts, test_y = part["test"]
    names = lambda ys: [class_names[i] for i in ys]
    classifier.fit(train_texts, names(train_y), (val_texts, names(val_y)), run=run)
    if classifier.class_names != class_names:  # every class is in the training split
        raise RuntimeError(f"class names changed: {classifier.class_names} != {class_names}")
    head_test = classifier.predict_proba(test_texts)
    head_test_accuracy = _accuracy(head_test, test_y)
    say(f"head: test accuracy {head_test_accuracy:.4f}")
    test_probabilities = head_test
    fine_tune_test_accuracy = None
    if settings["fine_tune_epochs"]:
        classifier.fine_tune(
            train_texts,
            names(train_y),
            (val_texts, names(val_y)),
            epochs=settings["fine_tune_epochs"],
            run=run,
        )
        test_probabilities = classifier.predict_proba(test_texts)
        fine_tune_test_accuracy = _accuracy(test_probabilities, test_y)
        say(f"fine-tuned: test accuracy {fine_tune_test_accuracy:.4f}")
    validation_accuracy = _accuracy(classifier.predict_proba(val_texts), val_y)
    test_accuracy = _accuracy(test_probabilities, test_y)

    classifier.metadata.update(
        {"text_column": table.text_column, "label_column": table.label_column}
    )
    classifier.save(run.model_path)

    extra: dict[str, Any] = {
        "encoder": settings["encoder"],
        "max_length": classifier.metadata.get("max_length"),
        "features": classifier.metadata.get("features"),
        "data": settings["data"],
        "train / validation / test": " / ".join(
            str(len(splits[name])) for name in ("train", "validation", "test")
        ),
        "validation accuracy": round(validation_accuracy, 4),
        "head test accuracy": round(head_test_accuracy, 4),
        "fine-tune test accuracy": None
        if fine_tune_test_accuracy is None
        else round(fine_tune_test_accuracy, 4),
        "dropped rows": table.num_dropped,
        "model": str(run.model_path),
    }
    if table.num_dropped:
        extra["dropped"] = table.describe_drops().replace("\n", "; ")
    if classifier.coverage:
        extra["word vectors"] = classifier.metadata.get("word_vectors")
        extra["vocabulary coverage"] = round(classifier.coverage["vocabulary_coverage"], 4)
        extra["token coverage"] = round(classifier.coverage["token_coverage"], 4)
        write_json(run.report_dir / "coverage.json", classifier.coverage)
    if classifier.embedding_stats:
        extra["embedding speed (sentences/s)"] = classifier.embedding_stats["sentences_per_second"]
    write_json(
        run.report_dir / "data.json",
        {
            "path": table.path,
            "text_column": table.text_column,
            "label_column": table.label_column,
            "rows_used": len(table),
            "dropped_rows": table.num_dropped,
            "dropped": table.drop_summary(),
            "classes": {name: int((y == i).sum()) for i, name in enumerate(class_names)},
        },
    )
    report = write_classification_report(
        run.report_dir,
        y_true=test_y,
        probabilities=test_probabilities,
        class_names=class_names,
        history=run.history_rows(),
        title=f"Text classifier ({settings['encoder']}): test split",
        summary_extra=extra,
    )
    predicted = test_probabilities.argmax(axis=1)
    write_text_mistakes(
        run.report_dir / "mistakes.txt",
        test_texts,
        names(test_y),
        names(predicted),
        test_probabilities.max(axis=1),
    )
    result = {
        "classes": class_names,
        "validation_accuracy": validation_accuracy,
        "test_accuracy": test_accuracy,
        "head_test_accuracy": head_test_accuracy,
        "fine_tune_test_accuracy": fine_tune_test_accuracy,
        "model_path": str(run.model_path),
        "report_dir": str(run.report_dir),
        "seconds": round(time.perf_counter() - started, 2),
        "dropped_rows": table.num_dropped,
        "encoder": settings["encoder"],
        "max_length": classifier.metadata.get("max_length"),
        "features": classifier.metadata.get("features"),
        "splits": {name: len(idx) for name, idx in splits.items()},
        "macro_f1": report["macro_avg"]["f1"],
        "run_dir": str(run.path),
    }
    if classifier.coverage:
        result["vocabulary_coverage"] = classifier.coverage["vocabulary_coverage"]
        result["token_coverage"] = classifier.coverage["token_coverage"]
    if classifier.embedding_stats:
        result["embedding_sentences_per_second"] = classifier.embedding_stats[
            "sentences_per_second"
        ]
    if table.num_dropped:
        result["dropped"] = table.drop_summary()
    run.update_state(result=result)
    return result
