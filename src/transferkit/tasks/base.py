"""`Classifier`: what the image and the text classifier share, written once.

A classifier is a pretrained backbone (or text encoder), a small head, and two Keras models over
the same layers:

* `network`: the part that trains; its inputs are what the backbone takes (images of any size, or
  token ids) and its output is logits (one for two classes, one per class otherwise);
* `model`: what is saved and served: the raw inputs (images, or strings) -> `network` ->
  `ClassLabels`, which turns the logits into class probabilities and carries the class names and
  plain-data metadata. One `.keras` file, loaded with `safe_mode=True`.

`Classifier` owns the labels, the settings and their defaults (`transferkit.config`), compiling
(binary: one logit and `from_logits=True`), the two training phases (`fit`: the head on the
frozen backbone; `fine_tune`: end to end at a low learning rate), `predict`, `predict_proba`,
`evaluate` with its report, `save`/`load`, and `get_config`/`from_config`. A subclass adds only
what its modality needs, through the `_hook` methods at the end of the class.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import keras
import numpy as np

from transferkit.checks import check_int, check_number
from transferkit.errors import DataError, InputError
from transferkit.layers import ClassLabels, labels_layer
from transferkit.tasks.evaluation import ClassifierEvaluation
from transferkit.tasks.targets import ClassifierTargets

__all__ = ["Classifier", "Splits", "labels_layer", "load", "TASK_CLASSES"]

# task name -> "module:Class"
TASK_CLASSES = {
    "image": "transferkit.tasks.image_classifier:ImageClassifier",
    "text": "transferkit.tasks.text_classifier:TextClassifier",
}

# Settings of `fit`/`fine_tune` that default to the task's config (`transferkit.config`).
_FIT_SETTINGS = ("epochs", "batch_size", "learning_rate", "weight_decay", "patience",
                 "validation_size")
_FINE_TUNE_SETTINGS = {
    "epochs": "fine_tune_epochs",
    "learning_rate": "fine_tune_learning_rate",
    "batch_size": "batch_size",
    "patience": "fine_tune_patience",
    "validation_size": "validation_size",
}

# Fewer validation examples than this, and the head phase runs all its epochs and keeps the last
# weights: the best epoch by so few examples' loss is noise. Measured on rt-polarity with
# MiniLM's sentence vectors, 8 training and 8 validation texts a class, 5 seeds
# (benchmarks/text_few_shot.py): early stopping 0.526 test accuracy, all epochs 0.571
# (scikit-learn's logistic regression 0.578); at 64 a class (128 validation texts) 0.661 and
# 0.666, the same.
MIN_VALIDATION_FOR_EARLY_STOPPING = 50


@dataclass
class Splits:
    """Labelled data split for training: items (images or texts) and int labels per split.

    Attributes:
        class_names: label `i` is `class_names[i]`.
        parts: split name (`"train"`, `"validation"`) -> `(items, int labels)`.
        skipped: `{"path" or "line", "reason"}` for every input left out.
        source: where the data came from (an `ImageFolder`, a `TextTable`), or None.
    """

    class_names: list[str]
    parts: dict[str, tuple[Any, np.ndarray]]
    skipped: list[dict] = field(default_factory=list)
    source: Any = None

    def __getitem__(self, name: str) -> tuple[Any, np.ndarray]:
        return self.parts[name]


def _plain(value: Any) -> Any:
    """A constructor argument as plain JSON data."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value


class Classifier(ClassifierEvaluation, ClassifierTargets):
    """The shared base of `ImageClassifier` and `TextClassifier`; not used on its own.

    Constructors only store their arguments (each an attribute of the same name); `fit` reads the
    data and builds the models.

    Attributes:
        model: the saved model (raw inputs -> class probabilities), once built or loaded.
        network: its trainable part (backbone inputs -> logits).
        class_names: the classes, in output order (set by `fit` when not given).
        history: one dict per finished epoch of every phase (`phase`, `epoch`, metrics).
        metadata: plain data about how the model was made, saved inside the model.
        skipped: inputs left out of training, `{"path" or "line", "reason"}` each.
    """

    task: ClassVar[str] = ""
    config_class: ClassVar[type] = type(None)
    item_noun: ClassVar[str] = "inputs"  # "images", "texts": for messages
    data_forms: ClassVar[str] = ""  # what `x` may be besides inputs with labels, for messages

    def _store(self, arguments: dict) -> None:
        """Stores the constructor's arguments (`locals()`) as attributes of the same name, as
        scikit-learn's estimators do, and sets up the state that `fit` fills."""
        for name in self._arguments():
            setattr(self, name, arguments[name])
        self._init_state()

    def _init_state(self) -> None:
        self.model = None
        self.network = None
        self.history: list[dict] = []
        self.metadata: dict = {}
        self.skipped: list[dict] = []
        self.run_dir: Path | None = None
        self.path: Path | None = None  # the `.keras` file last saved or loaded
        self._splits: Splits | None = None

    def __repr__(self) -> str:
        state = f"classes={list(self.class_names)}" if self.model is not None else "not fitted"
        return f"{type(self).__name__}({state})"

    # -- configuration -------------------------------------------------------------------------

    @classmethod
    def _arguments(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_config(self) -> dict:
        """The constructor's arguments as plain data; `from_config` makes the same classifier."""
        return {name: _plain(getattr(self, name)) for name in self._arguments()}

    @classmethod
    def from_config(cls, config: dict):
        """A new (unfitted) classifier from `get_config()` data; unknown keys are an error."""
        unknown = sorted(set(config) - set(cls._arguments()))
        if unknown:
            raise InputError(
                f"Unknown {cls.__name__} argument(s) {unknown}. Known: {cls._arguments()}."
            )
        return cls(**config)

    @classmethod
    def from_keras_model(cls, model):
        """Wraps a classifier model saved by transferkit (e.g. from `keras.saving.load_model`).

        Raises:
            InputError: the model is not a transferkit classifier of this task.
        """
        labels = labels_layer(model)
        if labels.task != cls.task:
            raise InputError(
                f"{model.name!r} is a {labels.task!r} classifier, not a {cls.task!r} one. Load it "
                "with `transferkit.load(path)`, which returns the right kind."
            )
        metadata = dict(labels.metadata)
        config = dict(metadata.pop("config", {}))
        known = set(cls._arguments())
        classifier = cls(**{key: value for key, value in config.items() if key in known})
        classifier.model = model
        classifier.network = model.get_layer("network")
        classifier.class_names = list(labels.class_names)
        classifier.metadata = metadata
        classifier._attach()
        return classifier

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Loads a classifier of this kind saved by transferkit (a `.keras` file or run folder)."""
        classifier = load(path)
        if not isinstance(classifier, cls):
            raise InputError(f"{path}: is a {type(classifier).__name__}, not a {cls.__name__}.")
        return classifier

    # -- settings ------------------------------------------------------------------------------

    def _settings(self, names: dict[str, str], **given: Any) -> SimpleNamespace:
        """`given` settings, each `None` replaced by the config default named in `names`."""
        defaults = self._train_defaults()
        return SimpleNamespace(
            **{
                name: getattr(defaults, names[name]) if value is None else value
                for name, value in given.items()
            }
        )

    def _batch_size(self, batch_size: int | None) -> int:
        """`batch_size` (an int >= 1: 0 is refused, not the default), or the config's if `None`."""
        given = self._settings({"batch_size": "batch_size"}, batch_size=batch_size).batch_size
        return check_int(given, "batch_size", minimum=1)

    # -- classes and compiling -----------------------------------------------------------------

    def _set_classes(self, names: list[str]) -> None:
        known = None if self.class_names is None else [str(c) for c in self.class_names]
        if known is not None and list(names) != known:
            raise InputError(
                f"The data has classes {list(names)} but this classifier was made for {known} "
                f"(`class_names`). Pass matching `class_names`, leave them unset, or use a new "
                f"{type(self).__name__} for other classes."
            )
        self.class_names = list(names)

    def _require_model(self):
        if self.model is None:
            raise InputError(
                f"This {type(self).__name__} has no trained model yet. Call `fit(...)` first, or "
                "load one with `transferkit.load(path)`."
            )
        return self.model

    def _labels_layer(self) -> ClassLabels:
        return labels_layer(self._require_model())

    def _class_labels(self) -> ClassLabels:
        """A new `ClassLabels` layer for this classifier's classes and metadata."""
        metadata = {"config": {**self.get_config(), "cache_dir": None}, **self.metadata}
        mean, scale = self.metadata.get("target_standardisation", (0.0, 1.0))
        return ClassLabels(self.class_names, task=self.task, metadata=metadata,
                           target=self.target, target_mean=mean, target_scale=scale)

    def _scores(self, logits) -> np.ndarray:
        """Class probabilities from logits, exactly as the saved model computes them."""
        outputs = self._labels_layer()(keras.ops.convert_to_tensor(np.asarray(logits)))
        return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64)

    def _compile(self, model, learning_rate: float, weight_decay: float | None = None) -> None:
        """Adam (with decoupled `weight_decay` when given and above 0), and the target's loss
        on logits (`targets.compile_spec`): binary cross-entropy on one logit for two classes,
        per label for multi-label, Huber for regression."""
        from transferkit.tasks.targets import compile_spec
        from transferkit.training.distribute import compile_for

        mean, scale = self.metadata.get("target_standardisation", (0.0, 1.0))
        loss, metrics = compile_spec(self.target, len(self.class_names), mean, scale)
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **compile_for(model))
        if keras.backend.backend() == "tensorflow" and model.built:
            # Keras's TensorFlow trainer (without a distribution strategy) builds the optimizer
            # inside the first trace of the train step; a `tf.function` that creates variables
            # is traced twice. Built here, the step is traced once: 9 of a GloVe-BiLSTM run's
            # 25 seconds on 60 texts went to that second trace of the LSTM's gradient.
            model.optimizer.build(model.trainable_variables)

    # -- training ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _run_folder(self, output):
        """The run folder of a phase: `output`, the one `fit` had, or a temporary one (deleted)."""
        from transferkit.run_folder import RunFolder

        if output is None and self.run_dir is not None:
            output = self.run_dir
        if output is not None:
            run = (output if isinstance(output, RunFolder) else RunFolder(output)).create()
            self.run_dir = run.path
            yield run
            return
        with tempfile.TemporaryDirectory(prefix=f"transferkit-{self.task}-") as folder:
            yield RunFolder(folder)

    def _record(self, phase: str, rows: list[dict]) -> None:
        self.history = [row for row in self.history if row.get("phase") != phase] + list(rows)

    def fit(self, x, y=None, validation_data=None, *, epochs: int | None = None,
            batch_size: int | None = None, learning_rate: float | None = None,
            patience: int | None = None, validation_size: float | None = None, output=None,
            verbose: Any = "auto", callbacks=None, weight_decay: float | None = None):
        """Trains the head on the frozen backbone (steps 1-4 of the Keras guide). Returns `self`.

        Args:
            x: the data: see the subclass (a folder or table, or images or texts with `y`).
            y: labels of `x`: class names (strings) or values; ints are class indices when
                `class_names` are set. Default `None` (the labels come with `x`).
            validation_data: `(x, y)` for early stopping and the best epoch. Default `None`:
                `validation_size` of each class of `x` is held out (stratified, seeded).
            epochs: the most head epochs; early stopping may end sooner. Default `None`: the
                task's config (`ImageTrainConfig` / `TextTrainConfig`).
            batch_size: examples per step. Default `None`: the config's.
            learning_rate: Adam's learning rate. Default `None`: the config's.
            patience: epochs without a better validation loss before stopping. Default `None`:
                the config's.
            validation_size: share held out when `validation_data` is None and the data is not
                split already. Default `None`: the config's.
            output: the run folder for checkpoints, TensorBoard logs and `history.csv`; a rerun on
                the same folder resumes. Default `None`: a temporary folder.
            verbose: Keras progress output. Default `"auto"`.
            callbacks: more Keras callbacks, after transferkit's. Default `None`.
            weight_decay: Adam's decoupled weight decay (AdamW) for the head; 0 is none.
                Default `None`: the config's (0).

        Returns:
            `self`; the epochs are in `self.history`.
        """
        from transferkit.training.callbacks import fit_phase

        settings = self._settings(
            {name: name for name in _FIT_SETTINGS}, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, weight_decay=weight_decay, patience=patience,
            validation_size=validation_size,
        )
        check_number(settings.weight_decay, "weight_decay", 0)
        splits = self._labelled(x, y, validation_data, settings.validation_size)
        self._set_classes(splits.class_names)
        self._fit_standardisation(splits)
        held_out = len(splits["validation"][1])
        early = held_out >= MIN_VALIDATION_FOR_EARLY_STOPPING
        self.metadata["head_early_stopping"] = "on" if early else (
            f"off: {held_out} validation examples, fewer than {MIN_VALIDATION_FOR_EARLY_STOPPING}"
            f"; all {settings.epochs} epochs ran and the last weights were kept")
        with self._run_folder(output) as run:
            head, train, validation, fit_kwargs = self._head_phase(splits, settings, run, verbose)
            self._compile(head, settings.learning_rate, settings.weight_decay)
            rows = fit_phase(
                head, train, validation, epochs=settings.epochs, run=run, phase="head",
                patience=settings.patience if early else max(settings.epochs, 1),
                restore_best_weights=early, verbose=verbose,
                extra_callbacks=callbacks or (), class_weight=self._class_weights(splits),
                **fit_kwargs,
            )
        self._record("head", rows)
        self._splits = splits
        self.skipped = list(splits.skipped)
        self._calibrate()
        return self

    def why_frozen(self) -> str:
        """Why this classifier's backbone or encoder cannot be fine-tuned; `""` when it can."""
        return ""

    def fine_tune(self, x=None, y=None, validation_data=None, *, epochs: int | None = None,
                  learning_rate: float | None = None, batch_size: int | None = None,
                  patience: int | None = None, validation_size: float | None = None,
                  output=None, verbose: Any = "auto", callbacks=None):
        """Unfreezes the backbone and trains end to end at a low learning rate (step 5).

        Args:
            x, y, validation_data: as in `fit`; default `None`: the data `fit` used.
            epochs: the most epochs (early stopping may end sooner). Default `None`: the config's
                `fine_tune_epochs`.
            learning_rate: Adam's learning rate; keep it low. Default `None`: the config's
                `fine_tune_learning_rate`.
            batch_size: examples per step. Default `None`: the config's.
            patience: Default `None`: the config's `fine_tune_patience`.
            validation_size: as in `fit`. Default `None`: the config's.
            output: as in `fit`; default `None`: the folder `fit` used (or a temporary one).
            verbose: Keras progress output. Default `"auto"`.
            callbacks: more Keras callbacks, as in `fit`. Default `None`.

        Returns:
            `self`; the epochs are added to `self.history`.
        """
        from transferkit.training.callbacks import fit_phase

        self._require_model()
        settings = self._settings(
            _FINE_TUNE_SETTINGS, epochs=epochs, learning_rate=learning_rate,
            batch_size=batch_size, patience=patience, validation_size=validation_size,
        )
        if epochs is None and settings.epochs < 1:
            raise InputError(
                f"`fine_tune()` needs `epochs` >= 1: the default, {self.config_class.__name__}"
                f".fine_tune_epochs, is {settings.epochs}. Pass epochs=N."
            )
        check_int(settings.epochs, "epochs", minimum=1)
        if x is None:
            if self._splits is None:
                raise InputError("`fine_tune()` without data needs a `fit(...)` first; or pass the data.")
            splits = self._splits
        else:
            splits = self._labelled(x, y, validation_data, settings.validation_size)
            self._set_classes(splits.class_names)
        self._unfreeze()
        self._compile(self.network, settings.learning_rate)
        with self._run_folder(output) as run, self._fine_tune_data(
            splits, settings.batch_size
        ) as (train, validation):
            rows = fit_phase(
                self.network, train, validation, epochs=settings.epochs, run=run,
                phase="fine_tune", patience=settings.patience, verbose=verbose, shuffle=False,
                extra_callbacks=callbacks or (), class_weight=self._class_weights(splits),
            )
        self._record("fine_tune", rows)
        self._splits = splits
        self.skipped = list(splits.skipped)
        self.metadata["fine_tuned"] = True
        self._calibrate()
        return self

    @property
    def temperature(self) -> float:
        """What the model divides its logits by (1.0: not calibrated); see `_calibrate`."""
        return self._labels_layer().temperature

    def _class_weights(self, splits: Splits) -> dict[int, float] | None:
        """Balanced class weights when `class_weight` asks for them at these counts
        (`transferkit.data.labels.class_weights_for`), recorded in `metadata`."""
        from transferkit.data.labels import class_weights_for

        if self.target != "single-label":
            return None  # per-label or numeric targets: Keras's class_weight is per class
        return class_weights_for(splits["train"][1], self.class_names,
                                 getattr(self, "class_weight", "none"), self.metadata)

    # -- using the model -----------------------------------------------------------------------

    def split_data(self, name: str) -> tuple[list, np.ndarray]:
        """The inputs and int labels of split `name` (`"train"`, `"validation"`) of the last
        `fit` or `fine_tune`, without the inputs that turned out unreadable."""
        if self._splits is None:
            raise InputError("No data yet: call `fit(...)` first.")
        items, labels = self._splits[name]
        return list(items), np.asarray(labels)

    def predict_proba(self, x, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities `(n, num_classes)`, columns in `class_names` order.

        Raises:
            ImageReadError: (images) files that cannot be read; all of them are named.
        """
        return self._predicted(x, batch_size)[1]

    def _predicted(self, x, batch_size, skip_unreadable=False) -> tuple[list, np.ndarray, dict]:
        """`(items, probabilities, index -> reason of each unreadable item)`."""
        self._require_model()
        items = self._items(x)
        batch_size = self._batch_size(batch_size)
        probabilities, unreadable = self.probabilities_and_errors(items, batch_size)
        if unreadable and not skip_unreadable:
            raise self._unreadable_error(unreadable)
        return items, probabilities, {entry["index"]: entry["reason"] for entry in unreadable}

    def predict_proba_cached(self, x, batch_size: int | None = None) -> np.ndarray:
        """`predict_proba`, through the feature cache while the backbone is still frozen.

        Right after `fit`, the features of the training and validation inputs are in the cache,
        so this runs only the head on them (the same numbers, in a fraction of the time); new
        inputs are computed once and cached. After `fine_tune`, or for an encoder without
        cached features, it is `predict_proba`.
        """
        self._require_model()
        items = self._items(x)
        batch_size = self._batch_size(batch_size)
        logits = None if self.metadata.get("fine_tuned") else self._cached_logits(items, batch_size)
        if logits is None:
            return self.predict_proba(items, batch_size=batch_size)
        return self._scores(logits)

    def predict(self, x, batch_size: int | None = None, *,
                skip_unreadable: bool = False) -> list[dict]:
        """The most likely class of each input, like a Hugging Face pipeline.

        Args:
            x: the inputs (images or texts; see the subclass).
            batch_size: inputs per forward pass. Default `None`: the config's.
            skip_unreadable: (images) an unreadable file gets `{"path", "skipped": reason}`
                instead of failing the call. Default `False`: `ImageReadError` names them all.

        Returns:
            One dict per input, in order: `label`, `score` (its probability) and `probabilities`
            (class -> probability); `path` too for image files.
        """
        items, probabilities, reasons = self._predicted(x, batch_size, skip_unreadable)
        results = []
        for index, (item, row) in enumerate(zip(items, probabilities)):
            if index in reasons:
                results.append({**self._describe_item(item), "skipped": reasons[index]})
                continue
            results.append({**self._describe_item(item), **self.describe_output(row)})
        return results

    def export(self, path: str | os.PathLike | None = None, format: str = "onnx",
               quantize: str = "none", **options) -> dict:
        """Exports the model to `path` (`"saved_model"`, `"onnx"`, `"litert"`), verified on its
        runtime; see `transferkit.export.export` (the layer above: imported on use)."""
        from transferkit.export import export

        return export(self, path, format=format, quantize=quantize, **options)

    def explain(self, x, label: str | None = None, method: str | None = None) -> list[dict]:
        """Why the model says what it says about each input: a heat map over each image, or a
        score for each word of each text (`transferkit.explain`, the layer above: imported on use).

        Args:
            x: the inputs, as `predict` takes them.
            label: the class or label to explain. Default `None`: the predicted class (the
                highest-scoring label for multi-label; regression explains its value).
            method: images: `"gradcam"` (default), `"gradcam++"` or `"layercam"`
                (`transferkit.explain.cams`); text: `"occlusion"` (default) or
                `"integrated-gradients"` (`transferkit.explain.text`).

        Returns:
            One dict per input: `input`, `prediction`, `explained`, `score`, `method`, and
            `map`/`seen`/`grid` (images; `transferkit.explain.images.explain_images`) or `words`
            (text; `transferkit.explain.text.explain_texts`). An unreadable image gets
            `{"input", "path", "skipped": reason}`.
        """
        self._require_model()
        return self._explain(self._items(x), label, method)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the classifier to one `.keras` file, atomically. Returns the path.

        The file takes raw inputs (images of any size, or strings) and returns class
        probabilities; it loads with `transferkit.load(path)`, or with
        `keras.saving.load_model(path, safe_mode=True)` after `import transferkit`.
        """
        from transferkit.training.io import save_model_atomic

        model = self._require_model()
        path = Path(path)
        if path.suffix != ".keras":
            raise InputError(f"The file name must end in `.keras`. Received: path={str(path)!r}.")
        self._update_metadata()
        labels = self._labels_layer()
        labels.metadata = dict(self._class_labels().metadata)
        save_model_atomic(model, path)
        self.path = path
        return path

    # -- hooks for subclasses ------------------------------------------------------------------

    def check_settings(self) -> None:
        """Raises `InputError` for settings that cannot work (an unknown backbone, an option of
        another kind of encoder...), before any data is read or model built."""

    def _train_defaults(self):
        """The config whose values fill `None` settings (resolved for this classifier)."""
        return self.config_class()

    def get_encoder(self):
        """The classifier's encoder: an `ImageEncoder` or a `TextEncoder` (made on first use;
        loads nothing). It gives the frozen features (`features`) and unfreezes for fine-tuning."""
        raise NotImplementedError

    def _attach(self) -> None:
        """Called after `from_keras_model` set `model`, `network` and `metadata`."""

    def _update_metadata(self) -> None:
        """Called before saving, to bring `metadata` up to date."""

    def _source_name(self) -> str:
        raise NotImplementedError

    def _explain(self, items: list, label, method) -> list[dict]:
        raise NotImplementedError

    def _items(self, x) -> list:
        """`x` as a list of single inputs."""
        raise NotImplementedError

    def _describe_item(self, item) -> dict:
        return {}

    def _skipped_item(self, item, index: int) -> dict:
        """How a skipped list names input `index` (`{"path": ...}`, `{"text": ...}`)."""
        raise NotImplementedError

    def _with_labels(self, x, y, name: str = "x") -> tuple[list, list]:
        """Inputs and their labels from `(x, y)`, or from `x = (inputs, labels)`."""
        if y is None:
            if not (isinstance(x, tuple) and len(x) == 2):
                raise InputError(
                    f"`{name}` must be {self.data_forms}, or {self.item_noun} with their labels "
                    f"(`y`). Received: {type(x).__name__} without labels."
                )
            x, y = x
        items, labels = self._items(x), list(np.asarray(y, dtype=object).tolist())
        if len(items) != len(labels):
            raise InputError(
                f"`x` and `y` must have the same length. Received: {len(items)} "
                f"{self.item_noun} and {len(labels)} labels."
            )
        if not items:
            raise DataError(f"No {self.item_noun}: `{name}` is empty.")
        return items, labels

    def _validation_pair(self, validation_data) -> tuple[list, list]:
        if isinstance(validation_data, tuple) and len(validation_data) == 2:
            return self._with_labels(*validation_data, name="validation_data")
        raise InputError(
            f"`validation_data` must be a pair `({self.item_noun}, labels)`. Received: "
            f"{type(validation_data).__name__}."
        )

    def _labelled(self, x, y, validation_data, validation_size) -> Splits:
        raise NotImplementedError

    def _head_phase(self, splits: Splits, settings, run, verbose) -> tuple:
        """Builds what the head phase trains: `(model, train data, validation data, fit kwargs)`."""
        raise NotImplementedError

    def _unfreeze(self) -> None:
        raise NotImplementedError

    def _fine_tune_data(self, splits: Splits, batch_size: int):
        """A context manager giving `(train data, validation data)` for fine-tuning."""
        raise NotImplementedError

    def probabilities_and_errors(self, items: list,
                                 batch_size: int) -> tuple[np.ndarray, list[dict]]:
        """Probabilities of `items`, and `{"index", "path", "reason"}` of those unreadable."""
        raise NotImplementedError

    def _cached_logits(self, items: list, batch_size: int) -> np.ndarray | None:
        """Logits of `items` from cached frozen features and the head, or None if not possible."""
        return None

    def _unreadable_error(self, unreadable: list[dict]) -> Exception:
        raise NotImplementedError

    def _evaluation_data(self, x, y) -> tuple[list, np.ndarray, list[dict]]:
        """`(items, int labels, skipped)` to evaluate on."""
        raise NotImplementedError

    def _write_mistakes(self, report_dir: Path, items, true_names, predicted_names,
                        scores) -> Path:
        raise NotImplementedError


def load(path) -> Classifier:
    """Loads a classifier saved by transferkit (`.keras` file) with `safe_mode=True`.

    Args:
        path: a `.keras` file from `transferkit train` or `Classifier.save`, its run folder,
            `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/model` (MLflow), or a
            `transferkit.model_ref.ModelRef` of one of them.

    Returns:
        An `ImageClassifier` or a `TextClassifier`, ready to `predict` and `evaluate`.

    Raises:
        InputError: the path is missing, not a `.keras` file, or not a transferkit model.
    """
    from transferkit.model_ref import ModelRef
    from transferkit.training.io import load_model

    ref = ModelRef.resolve(path)
    path = ref.model_path
    model = load_model(ref)
    task = labels_layer(model).task
    if task not in TASK_CLASSES:
        raise InputError(f"{path}: unknown task {task!r} in its labels layer.")
    module_name, class_name = TASK_CLASSES[task].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    classifier = cls.from_keras_model(model)
    classifier.path = path
    return classifier
