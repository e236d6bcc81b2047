"""`transferkit check DATA`: is the data fit to train on? No model is trained or saved.

What it reports, from the frozen backbone's (or sentence encoder's) features, cached like a
training run's, so a `train` afterwards reuses them:

* class counts per split;
* likely label errors of the training split: confident learning (cleanlab) on out-of-fold
  predictions, exactly as every training run reports them (`transferkit.reports.label_issues`);
* duplicates: exact (the same file or the same text, stripped and case-folded) and near (feature
  cosine >= 0.98), inside a split and across splits (a validation example that is also a training
  one makes validation accuracy look better than it is).

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
               seed: int = ImageTrainConfig.seed, log: Callable[[str], None] = print) -> dict:
    """Checks a data folder (images) or table (text); see the module docstring.

    Args:
        data: a folder of class sub-folders (or train/ and validation/), or a text table.
        output: the folder for the files. Default `None`: `checks/<data name>-<time>`.
        backbone: the image backbone whose features are compared. Default
            `ImageTrainConfig.backbone`.
        encoder: the text encoder (a sentence encoder: `minilm` or a folder). Default
            `TextTrainConfig.encoder`, which has no cached features; `minilm` is used then.
        seed: the split's seed (the same as a training run's). Default `0`.
        log: where progress lines go. Default `print`.

    Returns:
        `class_counts`, `label_issues` (count), `label_issues_checked`, `duplicates` (exact and
        near pairs by where they are), the files, and the seconds taken.
    """
    from transferkit.files import write_json

    started = time.perf_counter()
    images = Path(data).is_dir()
    examples = _image_examples(data, backbone, seed, log) if images else _text_examples(
        data, encoder, seed, log)
    out = Path(output) if output else Path("checks") / (
        f"{Path(data).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
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
    from transferkit.data.image_folder import discover_image_folder
    from transferkit.data.image_inputs import ImageInputs
    from transferkit.tasks.image_classifier import ImageClassifier

    folder = discover_image_folder(data, validation_size=ImageTrainConfig.validation_size,
                                   seed=seed)
    classifier = ImageClassifier(backbone=backbone, class_names=folder.class_names,
                                 augment="none", seed=seed)
    classifier.build()
    items = list(folder.train_paths) + list(folder.validation_paths)
    log(f"Features of {len(items)} images ({backbone}, cached)")
    features, ok = classifier._features(ImageInputs(items, folder.digests), verbose=False)
    splits = ["train"] * len(folder.train_paths) + ["validation"] * len(folder.validation_paths)
    labels = np.concatenate([folder.train_labels, folder.validation_labels]).astype(int)
    return {"items": items, "features": features, "ok": ok, "splits": splits, "labels": labels,
            "class_names": list(folder.class_names), "keys": [str(p) for p in items],
            "exact": [folder.digests.get(p) for p in items],
            "counts": folder.class_counts(), "skipped": folder.skipped}


def _text_examples(data, encoder: str, seed: int, log) -> dict:
    from transferkit.data.text import text_key
    from transferkit.pipelines.text import _read_and_split
    from transferkit.tasks.text_classifier import TextClassifier

    if encoder == TextTrainConfig.encoder:
        encoder = "minilm"  # the default text model caches no features; the check needs some
    config = TextTrainConfig(data=str(data), encoder=encoder, seed=seed)
    table, names, parts = _read_and_split(config, log)
    classifier = TextClassifier(encoder, class_names=names, seed=seed, features="sentence")
    text_encoder = classifier.text_encoder()
    items, splits, labels = [], [], []
    for split, (texts, y) in parts.items():
        items += list(texts)
        splits += [split] * len(texts)
        labels += list(map(int, y))
    text_encoder.adapt(list(parts["train"][0]))
    log(f"Features of {len(items)} texts ({encoder}, cached)")
    features = text_encoder.features(items)
    counts = {split: {name: int((np.asarray(y) == i).sum()) for i, name in enumerate(names)}
              for split, (_, y) in parts.items()}
    return {"items": items, "features": features, "ok": np.ones(len(items), bool),
            "splits": splits, "labels": np.asarray(labels), "class_names": list(names),
            "keys": items, "exact": [text_key(t) for t in items], "counts": counts,
            "skipped": []}


def _label_check(examples: dict, out: Path, images: bool, seed: int) -> dict:
    from transferkit.reports.label_issues import (
        find_label_issues,
        out_of_fold_probabilities,
        write_label_issues,
    )

    train = [i for i, s in enumerate(examples["splits"]) if s == "train" and examples["ok"][i]]
    labels = examples["labels"][train]
    probabilities, folds, why = out_of_fold_probabilities(
        examples["features"][train], labels, len(examples["class_names"]), seed=seed)
    if probabilities is None:
        return {"label_issues": None, "label_issues_checked": False, "label_issues_why": why,
                "files": {}}
    issues = find_label_issues(labels, probabilities)
    items = [examples["items"][i] for i in train]
    files = write_label_issues(out, issues, items, examples["class_names"], images=images)
    return {"label_issues": len(issues), "label_issues_checked": True, "folds": folds,
            "train_examples": len(train), "files": files}


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
                     f"{result['train_examples']} training examples "
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
