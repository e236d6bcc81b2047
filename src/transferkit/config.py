"""Training settings as data: the one place where every default of `train images` and
`train text` is written.

`ImageTrainConfig` and `TextTrainConfig` are frozen dataclasses. Everything else derives from them:
the classifiers' `fit` and `fine_tune` take their defaults from here, the command line builds its
flags and help text from the fields (as `transformers.HfArgumentParser` does), `--config FILE`
(TOML or JSON) is read into the same class, and a run folder's `config.json` is the dataclass
as JSON, so every run can be repeated. A test fails if a default of these names is written
anywhere else.

A field whose default is `None` means "decided by something else": the backbone (`image_size`),
or, for text, the encoder (`epochs`, `learning_rate`, ...; see `transferkit.backbones.text_encoders`).
Augmentation names are checked by the classifier (`ImageClassifier.check_settings`), before any
run folder exists; this module imports nothing of transferkit but `checks` and `errors`.

Example:
    >>> config = ImageTrainConfig(epochs=5)          # the rest are the defaults
    >>> config.fine_tune_learning_rate
    1e-05
    >>> ImageTrainConfig.from_dict({"fine-tune-epochs": 0}).fine_tune_epochs
    0
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from transferkit.checks import (
    DISTRIBUTE,
    RUNTIMES,
    check_choice,
    check_fraction,
    check_image_size,
    check_input_range,
    check_int,
    check_number,
    check_unfreeze,
)
from transferkit.errors import InputError

__all__ = ["IMAGE_HEAD_EPOCHS", "IMAGE_HEAD_PATIENCE", "ImageTrainConfig", "TextTrainConfig",
           "TrainConfig", "read_config_file"]


def _setting(default, help: str, *, type: type = str, check: Callable | None = None,
             none_means: str | None = None, choices=None, flag: bool = True,
             phase: str | None = None):
    """A dataclass field with what the command line and the checks need in its metadata.

    Args:
        default: the default value: the only place it is written.
        help: what the setting does, for `--help` (the default is appended).
        type: how the command line parses the flag's text (`int`, `float`, `str`).
        check: `check(value, name)` raises `InputError` for a bad value (not called for None).
        none_means: what a `None` default stands for, in words.
        choices: the values the command line accepts. Default: any.
        flag: whether the field gets a `--flag` (False for `data`, a positional argument).
        phase: the training phase that alone uses the setting (`"head"`, `"fine_tune"`): a
            resumed run may change it while that phase has no finished epoch. Default `None`:
            used from the start, so fixed once a run has begun.
    """
    metadata = {"help": help, "type": type, "check": check, "none_means": none_means,
                "choices": choices, "flag": flag, "phase": phase}
    return field(default=default, metadata=metadata)


def _int(minimum: int, why: str = "") -> Callable:
    return lambda value, name: check_int(value, name, minimum=minimum, why=why)


def _bool(value, name):
    if not isinstance(value, bool):
        raise InputError(f"`{name}` must be true or false. Received: {name}={value!r}.")


def _positive(value, name):
    return check_number(value, name, 0, include_minimum=False)


def _non_negative(value, name):
    return check_number(value, name, 0)


def _dropout(value, name):
    return check_number(value, name, 0, 1, include_maximum=False)


def _fraction(value, name):
    return check_fraction(value, name)


def _fraction_or_zero(value, name):
    return check_number(value, name, 0, 1, include_minimum=True, include_maximum=False)


def _image_size(value, name):
    check_image_size(value, name)


def _input_range(value, name):
    check_input_range(value)


def _unfreeze(value, name):
    check_unfreeze(value)


#: What a `None` default of a text setting means: the encoder kind's default (their values are
#: with the kinds, `transferkit.backbones.text_encoders`; the command line's help lists them).
ENCODER_DEFAULT = "the encoder's"


@dataclass(frozen=True)
class TrainConfig:
    """What both training commands share: reading settings, checking them, saving them.

    Subclasses declare their fields with `_setting(...)`; the order of the fields is the order of
    the flags in `--help`.
    """

    task: ClassVar[str] = ""

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            check = item.metadata.get("check")
            if value is not None and check is not None:
                check(value, item.name)
            choices = item.metadata.get("choices")
            if value is not None and choices:
                check_choice(value, item.name, choices)
        if getattr(self, "epochs", None) == 0 and getattr(self, "fine_tune_epochs", None) == 0:
            raise InputError(
                "`epochs` and `fine_tune_epochs` are both 0: nothing would be trained, and the "
                "model saved would be the untrained head. Give `epochs` (head on the frozen "
                "backbone) or `fine_tune_epochs` at least 1."
            )

    @classmethod
    def names(cls) -> list[str]:
        """The settings, in declaration order."""
        return [item.name for item in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> TrainConfig:
        """A config from plain data (a config file, a saved `config.json`); `-` in names is `_`.

        Args:
            data: setting -> value; settings not given keep their defaults.
            source: where the data came from, for messages (a file name). Default `""`.

        Raises:
            InputError: an unknown setting (the message lists the known ones) or a bad value.
        """
        values = {str(key).replace("-", "_"): value for key, value in data.items()}
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            where = f"{source}: " if source else ""
            raise InputError(
                f"{where}unknown setting(s) {', '.join(unknown)} for `train {cls.task}`. Known: "
                f"{', '.join(cls.names())}."
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON data (what a run folder's `config.json` holds)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def phase_of(cls, name: str) -> str | None:
        """The training phase that alone uses setting `name` (`"head"`, `"fine_tune"`), or None
        for a setting used from the start (the data, the backbone, the seed...)."""
        item = next((f for f in dataclasses.fields(cls) if f.name == name), None)
        return None if item is None else item.metadata.get("phase")

    @classmethod
    def default_text(cls, name: str) -> str:
        """The default of setting `name` in words, for help texts."""
        item = next(f for f in dataclasses.fields(cls) if f.name == name)
        if item.default is None:
            return item.metadata.get("none_means") or "none"
        return str(item.default)


_EPOCHS = "the most epochs of the head on the frozen backbone (early stopping may end sooner)"
#: The image head's `epochs` and `patience` when not given, per target. A softmax head on
#: cached features settles within 20 epochs; a sigmoid per label, or a regression head, learns
#: slower on a few hundred images and early stopping ends it anyway (benchmarks/targets.py:
#: clothing micro-F1 0.981 in 20 epochs, 0.990 with 100 and patience 10, as one-vs-rest
#: logistic regression's 0.992; UTKFace MAE 9.23 -> 9.17 years, three seeds).
IMAGE_HEAD_EPOCHS = {"single-label": 20, "multi-label": 100, "regression": 100}
IMAGE_HEAD_PATIENCE = {"single-label": 5, "multi-label": 10, "regression": 10}
_FINE_TUNE_EPOCHS = "epochs with the backbone unfrozen, after the head; 0 skips fine-tuning"
_LEARNING_RATE = "Adam's learning rate for the head"
_WEIGHT_DECAY = (
    "Adam's decoupled weight decay for the head (AdamW; each step shrinks the weights by "
    "learning rate x this); 0 turns it off"
)
_FINE_TUNE_LEARNING_RATE = "Adam's learning rate for fine-tuning; keep it low"
_BATCH_SIZE = "examples per training step"
_PATIENCE = "epochs without a better validation loss before the head phase stops"
_FINE_TUNE_PATIENCE = "epochs without a better validation loss before fine-tuning stops"
_SEED = "seed of the split, shuffling, augmentation and initial weights"
_CLASS_WEIGHT = (
    "auto: weigh each class by n / (classes x its count) when the largest class is >= 10x the "
    "smallest (below that the weights cost accuracy, see benchmarks/class_weight.py); "
    "balanced: whenever the counts differ; none: never"
)
#: The values of `class_weight`.
CLASS_WEIGHTS = ("auto", "balanced", "none")
#: How a text classifier uses a sentence encoder before its head: `"head"` trains the head on the
#: frozen encoder's features; `"contrastive"` first tunes the encoder on pairs of training texts
#: (`transferkit.training.contrastive`).
TEXT_STRATEGIES = ("head", "contrastive")
#: Contrastive pairs per training text and pass (SetFit's 20 iterations of one positive and one
#: negative pair per text), and the most pairs per pass when `contrastive_pairs` is not set.
CONTRASTIVE_PAIRS_PER_TEXT = 40
CONTRASTIVE_MAX_PAIRS = 4000
_CALIBRATE = (
    "fit a temperature on the validation split so that scores mean what they say (0.9: right "
    "nine times in ten); --no-calibrate keeps the raw scores"
)
_TARGET = (
    "what to predict: single-label (one class per example), multi-label (a set of labels: "
    "';'-separated in one column, or 0/1 columns, one per label) or regression (a number)"
)
_TARGET_FROM_DATA = (
    "from the data: single-label for class folders and a label column, multi-label for a labels "
    "column, regression for a target column (said in the log)"
)
#: The values of `target` (`transferkit.tasks.targets.TARGETS`, written here too so that this
#: module imports nothing of the tasks; a test checks they agree).
TARGET_CHOICES = ("single-label", "multi-label", "regression")
_DISTRIBUTE = (
    "data-parallel: keras.distribution.DataParallel over every device (KERAS_BACKEND=jax), and "
    "over processes with --coordinator, --num-processes, --process-id; none: one device"
)
_RUNTIME = (
    "what runs the frozen backbone/encoder for cached features: onnx (ONNX Runtime, 2-3x faster "
    "on a CPU), keras, or auto (onnx where installed and worth a one-off export, else keras); "
    "fine-tuning always runs in Keras"
)


@dataclass(frozen=True)
class ImageTrainConfig(TrainConfig):
    """The settings of `transferkit train images` and their defaults."""

    task: ClassVar[str] = "images"

    data: str | None = _setting(
        None, "class sub-folders, or train/ and validation/ (or val/) with class sub-folders; or "
        "a table (CSV, TSV, JSON Lines, Parquet) of image paths and labels",
        flag=False,
    )
    backbone: str = _setting(
        "efficientnet_lite0", "a registered backbone (`transferkit backbones`), a SavedModel or "
        "KerasHub preset folder, or an hf:// handle",
    )
    image_size: int | None = _setting(
        None, "input side in pixels", type=int, check=_image_size, none_means="the backbone's"
    )
    input_range: str | None = _setting(
        None, "the range a SavedModel folder takes pixels in: 0,1, -1,1 or 0,255",
        check=_input_range, none_means="0,1 (TF Hub's convention)",
    )
    weights: str | None = _setting(
        "imagenet", "'imagenet' or a .weights.h5 file of the backbone", none_means="random"
    )
    epochs: int | None = _setting(
        None, _EPOCHS, type=int, check=_int(0), phase="head",
        none_means=f"{IMAGE_HEAD_EPOCHS['single-label']}; {IMAGE_HEAD_EPOCHS['multi-label']} for "
        "multi-label and regression",
    )
    fine_tune_epochs: int = _setting(
        10, _FINE_TUNE_EPOCHS, type=int, check=_int(0), phase="fine_tune"
    )
    learning_rate: float = _setting(
        1e-3, _LEARNING_RATE, type=float, check=_positive, phase="head"
    )
    weight_decay: float = _setting(
        0.0, _WEIGHT_DECAY, type=float, check=_non_negative, phase="head"
    )
    fine_tune_learning_rate: float = _setting(
        1e-5, _FINE_TUNE_LEARNING_RATE, type=float, check=_positive, phase="fine_tune"
    )
    unfreeze: str | int = _setting(
        "all", "what fine-tuning trains: all, N (the top N layers) or a layer name (it and all "
        "above it)", check=_unfreeze, phase="fine_tune",
    )
    augment: str = _setting(
        "flip,rotate,zoom", "comma-separated: flip, vflip, rotate, zoom, translate, contrast, "
        "brightness; or none",
    )
    augment_views: int = _setting(
        2, "augmented views per training image, cached for the head", type=int, check=_int(0)
    )
    batch_size: int = _setting(32, _BATCH_SIZE, type=int, check=_int(1))
    validation_size: float = _setting(
        0.2, "share of each class held out for validation when DATA is not split already",
        type=float, check=_fraction,
    )
    patience: int | None = _setting(
        None, _PATIENCE, type=int, check=_int(1), phase="head",
        none_means=f"{IMAGE_HEAD_PATIENCE['single-label']}; {IMAGE_HEAD_PATIENCE['multi-label']} "
        "for multi-label and regression",
    )
    fine_tune_patience: int = _setting(
        3, _FINE_TUNE_PATIENCE, type=int, check=_int(1), phase="fine_tune"
    )
    dropout: float = _setting(
        0.2, "dropout rate before the last layer",
        type=float, check=_dropout,
    )
    seed: int = _setting(0, _SEED, type=int, check=_int(0))
    calibrate: bool = _setting(True, _CALIBRATE, type=bool, check=_bool)
    class_weight: str = _setting("auto", _CLASS_WEIGHT, choices=CLASS_WEIGHTS)
    runtime: str = _setting("auto", _RUNTIME, choices=RUNTIMES)
    distribute: str = _setting("none", _DISTRIBUTE, choices=DISTRIBUTE)
    target: str | None = _setting(None, _TARGET, choices=TARGET_CHOICES,
                                  none_means=_TARGET_FROM_DATA)
    path_column: str = _setting(
        "path", "a table's column of image paths (relative to the table's folder)"
    )
    label_column: str | None = _setting(
        None, "a table's column of labels (';'-separated for multi-label) or numbers; for "
        "multi-label also 0/1 columns separated by commas (red,blue,jeans)",
        none_means="labels (multi-label; without it, the table's 0/1 columns), target "
        "(regression), label (single-label)",
    )


@dataclass(frozen=True)
class TextTrainConfig(TrainConfig):
    """The settings of `transferkit train text` and their defaults.

    `None` means "the encoder's default": each kind of text encoder states its own
    (`transferkit.backbones.text_encoders`).
    """

    task: ClassVar[str] = "text"

    data: str | None = _setting(
        None, "a CSV, TSV, JSON Lines or Parquet table of texts and labels", flag=False
    )
    text_column: str | None = _setting(
        None, "the column of the texts", none_means="the one named text, sentence or review"
    )
    label_column: str | None = _setting(
        None, "the column of the labels; for multi-label also 0/1 columns separated by commas "
        "(sports,politics)", none_means="the one named label or sentiment; labels for "
        "multi-label (without it, the table's 0/1 columns), target for regression"
    )
    target: str | None = _setting(None, _TARGET, choices=TARGET_CHOICES,
                                  none_means=_TARGET_FROM_DATA)
    encoder: str = _setting(
        "glove-bilstm", "glove-bilstm, minilm, a sentence-transformers model folder, or a "
        "KerasHub preset such as hf://sentence-transformers/all-MiniLM-L6-v2 (online)",
    )
    word_vectors: str | None = _setting(
        None, "for glove-bilstm: packaged word vectors or a GloVe .txt, word2vec .bin/.txt or "
        "fastText .vec file", none_means=ENCODER_DEFAULT,
    )
    vocabulary_size: int | None = _setting(
        None, "for glove-bilstm: word ids in all, padding and unknown word included", type=int,
        check=_int(3, "padding, unknown word and at least one word"),
        none_means=ENCODER_DEFAULT,
    )
    max_length: int | None = _setting(
        None, "the most tokens per text", type=int, check=_int(3),
        none_means=ENCODER_DEFAULT,
    )
    features: str | None = _setting(
        None, "for sentence encoders, what the head learns from: layers (every layer's "
        "mean-pooled output, concatenated) or sentence (the encoder's own sentence vector)",
        choices=("layers", "sentence"), none_means=ENCODER_DEFAULT,
    )
    head_units: int | None = _setting(
        None, "for sentence encoders: hidden units of the head; 0 is a linear head", type=int,
        check=_int(0), none_means=ENCODER_DEFAULT,
    )
    dropout: float | None = _setting(
        None, "for sentence encoders: dropout rate on the features, before the head",
        type=float, check=_dropout, none_means=ENCODER_DEFAULT,
    )
    strategy: str = _setting(
        "head", "for sentence encoders: head (a head on the frozen encoder's features) or "
        "contrastive (first tune the encoder on pairs of training texts, same label or not, as "
        "SetFit does; for a few examples per class)", choices=TEXT_STRATEGIES, phase="head",
    )
    contrastive_epochs: int = _setting(
        1, "with --strategy contrastive: passes over the pairs", type=int, check=_int(1),
        phase="contrastive",
    )
    contrastive_pairs: int | None = _setting(
        None, "with --strategy contrastive: pairs of training texts per pass", type=int,
        check=_int(2), phase="contrastive",
        none_means=f"{CONTRASTIVE_PAIRS_PER_TEXT} per training text (SetFit's 20 iterations), "
        f"at most {CONTRASTIVE_MAX_PAIRS:,}",
    )
    contrastive_learning_rate: float = _setting(
        2e-5, "with --strategy contrastive: Adam's learning rate for the encoder on pairs",
        type=float, check=_positive, phase="contrastive",
    )
    epochs: int | None = _setting(
        None, _EPOCHS, type=int, check=_int(0), none_means=ENCODER_DEFAULT, phase="head"
    )
    fine_tune_epochs: int = _setting(
        0, _FINE_TUNE_EPOCHS, type=int, check=_int(0), phase="fine_tune"
    )
    learning_rate: float | None = _setting(
        None, _LEARNING_RATE, type=float, check=_positive,
        none_means=ENCODER_DEFAULT, phase="head",
    )
    weight_decay: float = _setting(
        0.0, _WEIGHT_DECAY, type=float, check=_non_negative, phase="head"
    )
    fine_tune_learning_rate: float | None = _setting(
        None, _FINE_TUNE_LEARNING_RATE, type=float, check=_positive,
        none_means=ENCODER_DEFAULT, phase="fine_tune",
    )
    batch_size: int = _setting(32, _BATCH_SIZE, type=int, check=_int(1))
    test_size: float = _setting(
        0.2, "share of each class held out for the test (0: none, the report reads the "
        "validation split; evaluate on a table of your own with `transferkit evaluate`)",
        type=float, check=_fraction_or_zero,
    )
    validation_size: float = _setting(
        0.1, "share of each class held out for validation", type=float, check=_fraction
    )
    patience: int = _setting(10, _PATIENCE, type=int, check=_int(1), phase="head")
    fine_tune_patience: int = _setting(
        3, _FINE_TUNE_PATIENCE, type=int, check=_int(1), phase="fine_tune"
    )
    seed: int = _setting(0, _SEED, type=int, check=_int(0))
    calibrate: bool = _setting(True, _CALIBRATE, type=bool, check=_bool)
    class_weight: str = _setting("auto", _CLASS_WEIGHT, choices=CLASS_WEIGHTS)
    runtime: str = _setting("auto", _RUNTIME, choices=RUNTIMES)
    distribute: str = _setting("none", _DISTRIBUTE, choices=DISTRIBUTE)

    def __post_init__(self):
        super().__post_init__()
        if self.test_size + self.validation_size >= 1:
            raise InputError(
                "`test_size + validation_size` must be below 1 to leave examples for training. "
                f"Received: test_size={self.test_size}, validation_size={self.validation_size}."
            )


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings in a TOML or JSON file (`.json` is JSON, anything else TOML), as a dict.

    The file is UTF-8, as TOML and JSON require; a UTF-8 byte-order mark (Windows Notepad writes
    one) is accepted.

    Raises:
        InputError: no such file, not UTF-8 (the line and byte are named), not valid TOML/JSON,
            or not a table of settings.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such config file. Pass a TOML or JSON file of settings.")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(
            f"{file}, line {line}: not valid UTF-8 (byte "
            f"0x{data[exc.start]:02x}): the file is in another encoding, such as Latin-1, "
            "Windows-1252 or UTF-16. Re-save it as UTF-8."
        ) from None
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        kind = "JSON" if file.suffix.lower() == ".json" else "TOML"
        raise InputError(f"{file}: not valid {kind} ({exc}).") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a table of settings (name = value), not a list.")
    return data
