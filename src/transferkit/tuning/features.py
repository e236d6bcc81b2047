"""The data a search trains its trials on: features of every candidate computed once (and cached
on disk, as `train` caches them), and the split the trials are scored on.

Honest selection: no trial sees the split the final report reads. Images: the report reads the
validation split (`train` stops early on it and evaluates it), so trials train on 80% of the
training split and are scored on the other 20% (stratified, seeded). Text: the report reads the
test split, so trials train on the training split and are scored on the validation split, as
`train` makes them (the same seed gives the same splits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from transferkit.config import ImageTrainConfig, TextTrainConfig
from transferkit.errors import InputError

__all__ = ["INNER_VALIDATION", "Prepared", "prepare_images", "prepare_text"]

#: The share of each class of the training split that scores image trials.
INNER_VALIDATION = 0.2


@dataclass
class Prepared:
    """What the trials of one search share.

    Attributes:
        kind: `"images"` or `"text"`.
        class_names: the classes, in the order of the int labels.
        train_y, val_y: int labels of the examples trials train on and are scored on.
        features: candidate -> `(train_x, val_x)` (candidates: backbones for images,
            `encoder:features` for text).
        train_views: images: candidate -> the augmented views' features of the training
            examples, `(n, views, dim)`, as `train`'s head trains on them (None: no
            augmentation).
        scored_on: what the trials are scored on, for the log and the summary.
        report_split: the split the final report reads (never read here).
        pooled: candidate -> `(x, views)` of every example the trials see (trained on or
            scored on), for the cross-validation of the finalists (`all_y` their labels).
    """

    kind: str
    class_names: list[str]
    train_y: np.ndarray
    val_y: np.ndarray
    features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    scored_on: str = ""
    report_split: str = ""
    train_views: dict[str, np.ndarray | None] = field(default_factory=dict)
    pooled: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    all_y: np.ndarray | None = None

    @property
    def candidates(self) -> list[str]:
        return list(self.features)


def prepare_images(data, backbones: list[str], seed: int, log) -> Prepared:
    """Features of the training split of an image folder for each of `backbones`."""
    from transferkit.data.image_folder import discover_image_folder
    from transferkit.data.image_inputs import ImageInputs
    from transferkit.data.labels import stratified_split
    from transferkit.tasks.image_classifier import ImageClassifier

    folder = discover_image_folder(data, validation_size=ImageTrainConfig.validation_size,
                                   seed=seed)
    labels = np.asarray(folder.train_labels)
    parts = stratified_split(labels, {"validation": INNER_VALIDATION}, seed)
    train, validation = parts["train"], parts["validation"]
    paths = list(folder.train_paths)
    inputs = ImageInputs(paths, folder.digests)
    readable = np.ones(len(paths), dtype=bool)
    features, views = {}, {}
    for backbone in backbones:
        # The encoder `train` makes with its defaults: the same features and augmented views,
        # read from the same cache.
        encoder = ImageClassifier(backbone, seed=seed).get_encoder()
        encoder.build()
        count = encoder.augment_views if encoder.augmentations else 0
        log(f"Features of {len(paths)} training images with {backbone}, and {count} augmented "
            "views of each (cached after the first time)")
        values, ok = encoder.readable_features(inputs)
        readable &= np.asarray(ok, dtype=bool)
        features[backbone] = values
        views[backbone] = encoder.readable_features(inputs, views=count)[0] if count else None
    train, validation = train[readable[train]], validation[readable[validation]]
    seen = np.sort(np.concatenate([train, validation]))
    return Prepared(
        "images", list(folder.class_names), labels[train], labels[validation],
        {name: (values[train], values[validation]) for name, values in features.items()},
        train_views={name: None if value is None else value[train]
                     for name, value in views.items()},
        scored_on=f"{len(validation)} images ({INNER_VALIDATION:.0%} of each class of the "
        f"training split, seed {seed}); trials train on the other {len(train)}",
        report_split=f"the validation split ({len(folder.validation_paths)} images)",
        pooled={name: (values[seen], None if views[name] is None else views[name][seen])
                for name, values in features.items()},
        all_y=labels[seen],
    )


def prepare_text(data, encoders: list[str], seed: int, log, text_column=None,
                 label_column=None) -> Prepared:
    """Features of the training and validation splits of a text table, for each encoder and each
    kind of its features (`layers`, `sentence`)."""
    from transferkit.pipelines.text import _read_and_split
    from transferkit.tasks.text_classifier import TextClassifier

    config = TextTrainConfig(data=str(data), seed=seed, text_column=text_column,
                             label_column=label_column, target="single-label")
    _, names, parts = _read_and_split(config, log)
    (train_texts, train_y), (val_texts, val_y) = parts["train"], parts["validation"]
    for name in encoders:  # every one before any features are computed
        if not TextClassifier(name, class_names=list(names)).get_encoder().caches_features:
            raise InputError(
                f"`tune text` searches heads on cached sentence-encoder features; {name!r} "
                "trains its whole network on token ids (no features to cache). Tune with "
                "--backbones minilm (or a sentence-transformers folder)."
            )
    features = {}
    for name in encoders:
        for kind in ("layers", "sentence"):
            classifier = TextClassifier(name, class_names=list(names), seed=seed, features=kind)
            encoder = classifier.get_encoder()
            log(f"Features of {len(train_texts)} + {len(val_texts)} texts with {name} ({kind}; "
                "cached after the first time)")
            encoder.adapt(train_texts)
            features[f"{name}:{kind}"] = (encoder.features(train_texts),
                                          encoder.features(val_texts))
    test = parts.get("test")
    return Prepared(
        "text", list(names), np.asarray(train_y), np.asarray(val_y), features,
        scored_on=f"the validation split ({len(val_texts)} texts, as `train` splits with seed "
        f"{seed}); trials train on the training split ({len(train_texts)})",
        report_split=f"the test split ({0 if test is None else len(test[0])} texts)",
        pooled={name: (np.concatenate(values), None) for name, values in features.items()},
        all_y=np.concatenate([np.asarray(train_y), np.asarray(val_y)]),
    )
