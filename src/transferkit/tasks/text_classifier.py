"""Text classification by transfer learning: a pretrained text encoder and a small head.

The encoder is one of the kinds in `transferkit.backbones.text_encoders` (word vectors + BiLSTM,
or a sentence encoder such as all-MiniLM-L6-v2); this module knows only their interface. What
every classifier shares (labels, compiling, the phases, predict, evaluate, save) is in
`transferkit.tasks.base.Classifier`.

The saved `.keras` file takes raw strings: its first layer is the encoder's tokenizer
(`transferkit.layers.TextInputs`), then the network, then `ClassLabels`, which gives the class
probabilities and carries the class names. It loads with `safe_mode=True`. Training and
`predict_proba` run the same network on token ids, in batches of texts of similar length cut to
their own longest text, which is what makes CPU training and prediction fast; the outputs are the
same as the saved model's.

Example:
    >>> clf = TextClassifier(encoder="minilm").fit(texts, labels, validation_data=(vt, vl))
    >>> clf.predict(["a gripping, beautifully shot film"])
    [{'label': 'positive', 'score': 0.97, 'probabilities': {...}}]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transferkit.config import TextTrainConfig
from transferkit.errors import DataError, InputError
from transferkit.tasks.base import Classifier, Splits

__all__ = ["TextClassificationPipeline", "TextClassifier", "pipeline"]

_D = TextTrainConfig()  # the defaults; `transferkit.config` is where they are written


def _texts(x) -> list[str]:
    if isinstance(x, str):
        x = [x]
    try:
        texts = [str(t) for t in x]
    except TypeError:
        raise InputError(
            f"Pass a string or a list of strings. Received: {type(x).__name__}."
        ) from None
    from transferkit.data.images import IMAGE_EXTENSIONS

    for text in texts:
        # A path to an image file is not a text: classifying its name would be meaningless.
        if text.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(text):
            raise InputError(f"This is a text model; {text} is an image file: pass texts.")
    return texts


class TextClassifier(Classifier):
    """A text classifier trained by transfer learning.

    The constructor only stores its arguments; `fit` trains the head, `fine_tune` (optional)
    unfreezes the encoder. `None` means "the encoder's default" (see each kind in
    `transferkit.backbones.text_encoders`).

    Args:
        encoder: `"glove-bilstm"` (`TextTrainConfig.encoder`, the default), `"minilm"`, a
            sentence-transformers model folder, or a KerasHub preset (`hf://...`, a Kaggle
            preset name) for users online.
        class_names: the classes in output order. Default `None`: learned from the labels.
        word_vectors: for `"glove-bilstm"`: a packaged name or a GloVe/word2vec/fastText file.
            Default `None`: `"glove-6b-50d"`.
        vocabulary_size: for `"glove-bilstm"`: word ids in all. Default `None`: 10,000.
        max_length: the most tokens per text. Default `None`: 100 words for `"glove-bilstm"`;
            for sentence encoders the 95th percentile of the training texts' token counts.
        features: for sentence encoders: `"layers"` (every layer's mean-pooled output,
            concatenated) or `"sentence"` (the encoder's own sentence vector). Default `None`:
            `"layers"`.
        head_units: for sentence encoders: hidden units of the head. Default `None`: 0 (linear).
        dropout: for sentence encoders: dropout rate on the features before the head. Default
            `None`: 0.5.
        seed: seed of weights, shuffling and dropout. Default `0`.
        cache_dir: where the encoder's features are cached. Default `None`: `features/text` in
            the transferkit cache.
        runtime: what runs a frozen sentence encoder for features: `"onnx"` (ONNX Runtime),
            `"keras"` or `"auto"` (see `transferkit.runtimes`). Default
            `TextTrainConfig.runtime` (`"auto"`). Training and fine-tuning run in Keras.
        calibrate: after `fit` and `fine_tune`, fit a temperature on the validation split
            (`transferkit.reports.calibration`). Default `TextTrainConfig.calibrate` (True).
        class_weight: `"auto"` (class weights when the largest class is >= 10x the smallest),
            `"balanced"` (whenever the counts differ) or `"none"`. Default
            `TextTrainConfig.class_weight` (`"auto"`).
        target: `"single-label"`, `"multi-label"` or `"regression"`. Default `None`:
            single-label.
        strategy: for sentence encoders: `"head"` (a head on the frozen encoder's features) or
            `"contrastive"` (SetFit's way for a few examples per class: the encoder is first tuned
            on pairs of training texts, same label or not, then the head trains on its sentence
            vectors; see `transferkit.training.contrastive`). Default `TextTrainConfig.strategy`
            (`"head"`).
        contrastive_epochs: with `"contrastive"`: passes over the pairs. Default 1.
        contrastive_pairs: with `"contrastive"`: pairs per pass. Default `None`: 40 per training
            text, at most 4,000.
        contrastive_learning_rate: with `"contrastive"`: Adam's learning rate for the encoder.
            Default 2e-5.
    """

    task = "text"
    config_class = TextTrainConfig
    item_noun = "texts"
    data_forms = "a table file"

    def __init__(
        self,
        encoder: str = _D.encoder,
        *,
        class_names: Sequence[str] | None = None,
        word_vectors: str | os.PathLike | None = _D.word_vectors,
        vocabulary_size: int | None = _D.vocabulary_size,
        max_length: int | None = _D.max_length,
        features: str | None = _D.features,
        head_units: int | None = _D.head_units,
        dropout: float | None = _D.dropout,
        seed: int = _D.seed,
        cache_dir: str | os.PathLike | None = None,
        runtime: str = _D.runtime,
        calibrate: bool = _D.calibrate,
        class_weight: str = _D.class_weight,
        target: str | None = _D.target,
        strategy: str = _D.strategy,
        contrastive_epochs: int = _D.contrastive_epochs,
        contrastive_pairs: int | None = _D.contrastive_pairs,
        contrastive_learning_rate: float = _D.contrastive_learning_rate,
    ):
        from transferkit.runtimes import check_runtime
        from transferkit.tasks.targets import TARGETS, check_target

        check_runtime(runtime)
        _check_strategy(strategy, contrastive_epochs, contrastive_pairs, contrastive_learning_rate)
        # No target: one class per example (a training run reads it from the data instead).
        target = check_target(TARGETS[0] if target is None else target)
        self._store(locals())
        self._encoder = None
        self.tokenizer = None
        self._columns: tuple[str | None, str | None] = (None, None)

    # -- the encoder ---------------------------------------------------------------------------

    def get_encoder(self):
        """The `TextEncoder` of this classifier's kind (made on first use; loads nothing)."""
        from transferkit.backbones.text_encoders import text_encoder_class

        if self._encoder is None:
            kind = text_encoder_class(self.encoder)
            self._encoder = kind(
                self.encoder, max_length=self.max_length, seed=self.seed, cache_dir=self.cache_dir,
                runtime=self.runtime,
                word_vectors=self.word_vectors, vocabulary_size=self.vocabulary_size,
                features=self._features(kind), head_units=self.head_units, dropout=self.dropout,
            )
        return self._encoder

    def _features(self, kind) -> str | None:
        # Contrastive tuning shapes the sentence vector: the head reads that one unless told.
        if self.features is None and self.strategy == "contrastive" and kind.contrastive:
            return "sentence"
        return self.features

    def check_settings(self) -> None:
        """Raises `InputError` for settings that cannot work (an option of another kind of
        encoder, a model folder that does not exist...), before any data is read."""
        encoder = self.get_encoder()
        encoder.check()
        if self.strategy != "contrastive":
            return
        if not encoder.contrastive:
            raise InputError(
                f"strategy 'contrastive' tunes a sentence encoder on pairs of texts; "
                f"{self.encoder!r} ({encoder.label}) is not one. Use a sentence encoder such as "
                "'minilm' or 'mpnet', or strategy 'head'."
            )
        if self.target == "regression":
            raise InputError(
                "strategy 'contrastive' makes pairs of texts with the same label or not; a "
                "regression target has no labels to compare. Use strategy 'head'."
            )

    def _train_defaults(self):
        defaults = self.get_encoder().defaults
        regression = self.target == "regression" and defaults.regression_learning_rate
        return _D.replace(
            epochs=defaults.epochs,
            learning_rate=defaults.regression_learning_rate if regression else
            defaults.learning_rate,
            fine_tune_learning_rate=defaults.fine_tune_learning_rate,
        )

    def _source_name(self) -> str:
        return os.fspath(self.encoder)

    def _attach(self) -> None:
        self.tokenizer = self.model.get_layer("tokenize")

    def _update_metadata(self) -> None:
        if self._encoder is not None and self._encoder.sequence_length is not None:
            self.metadata["encoder"] = self._encoder.describe()  # with what it measured since

    def _build_model(self) -> None:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise InputError(
                "A text classifier's saved model takes strings, which only the TensorFlow backend "
                "has. Run with KERAS_BACKEND=tensorflow (the default)."
            )
        self.metadata["encoder"] = self.get_encoder().describe()
        strings = keras.Input(shape=(), dtype="string", name="text")
        logits = self.network(self.tokenizer(strings))
        self.model = keras.Model(strings, self._class_labels()(logits), name="text_classifier")

    # -- data ------------------------------------------------------------------------------------

    def _explain(self, items: list, label, method) -> list[dict]:
        from transferkit.explain.text import explain_texts

        return explain_texts(self, items, label, method)

    def _items(self, x) -> list:
        return _texts(x)

    def _labelled(self, x, y, validation_data, validation_size) -> Splits:
        """Train and validation texts from a table, or from texts and labels."""
        from transferkit.data.labels import stratified_split

        table, skipped = None, []
        if isinstance(x, (str, os.PathLike)) and y is None:
            table, skipped = self._read_table(x)
            texts, labels = table.texts, table.labels
        else:
            texts, labels = self._with_labels(x, y)
        texts, values, names, bad = self.usable_targets(texts, labels, self.class_names)
        if self.target == "single-label" and len(set(values.tolist())) < 2:
            raise DataError(
                f"The labels have only one class ({names[0]!r}); a classifier needs at least two."
            )
        if validation_data is not None:
            val_texts, val_labels = self._validation_pair(validation_data)
            val_texts, val_values, _, val_bad = self.usable_targets(val_texts, val_labels, names)
            parts = {"train": (texts, values), "validation": (val_texts, val_values)}
            bad += val_bad
        else:
            split = stratified_split(self.split_keys(values), {"validation": validation_size},
                                     self.seed)
            parts = {
                name: ([texts[i] for i in index], values[index]) for name, index in split.items()
            }
        return Splits(names, parts, skipped=skipped + bad, source=table)

    def _skipped_item(self, item, index: int) -> dict:
        return {"text": str(item)[:80]}

    def _read_table(self, path, text_column=None, label_column=None):
        """A table's texts and labels, preferring the columns the model was trained with."""
        from transferkit.data.text import read_text_table

        sets = self.target == "multi-label"
        trained = (self.metadata.get("text_column"), self.metadata.get("label_column"))
        if (text_column is None or label_column is None) and any(trained):
            with contextlib.suppress(DataError):
                table = read_text_table(path, text_column or trained[0], label_column or trained[1],
                                        label_sets=sets)
                return table, _dropped_rows(table)
        if label_column is None and self.target == "regression":
            from transferkit.data.image_table import DEFAULT_LABEL_COLUMNS

            label_column = DEFAULT_LABEL_COLUMNS[self.target]  # others: guessed by the reader
        table = read_text_table(path, text_column, label_column, label_sets=sets)
        return table, _dropped_rows(table)

    # -- the phases ------------------------------------------------------------------------------

    def _head_phase(self, splits: Splits, settings, run, verbose) -> tuple:
        import keras

        from transferkit.backbones.text_encoders import tokenize
        from transferkit.data.epoch_order import EpochOrder
        from transferkit.data.sequences import padded_batches

        keras.utils.set_random_seed(self.seed)
        encoder = self.get_encoder()
        (train_texts, train_y), (val_texts, val_y) = splits["train"], splits["validation"]
        encoder.adapt(train_texts, state_dir=run.path)
        self.tokenizer = encoder.tokenizer()
        if self.strategy == "contrastive":
            self.check_settings()
            self._record("contrastive", self._contrastive(splits, settings, run, verbose))
        show = verbose not in (0, False, "0")
        if encoder.caches_features:
            train_x = encoder.features(train_texts, verbose=show)
            val_x = encoder.features(val_texts, verbose=show)
            self.network = encoder.build_network(self.num_logits, train_x)
            self._build_model()
            # Shuffled by epoch (`transferkit.data.epoch_order`): Keras's own shuffle of arrays
            # repeats one order every epoch once a global seed is set.
            order = EpochOrder(len(train_x), self.seed)
            train = order.attach(order.batches((train_x, train_y), settings.batch_size))
            fit_kwargs = {"validation_batch_size": settings.batch_size, "shuffle": False}
            return encoder.head(self.network), train, (val_x, val_y), fit_kwargs
        self.network = encoder.build_network(self.num_logits)
        self._build_model()
        train = padded_batches(tokenize(self.tokenizer, train_texts), settings.batch_size,
                               targets=train_y, shuffle=True, seed=self.seed)
        validation = padded_batches(tokenize(self.tokenizer, val_texts), 64, targets=val_y)
        return self.network, train, validation, {"shuffle": False}  # batches shuffle themselves

    def contrastive_pair_count(self, texts: int) -> int:
        """Pairs a pass of contrastive tuning makes from `texts` training texts:
        `contrastive_pairs`, or by default 40 a text, at most 4,000."""
        from transferkit.training.contrastive import default_pair_count

        return self.contrastive_pairs or default_pair_count(texts)

    def _contrastive(self, splits: Splits, settings, run, verbose) -> list[dict]:
        """Tunes the encoder on pairs of training texts (`strategy="contrastive"`)."""
        encoder = self.get_encoder()
        train, validation = splits["train"], splits["validation"]
        cap = encoder.defaults.fine_tune_batch_size
        return encoder.tune_contrastive(
            train, validation if len(validation[0]) else None,
            pairs=self.contrastive_pair_count(len(train[0])),
            epochs=self.contrastive_epochs, learning_rate=self.contrastive_learning_rate,
            batch_size=min(settings.batch_size, cap) if cap else settings.batch_size,
            seed=self.seed, run=run, verbose=verbose,
        )

    def _unfreeze(self) -> None:
        self.get_encoder().unfreeze(self.network)

    @contextlib.contextmanager
    def _fine_tune_data(self, splits: Splits, batch_size: int):
        import keras

        from transferkit.backbones.text_encoders import tokenize
        from transferkit.data.sequences import padded_batches

        keras.utils.set_random_seed(self.seed + 1)
        cap = self.get_encoder().defaults.fine_tune_batch_size
        batch_size = min(batch_size, cap) if cap else batch_size
        (train_texts, train_y), (val_texts, val_y) = splits["train"], splits["validation"]
        train = padded_batches(tokenize(self.tokenizer, train_texts), batch_size,
                               targets=train_y, shuffle=True, seed=self.seed)
        validation = padded_batches(tokenize(self.tokenizer, val_texts), 64, targets=val_y)
        yield train, validation

    # -- using the model -------------------------------------------------------------------------

    def probabilities_and_errors(self, items: list,
                                 batch_size: int) -> tuple[np.ndarray, list[dict]]:
        from transferkit.backbones.text_encoders import tokenize
        from transferkit.data.sequences import predict_padded

        logits = predict_padded(self.network, tokenize(self.tokenizer, items), batch_size)
        return self._scores(logits), []

    def _cached_logits(self, items: list, batch_size: int) -> np.ndarray | None:
        encoder = self._encoder
        if encoder is None or not encoder.caches_features or encoder.sequence_length is None:
            return None  # not fitted in this process (loaded), or nothing cached
        features = encoder.features(items)
        return np.asarray(encoder.head(self.network).predict(features, batch_size=256, verbose=0))

    def _training_features(self, items: list) -> np.ndarray | None:
        encoder = self._encoder
        if encoder is None or not encoder.caches_features or encoder.sequence_length is None:
            return None
        return encoder.features(items)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The frozen encoder's features of `texts` (`features`: layer or sentence vectors),
        cached on disk by content. For sentence encoders, after `fit`.

        Returns:
            float32 `(len(texts), feature_dim)`: 384 numbers a text for MiniLM's sentence vector,
            2,688 for its layer features.
        """
        encoder = self.get_encoder()
        if not encoder.caches_features:
            raise InputError("`embed` is for sentence encoders; this classifier uses word vectors.")
        if encoder.sequence_length is None:
            raise InputError("Call `fit(...)` first: it chooses the sequence length.")
        return encoder.features(_texts(texts))

    def evaluate(self, x, y=None, *, text_column: str | None = None,
                 label_column: str | None = None, **kwargs) -> dict:
        """Accuracy and per-class metrics on labelled texts: see `Classifier.evaluate`.

        Args:
            x: a table (CSV, TSV, JSON Lines, Parquet; columns as for training), or texts with
                their labels as `y`.
            y: the labels of `x`. Default `None`.
            text_column: the texts' column. Default `None`: the training column if the table has
                it, else guessed.
            label_column: the labels' column. Default `None`: as for `text_column`.
            **kwargs: `report_dir`, `batch_size`, `title`.
        """
        self._columns = (text_column, label_column)
        return super().evaluate(x, y, **kwargs)

    def _evaluation_data(self, x, y) -> tuple[list, np.ndarray, list[dict]]:
        skipped: list[dict] = []
        if isinstance(x, (str, os.PathLike)) and y is None:
            table, skipped = self._read_table(x, *self._columns)
            texts, labels = table.texts, table.labels
        else:
            texts, labels = self._with_labels(x, y)
        texts, values, _, bad = self.usable_targets(texts, labels, self.class_names)
        return texts, values, skipped + bad

    def _write_mistakes(self, report_dir: Path, items, true_names, predicted_names,
                        scores) -> Path:
        from transferkit.explain.text import top_words
        from transferkit.reports import write_text_mistakes

        return write_text_mistakes(report_dir / "mistakes.txt", items, true_names,
                                   predicted_names, scores, why=lambda shown: top_words(self, shown))


def _check_strategy(strategy, epochs, pairs, learning_rate) -> None:
    from transferkit.checks import check_int, check_number
    from transferkit.config import TEXT_STRATEGIES

    if strategy not in TEXT_STRATEGIES:
        raise InputError(
            f"`strategy` must be one of {', '.join(map(repr, TEXT_STRATEGIES))}. Received: "
            f"{strategy!r}."
        )
    check_int(epochs, "contrastive_epochs", minimum=1)
    if pairs is not None:
        check_int(pairs, "contrastive_pairs", minimum=2)
    check_number(learning_rate, "contrastive_learning_rate", 0, include_minimum=False)


def _dropped_rows(table) -> list[dict]:
    from transferkit.data.text import DROP_REASONS

    return [
        {table.unit: number, "reason": DROP_REASONS.get(reason, reason)}
        for reason, numbers in table.dropped.items()
        for number in numbers
    ]


class TextClassificationPipeline:
    """A saved text classifier as a function of texts, like a Hugging Face pipeline.

    Args:
        classifier: a fitted `TextClassifier`.

    Example:
        >>> classify = pipeline("runs/text-20240501-120000")
        >>> classify("a gripping, beautifully shot film")[0]["label"]
        'positive'
    """

    def __init__(self, classifier: TextClassifier):
        self.classifier = classifier

    def __repr__(self) -> str:
        return f"TextClassificationPipeline({self.classifier!r})"

    def __call__(self, texts: str | Sequence[str], batch_size: int | None = None) -> list[dict]:
        """One dict per text (a string counts as one text): `label`, `score`, `probabilities`."""
        return self.classifier.predict(texts, batch_size=batch_size)


def pipeline(model: str | os.PathLike | TextClassifier) -> TextClassificationPipeline:
    """A callable that labels texts with a saved classifier.

    Args:
        model: a `.keras` file or run folder written by `transferkit train text`, or a
            `TextClassifier`.

    Returns:
        A `TextClassificationPipeline`: `pipeline(path)(texts)` -> one dict per text.

    Raises:
        InputError: the path is missing, not a transferkit model, or an image model.
    """
    if isinstance(model, TextClassifier):
        return TextClassificationPipeline(model)
    return TextClassificationPipeline(TextClassifier.load(model))
