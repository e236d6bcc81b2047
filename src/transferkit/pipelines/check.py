"""`transferkit check DATA`: is the data fit to train on? No model is trained or saved.

What it reports, from the frozen backbone's (or sentence encoder's) features, cached like a
training run's, so a `train` afterwards reuses them:

* class counts per split;
* likely label errors of every labelled example, training and validation (and test, for text)
  alike: confident learning (cleanlab) on out-of-fold predictions, as every training run reports
  them for its training split (`transferkit.reports.label_issues`); the check trains nothing
  else, so no example needs to be held out of it;
* duplicates: exact (the same file or the same text, stripped and case-folded) and near (feature
  cosine >= 0.98), inside a split and across splits (a validation example that is also a training
  one makes validation accuracy look better than it is). The splits are those `train` would make;
  a class too small to give each split an example is reported, not refused.

Writes `label_issues.csv` (and for images `label_issues.png`), `duplicates.csv`, `check.json`
and `summary.txt` into the output folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from transferkit.config import ImageTrainConfig, TextTrainConfig

__all__ = ["NEAR_DUPLICATE_COSINE", "check_data", "near_duplicates"]

NEAR_DUPLICATE_COSINE = 0.98
_BLOCK = 2048  # rows of the cosine matrix computed at a time


def near_duplicates(features: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE) -> list[tuple]:
    """Pairs `(i, j, cosine)` with `i < j` whose feature cosine is >= `threshold`, most similar
    first. Computed block by block, so memory stays O(block x n)."""
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    pairs = []
    for start in range(0, len(x), _BLOCK):
        block = x[start:start + _BLOCK] @ x.T
        rows, cols = np.nonzero(block >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if i < c:
                pairs.append((i, c, float(block[r, c])))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def check_data(data: str | os.PathLike, *, output: str | os.PathLike | None = None,
               backbone: str = ImageTrainConfig.backbone, encoder: str = TextTrainConfig.encoder,
               text_column: str | None = None, label_column: str | None = None,
               seed: int = ImageTrainConfig.seed, log: Callable[[str], None] = print) -> dict:
    """Checks a data folder (images) or table (text); see the module docstring.

    Args:
        data: a folder of class sub-folders (or train/ and validation/), or a text table.
        output: the folder for the files. Default `None`: `checks/<data name>-<time>`.
        backbone: the image backbone whose features are compared. Default
            `ImageTrainConfig.backbone`.
        encoder: the text encoder (a sentence encoder: `minilm` or a folder). Default
            `TextTrainConfig.encoder`, which has no cached features; `minilm` is used then.
        text_column, label_column: a table's columns, as in `train text`. Default `None`: the
            one named text, sentence or review, and label or sentiment.
        seed: the split's seed (the same as a training run's). Default `0`.
        log: where progress lines go. Default `print`.

    Returns:
        `class_counts`, `label_issues` (count), `label_issues_checked`, `label_checked_examples`
        (every labelled example that could be read), `duplicates` (exact and near pairs by where
        they are), the files, and the seconds taken.

    Raises:
        InputError: `output` is a file (said before any work).
    """
    from transferkit.checks import check_output_folder
    from transferkit.files import write_json

    started = time.perf_counter()
    out = check_output_folder(output, "output") or Path("checks") / (
        f"{Path(data).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    images = Path(data).is_dir()
    examples = _image_examples(data, backbone, seed, log) if images else _text_examples(
        data, encoder, seed, log, (text_column, label_column))
    out.mkdir(parents=True, exist_ok=True)
    result = {"data": str(data), "kind": "images" if images else "text",
              "class_counts": examples["counts"]}
    result.update(_label_check(examples, out, images, seed))
    result.update(_duplicates(examples, out, images))
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["files"]["check"] = str(out / "check.json")
    result["files"]["summary"] = str(out / "summary.txt")
    write_json(out / "check.json", result)
    lines = _summary_lines(result)
    from transferkit.files import atomic_write

    with atomic_write(out / "summary.txt", "w") as handle:
        handle.write("\n".join(lines) + "\n")
    for line in lines:
        log(line)
    return result


def _image_examples(data, backbone: str, seed: int, log) -> dict:
    from transferkit.backbones.image_encoder import ImageEncoder
    from transferkit.data.image_folder import discover_image_folder
    from transferkit.data.image_inputs import ImageInputs

    folder = discover_image_folder(data, validation_size=ImageTrainConfig.validation_size,
                                   seed=seed, require_validation=False)
    encoder = ImageEncoder(backbone, seed=seed)
    encoder.check()
    items = list(folder.train_paths) + list(folder.validation_paths)
    log(f"Features of {len(items)} images ({backbone}, cached)")
    features, ok = encoder.readable_features(ImageInputs(items, folder.digests))
    splits = ["train"] * len(folder.train_paths) + ["validation"] * len(folder.validation_paths)
    labels = np.concatenate([folder.train_labels, folder.validation_labels]).astype(int)
    return {"items": items, "features": features, "ok": ok, "splits": splits, "labels": labels,
            "class_names": list(folder.class_names), "keys": [str(p) for p in items],
            "exact": [folder.digests.get(p) for p in items],
            "counts": folder.class_counts(), "skipped": folder.skipped}


def _text_examples(data, encoder: str, seed: int, log, columns: tuple) -> dict:
    from transferkit.data.labels import encode_labels, stratified_split
    from transferkit.data.text import read_text_table, text_key
    from transferkit.tasks.text_classifier import TextClassifier

    if encoder == TextTrainConfig.encoder:
        encoder = "minilm"  # the default text model caches no features; the check needs some
    table = read_text_table(data, *columns)
    for line in (table.describe_drops(), table.describe_renamed_labels()):
        if line:
            log(line)
    y, names = encode_labels(table.labels)
    # The splits `train text` would make; a class too rare for them stays in train (`train`
    # refuses it, and says so; the check reports it).
    index = stratified_split(table.labels, {"test": TextTrainConfig.test_size,
                                            "validation": TextTrainConfig.validation_size}, seed)
    splits = np.empty(len(y), dtype=object)
    for split, members in index.items():
        splits[members] = split
    classifier = TextClassifier(encoder, class_names=names, seed=seed, features="sentence")
    text_encoder = classifier.get_encoder()
    text_encoder.adapt([table.texts[i] for i in index["train"]])
    log(f"Features of {len(table)} texts ({encoder}, cached)")
    features = text_encoder.features(table.texts)
    counts = {split: {name: int((y[members] == i).sum()) for i, name in enumerate(names)}
              for split, members in index.items()}
    return {"items": table.texts, "features": features, "ok": np.ones(len(y), bool),
            "splits": splits.tolist(), "labels": y, "class_names": list(names),
            "keys": table.texts, "exact": [text_key(t) for t in table.texts], "counts": counts,
            "skipped": []}


def _label_check(examples: dict, out: Path, images: bool, seed: int) -> dict:
    """Confident learning on out-of-fold predictions over every example that could be read."""
    from transferkit.reports.label_issues import (
        find_label_issues,
        out_of_fold_probabilities,
        write_label_issues,
    )

    checked = np.flatnonzero(examples["ok"])
    labels = examples["labels"][checked]
    probabilities, folds, why = out_of_fold_probabilities(
        examples["features"][checked], labels, len(examples["class_names"]), seed=seed,
        class_names=examples["class_names"])
    if probabilities is None:
        return {"label_issues": None, "label_issues_checked": False, "label_issues_why": why,
                "label_checked_examples": 0, "files": {}}
    issues = find_label_issues(labels, probabilities)
    items = [examples["items"][i] for i in checked]
    files = write_label_issues(out, issues, items, examples["class_names"], images=images)
    return {"label_issues": len(issues), "label_issues_checked": True, "folds": folds,
            "label_checked_examples": len(checked), "files": files}


def _duplicates(examples: dict, out: Path, images: bool) -> dict:
    import pandas as pd

    from transferkit.files import atomic_path

    ok = np.flatnonzero(examples["ok"])
    rows = []
    for a, b, cosine in near_duplicates(examples["features"][ok]):
        i, j = int(ok[a]), int(ok[b])
        exact = examples["exact"][i] is not None and examples["exact"][i] == examples["exact"][j]
        rows.append({
            "kind": "exact" if exact else "near", "cosine": round(cosine, 4),
            "split_a": examples["splits"][i], "split_b": examples["splits"][j],
            "label_a": examples["class_names"][examples["labels"][i]],
            "label_b": examples["class_names"][examples["labels"][j]],
            "a": examples["keys"][i], "b": examples["keys"][j],
        })
    table = pd.DataFrame(rows, columns=["kind", "cosine", "split_a", "split_b", "label_a",
                                        "label_b", "a", "b"])
    with atomic_path(out / "duplicates.csv") as path:
        table.to_csv(path, index=False)
    counts = {}
    for row in rows:
        where = "across splits" if row["split_a"] != row["split_b"] else f"in {row['split_a']}"
        key = f"{row['kind']} {where}"
        counts[key] = counts.get(key, 0) + 1
    conflicting = sum(1 for row in rows if row["label_a"] != row["label_b"])
    return {"duplicates": counts, "duplicates_with_other_labels": conflicting,
            "duplicates_csv": str(out / "duplicates.csv")}


def _summary_lines(result: dict) -> list[str]:
    lines = [f"Check of {result['data']} ({result['kind']})"]
    for split, counts in (result["class_counts"] or {}).items():
        lines.append(f"  {split}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    if result["label_issues_checked"]:
        lines.append(f"Label issues: {result['label_issues']} likely mislabelled of "
                     f"{result['label_checked_examples']} examples, every split "
                     f"({result['files']['label_issues']})")
    else:
        lines.append(f"Label issues: not checked: {result['label_issues_why']}")
    pairs = result["duplicates"]
    lines.append("Duplicates (exact, or feature cosine >= "
                 f"{NEAR_DUPLICATE_COSINE}): " + (", ".join(
                     f"{n} {kind}" for kind, n in sorted(pairs.items())) or "none")
                 + (f"; {result['duplicates_with_other_labels']} with different labels"
                    if result["duplicates_with_other_labels"] else "")
                 + f" ({result['duplicates_csv']})")
    return lines
