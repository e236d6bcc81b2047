"""`transferkit rank DATA`: which backbone (or text encoder) suits this data, before training.

For a stratified sample of the training split (`per_class` examples of each class), each
candidate's frozen features are computed (and cached, so a `train` afterwards reuses them) and
scored two ways: LogME (`transferkit.reports.logme`: the evidence of a Bayesian linear model on
the features, no training) and k-NN accuracy (5 neighbours, cosine, 5-fold cross-validation on
the sample). With `train_top` K, heads are trained for the K best by LogME on the whole data
(as `train` would, head only) and their accuracy is added (validation for images, test for
text; not for GloVe mean vectors, which no head of transferkit trains on): the check of the
ranking.

Candidates: images, every backbone whose weights load offline (EfficientNet-Lite0/1/2 on a fresh
machine), or `backbones`; text, each packaged sentence encoder installed (`minilm`, `mpnet`), its
sentence vector and its layer features (`minilm:layers`), and GloVe mean vectors, or `backbones`
naming sentence encoders (`minilm`, a folder) and `glove`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from transferkit.config import ImageTrainConfig, TextTrainConfig
from transferkit.errors import DataError, InputError, UnknownBackboneError

__all__ = ["PER_CLASS", "knn_accuracy", "rank_backbones"]

PER_CLASS = 100
_NEIGHBOURS = 5


def knn_accuracy(features, labels, seed: int = ImageTrainConfig.seed) -> float:
    """5-fold cross-validated accuracy of a 5-nearest-neighbour classifier (cosine); fewer folds
    and neighbours for a small sample; NaN when a class has one example (`rank_backbones`
    refuses such a sample before it gets here)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels)
    counts = np.bincount(labels)
    folds = int(min(5, counts[counts > 0].min()))
    if folds < 2:
        return float("nan")
    x = np.asarray(features).reshape(len(labels), -1)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels))
    # No more neighbours than a training fold has of its smallest class: more cannot be fitted
    # (4 examples in 2 folds: 2 to fit) or only count the classes (2 neighbours of 2 classes).
    neighbours = min(_NEIGHBOURS, min(int(np.bincount(labels[train])[np.unique(labels)].min())
                                      for train, _ in splits))
    model = KNeighborsClassifier(n_neighbors=neighbours, metric="cosine")
    return float(cross_val_score(model, x, labels, cv=splits).mean())


def _check_image_names(names: Sequence[str]) -> None:
    """Raises `UnknownBackboneError` naming every candidate that is neither registered nor a
    folder or handle, each with the nearest registered names."""
    from transferkit.backbones.registry import BACKBONES
    from transferkit.backbones.sources import is_source

    unknown = [name for name in names if name not in BACKBONES and not is_source(name)]
    if unknown:
        near = {name: ", ".join(BACKBONES.nearest(name)) for name in unknown}
        listed = "; ".join(f"{name!r}" + (f" (did you mean {near[name]}?)" if near[name] else "")
                           for name in unknown)
        raise UnknownBackboneError(
            f"Unknown backbone in `backbones`: {listed}. Run `transferkit backbones` to list "
            "them, or pass a SavedModel or KerasHub preset folder."
        )


def _check_sample(data, labels, class_names, what: str) -> None:
    """Refuses a sample with a class of fewer than two examples: k-NN accuracy is
    cross-validated, and a class of one cannot be both fitted and held out."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    rare = [(str(class_names[i]), int(n)) for i, n in enumerate(counts) if n < 2]
    if rare:
        listed = ", ".join(f"{name!r} has {n}" for name, n in rare)
        raise DataError(
            f"{data}: too few {what} to rank on: {listed} in the training split that `rank` "
            f"samples (the rest is held out, as `train` holds it out), and k-NN accuracy is "
            "cross-validated: it needs 2 of each class. Add examples of "
            + ("that class." if len(rare) == 1 else "these classes.")
        )


def _sample(labels, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen.extend(rng.permutation(members)[:per_class].tolist())
    return np.array(sorted(chosen))


def rank_backbones(data: str | os.PathLike, *, backbones: Sequence[str] | None = None,
                   per_class: int = PER_CLASS, train_top: int = 0,
                   text_column: str | None = None, label_column: str | None = None,
                   seed: int = ImageTrainConfig.seed, log: Callable[[str], None] = print) -> dict:
    """Ranks candidate backbones (images) or encoders (text) for `data`; see the module docstring.

    `text_column` and `label_column` name a table's columns, as in `train text` (default `None`:
    the one named text, sentence or review, and label or sentiment).

    Returns:
        `{"data", "kind", "examples", "rows"}`; each row: `backbone`, `logme`, `knn_accuracy`,
        `feature_seconds`, `parameters`, `image_size` (images), and for the trained top K
        `trained_accuracy` on `trained_split` (validation for images, test for text). Rows are
        sorted by LogME, best first.

    Raises:
        UnknownBackboneError: an image candidate that is not registered, nor a folder or handle
            (said before any work, with the nearest names).
        DataError: a class with fewer than two examples in the training split sampled.
        InputError: no candidate could be ranked (each one's reason is given).
    """
    images = Path(data).is_dir()
    if not images:
        _check_single_label(data, text_column, label_column)
    if images and backbones:
        _check_image_names(backbones)  # a typo is said before any work, with the nearest names
    candidates = _image_candidates(data, backbones, per_class, seed, log) if images else (
        _text_candidates(data, backbones, per_class, seed, log, (text_column, label_column)))
    rows = []
    for row, features, labels in candidates:
        if features is not None:
            from transferkit.reports.logme import logme

            row["logme"] = round(logme(features, labels), 4)
            row["knn_accuracy"] = round(knn_accuracy(features, labels, seed), 4)
        rows.append(row)
        log(f"  {row['backbone']}: LogME {row.get('logme')}, k-NN {row.get('knn_accuracy')}"
            + (f" ({row['error']})" if row.get("error") else ""))
    if all(row.get("logme") is None for row in rows):
        raise InputError("None of the candidates could be ranked: " + "; ".join(
            f"{row['backbone']}: {row.get('error')}" for row in rows))
    rows.sort(key=lambda r: -r["logme"] if r.get("logme") is not None else float("inf"))
    trainable = [r for r in rows if r.get("logme") is not None and r["backbone"] != "glove"]
    for row in trainable[:train_top]:
        row["trained_split"], accuracy = _train_head(data, row, images, seed)
        row["trained_accuracy"] = round(accuracy, 4)
    examples = next((r["examples"] for r in rows if "examples" in r), 0)
    return {"data": str(data), "kind": "images" if images else "text", "examples": examples,
            "rows": rows}


def _check_single_label(data, text_column, label_column) -> None:
    """Refuses a table whose columns say another target than single-label: LogME and k-NN
    accuracy here score classes (an image table is not ranked either: class folders are)."""
    from transferkit.data.label_columns import infer_target
    from transferkit.data.text import TEXT_COLUMN_CANDIDATES, table_columns

    columns = table_columns(data)
    lowered = {column.casefold() for column in columns}
    own = text_column or next((c for c in columns if c.casefold() in TEXT_COLUMN_CANDIDATES),
                              None)
    try:
        target, why = infer_target([c for c in columns if c != own], label_column)
    except DataError:  # columns of several targets: the label column must be named
        raise InputError(
            f"{data}: the table has label columns of several targets (label, labels, target); "
            "`rank` scores classes: name the column of classes with --label-column."
        ) from None
    if target != "single-label" or own is None and "path" in lowered:
        what = f"a {target} table ({why})" if target != "single-label" else "a table of images"
        raise InputError(
            f"{data}: `rank` scores backbones on single-label data (class folders, or a text "
            f"table with a label column); this is {what}. Compare backbones by training each "
            "(`train ... --backbone NAME --fine-tune-epochs 0`): heads on cached features are "
            "quick."
        )


def _image_candidates(data, backbones, per_class, seed, log):
    from transferkit.backbones.image_encoder import ImageEncoder
    from transferkit.backbones.registry import offline_backbones
    from transferkit.data.image_folder import discover_image_folder
    from transferkit.data.image_inputs import ImageInputs
    from transferkit.errors import TransferkitError

    folder = discover_image_folder(data, validation_size=ImageTrainConfig.validation_size,
                                   seed=seed, require_validation=False)
    _check_sample(data, folder.train_labels, folder.class_names, "images")
    chosen = _sample(np.asarray(folder.train_labels), per_class, seed)
    paths = [folder.train_paths[i] for i in chosen]
    labels = np.asarray(folder.train_labels)[chosen]
    names = list(backbones) if backbones else offline_backbones()
    log(f"Ranking {len(names)} backbones on {len(paths)} training images "
        f"({per_class} a class at most)")
    for name in names:
        row = {"backbone": name, "examples": len(paths)}
        try:
            encoder = ImageEncoder(name, seed=seed)
            backbone = encoder.build()
            started = time.perf_counter()
            features, ok = encoder.readable_features(ImageInputs(paths, folder.digests))
            row["feature_seconds"] = round(time.perf_counter() - started, 1)
            row["parameters"] = int(backbone.count_params())
            row["image_size"] = "x".join(map(str, encoder.input_size))
        except TransferkitError as exc:  # weights not on this machine, a bad folder...
            row["error"] = str(exc).splitlines()[0]
            yield row, None, None
            continue
        yield row, features[ok], labels[ok]


def _text_candidates(data, backbones, per_class, seed, log, columns):
    from transferkit.errors import TransferkitError
    from transferkit.pipelines.text import _read_and_split

    config = TextTrainConfig(data=str(data), seed=seed, text_column=columns[0],
                             label_column=columns[1], target="single-label")
    _, names, parts = _read_and_split(config, lambda line: None)
    texts, labels = parts["train"]
    _check_sample(data, labels, names, "texts")
    chosen = _sample(np.asarray(labels), per_class, seed)
    texts = [texts[i] for i in chosen]
    labels = np.asarray(labels)[chosen]
    wanted = list(backbones) if backbones else default_text_candidates()
    log(f"Ranking {len(wanted)} text encoders on {len(texts)} training texts")
    for name in wanted:
        row = {"backbone": name, "examples": len(texts)}
        started = time.perf_counter()
        try:
            features, row["parameters"] = _text_features(name, texts, seed)
        except TransferkitError as exc:
            row["error"] = str(exc).splitlines()[0]
            yield row, None, None
            continue
        row["feature_seconds"] = round(time.perf_counter() - started, 1)
        yield row, features, labels


def default_text_candidates() -> list[str]:
    """Every packaged sentence encoder that is installed (MiniLM at least; MPNet with its
    extra), as its sentence vector and its layer features, then GloVe mean vectors."""
    from transferkit.backbones.sentence_encoders import (
        get_sentence_encoder_spec,
        list_sentence_encoders,
    )

    names = [name for name in list_sentence_encoders()
             if name == "minilm" or get_sentence_encoder_spec(name).available()]
    return [*(f"{name}{kind}" for name in names for kind in ("", ":layers")), "glove"]


def _text_features(name: str, texts: list[str], seed: int):
    """`(features, parameters or None)`: GloVe mean vectors, or a sentence encoder's sentence
    vector (`minilm`) or layer features (`minilm:layers`)."""
    if name == "glove":
        from transferkit.backbones.word_vectors import load_word_vectors

        tokens = [re.findall(r"\w+", text.lower()) for text in texts]
        vectors = load_word_vectors(vocabulary={t for words in tokens for t in words})
        index = {word: i for i, word in enumerate(vectors.words)}
        dim = vectors.vectors.shape[1]
        features = np.stack([
            np.mean([vectors.vectors[index[t]] for t in words if t in index], axis=0)
            if any(t in index for t in words) else np.zeros(dim, np.float32)
            for words in tokens
        ])
        return features, None  # only the sample's words are read: the table's count would mislead
    from transferkit.tasks.text_classifier import TextClassifier

    source, _, kind = name.partition(":")
    classifier = TextClassifier(source, class_names=["a", "b"], seed=seed,
                                features=kind or "sentence")
    encoder = classifier.get_encoder()
    encoder.adapt(texts)
    features = encoder.features(texts)
    return features, int(encoder.sentence_encoder().backbone.count_params())


def _train_head(data, row: dict, images: bool, seed: int) -> tuple[str, float]:
    """`(split, accuracy)` of a head trained on the whole data as `train` does (head only, no
    augmentation for images): validation accuracy for images, test accuracy for text."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        if images:
            from transferkit.pipelines.images import train_images

            result = train_images(data, backbone=row["backbone"], fine_tune_epochs=0,
                                  augment="none", seed=seed, output=Path(folder) / "run",
                                  verbose=0, log=lambda line: None)
            return "validation", result["validation_accuracy"]
        from transferkit.pipelines.text import train_text

        source, _, kind = row["backbone"].partition(":")
        result = train_text(data, encoder=source, features=kind or "sentence",
                            fine_tune_epochs=0, seed=seed, output=Path(folder) / "run",
                            verbose=0, log=lambda line: None)
        return "test", result["test_accuracy"]
