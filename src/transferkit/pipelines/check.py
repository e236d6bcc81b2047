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

Every target of `train` is checked (`transferkit.tasks.targets`): class folders and `label`
columns are single-label; a `labels` column (or 0/1 columns) multi-label, whose label sets are
checked by cleanlab's multi-label finder; a `target` column regression, whose numbers are checked
by out-of-fold ridge residuals (`transferkit.reports.label_issues`). Images may also be listed
in a table (a `path` column, as `train images TABLE` reads it).

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
               path_column: str | None = None, target: str | None = None,
               seed: int = ImageTrainConfig.seed, log: Callable[[str], None] = print) -> dict:
    """Checks a data folder (images) or table (text, or images listed by path); see the module
    docstring.

    Args:
        data: a folder of class sub-folders (or train/ and validation/), a text table, or a
            table of image paths (with a `path` column, or `path_column`, and no text column).
        output: the folder for the files. Default `None`: `checks/<data name>-<time>`.
        backbone: the image backbone whose features are compared. Default
            `ImageTrainConfig.backbone`.
        encoder: the text encoder (a sentence encoder: `minilm` or a folder). Default
            `TextTrainConfig.encoder`, which has no cached features; `minilm` is used then.
        text_column, label_column: a table's columns, as in `train text`. Default `None`: the
            one named text, sentence or review, and the target's (label or sentiment, labels,
            target).
        path_column: an image table's column of paths. Default `None`: `path`.
        target: `"single-label"`, `"multi-label"` or `"regression"`, as in `train`. Default
            `None`: from the data (`transferkit.data.label_columns.infer_target`), logged.
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
    images, target = _kind_and_target(data, text_column, path_column, label_column, target, log)
    if Path(data).is_dir():
        examples = _image_examples(data, backbone, seed, log)
    elif images:
        examples = _image_table_examples(data, backbone, seed, log,
                                         (path_column or "path", label_column), target)
    else:
        examples = _text_examples(data, encoder, seed, log, (text_column, label_column), target)
    out.mkdir(parents=True, exist_ok=True)
    result = {"data": str(data), "kind": "images" if images else "text", "target": target,
              "class_counts": examples["counts"], "skipped": examples["skipped"]}
    result.update(_label_check(examples, out, images, seed, target))
    result.update(_duplicates(examples, out, target))
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


def _kind_and_target(data, text_column, path_column, label_column, target, log) -> tuple:
    """`(images, target)`: whether `data` holds images (a folder, or a table with a path column
    and no text column) and the target (given, or read from the columns and logged)."""
    from transferkit.data.label_columns import infer_target
    from transferkit.data.text import TEXT_COLUMN_CANDIDATES, table_columns
    from transferkit.errors import InputError
    from transferkit.tasks.targets import check_target

    if target is not None:
        check_target(target)
    if Path(data).is_dir():
        if target not in (None, "single-label"):
            raise InputError(
                f"--target {target} needs a table of image paths and labels (a `path` column and "
                f"a labels or target column); {data} is a folder, and class folders hold one "
                "label per image."
            )
        return True, "single-label"
    columns = table_columns(data)
    lowered = {column.casefold() for column in columns}
    images = text_column is None and (path_column or "path").casefold() in lowered and not (
        lowered & set(TEXT_COLUMN_CANDIDATES))
    if target is None:
        own = (path_column or "path") if images else text_column
        target, why = infer_target([c for c in columns if c != own], label_column)
        log(f"Target: {target}, from {why} (--target sets it)")
    return images, target


def _encode(labels: list, target: str) -> tuple:
    """`(values, names, kept, bad)`: the labels as `train` encodes them for `target`."""
    from transferkit.data.labels import encode_labels
    from transferkit.tasks.targets import parse_label_sets, parse_values

    if target == "single-label":
        y, names = encode_labels(labels)
        return y, list(names), np.arange(len(y)), {}
    parsed = parse_label_sets(labels) if target == "multi-label" else parse_values(labels)
    return parsed.values, parsed.names, parsed.kept, parsed.bad


def _splits(values, names, target: str, shares: dict, seed: int,
            keys=None) -> tuple[list, dict]:
    """The splits `train` makes, stratified by `keys` (default: the classes, or the target's
    `split_keys`), and the counts per split. A class too rare for them stays in train (`train`
    refuses it and says so; the check reports it)."""
    from transferkit.data.labels import stratified_split
    from transferkit.tasks.targets import split_keys

    if keys is None:
        keys = values if target == "single-label" else split_keys(target, values)
    index = stratified_split(keys, shares, seed)
    splits = np.empty(len(values), dtype=object)
    for split, members in index.items():
        splits[members] = split
    return splits.tolist(), {split: _counts(values[members], names, target)
                             for split, members in index.items()}


def _counts(values, names, target: str) -> dict:
    """Examples per class, positives per label, or the target's count, range and mean."""
    if target == "regression":
        return {"n": len(values), "min": round(float(values.min()), 4),
                "max": round(float(values.max()), 4), "mean": round(float(values.mean()), 4)}
    if target == "multi-label":
        return {name: int(values[:, i].sum()) for i, name in enumerate(names)}
    return {name: int((values == i).sum()) for i, name in enumerate(names)}


def _image_table_examples(data, backbone: str, seed: int, log, columns: tuple,
                          target: str) -> dict:
    from transferkit.backbones.image_encoder import ImageEncoder
    from transferkit.data.image_inputs import ImageInputs
    from transferkit.data.image_table import read_image_table

    table = read_image_table(data, columns[0], columns[1], target)
    if table.columns_note:
        log(table.columns_note)
    values, names, kept, bad = _encode(table.labels, target)
    skipped = table.skipped + [{"path": table.paths[i], "reason": why} for i, why in bad.items()]
    for entry in skipped[:5]:
        log(f"  skipped {entry.get('line') or entry.get('row') or entry.get('path')}: "
            f"{entry['reason']}")
    items = [table.paths[i] for i in kept]
    splits, counts = _splits(values, names, target,
                             {"validation": ImageTrainConfig.validation_size}, seed)
    encoder = ImageEncoder(backbone, seed=seed)
    encoder.check()
    inputs = ImageInputs(items)
    log(f"Features of {len(items)} images ({backbone}, cached)")
    features, ok = encoder.readable_features(inputs)
    return {"items": items, "features": features, "ok": ok, "splits": splits, "labels": values,
            "class_names": names, "keys": items, "exact": inputs.digests(), "counts": counts,
            "skipped": skipped}


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


def _text_examples(data, encoder: str, seed: int, log, columns: tuple, target: str) -> dict:
    from transferkit.data.image_table import DEFAULT_LABEL_COLUMNS
    from transferkit.data.text import read_text_table, text_key
    from transferkit.tasks.text_classifier import TextClassifier

    if encoder == TextTrainConfig.encoder:
        encoder = "minilm"  # the default text model caches no features; the check needs some
    text_column, label_column = columns
    if label_column is None and target == "regression":
        label_column = DEFAULT_LABEL_COLUMNS[target]
    table = read_text_table(data, text_column, label_column, label_sets=target == "multi-label")
    if table.indicators is not None:
        log(table.indicators.describe())
    values, names, kept, bad = _encode(table.labels, target)
    texts = [table.texts[i] for i in kept]
    for line in (table.describe_drops(),
                 table.describe_renamed_labels() if target == "single-label" else "",
                 f"{len(bad)} rows left out: {next(iter(bad.values()))}" if bad else ""):
        if line:
            log(line)
    splits, counts = _splits(values, names, target, {
        "test": TextTrainConfig.test_size, "validation": TextTrainConfig.validation_size}, seed,
        keys=table.labels if target == "single-label" else None)  # as `train text` splits
    classifier = TextClassifier(encoder, class_names=names, seed=seed, features="sentence")
    text_encoder = classifier.get_encoder()
    text_encoder.adapt([text for text, split in zip(texts, splits) if split == "train"])
    log(f"Features of {len(texts)} texts ({encoder}, cached)")
    features = text_encoder.features(texts)
    return {"items": texts, "features": features, "ok": np.ones(len(texts), bool),
            "splits": splits, "labels": values, "class_names": names, "keys": texts,
            "exact": [text_key(t) for t in texts], "counts": counts,
            "skipped": [{"text": table.texts[i][:80], "reason": why} for i, why in bad.items()]}


def _label_check(examples: dict, out: Path, images: bool, seed: int, target: str) -> dict:
    """Confident learning on out-of-fold predictions over every example that could be read
    (for multi-label and regression, their own checks: `transferkit.reports.label_issues`)."""
    from transferkit.reports.label_issues import (
        find_label_issues,
        multilabel_label_issues,
        out_of_fold_probabilities,
        regression_label_issues,
        write_label_issues,
    )

    checked = np.flatnonzero(examples["ok"])
    labels = examples["labels"][checked]
    if target == "single-label":
        probabilities, folds, why = out_of_fold_probabilities(
            examples["features"][checked], labels, len(examples["class_names"]), seed=seed,
            class_names=examples["class_names"])
        issues = None if probabilities is None else find_label_issues(labels, probabilities)
    else:
        check = multilabel_label_issues if target == "multi-label" else regression_label_issues
        issues, folds, why = check(examples["features"][checked], labels, seed=seed)
    if issues is None:
        return {"label_issues": None, "label_issues_checked": False, "label_issues_why": why,
                "label_checked_examples": 0, "files": {}}
    items = [examples["items"][i] for i in checked]
    files = write_label_issues(out, issues, items, examples["class_names"], images=images)
    return {"label_issues": len(issues), "label_issues_checked": True, "folds": folds,
            "label_checked_examples": len(checked), "files": files}


def _duplicates(examples: dict, out: Path, target: str) -> dict:
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
            "label_a": _shown(examples, i), "label_b": _shown(examples, j),
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
    # Two numbers differ almost always: for regression, only the pairs are listed.
    conflicting = 0 if target == "regression" else sum(
        1 for row in rows if row["label_a"] != row["label_b"])
    return {"duplicates": counts, "duplicates_with_other_labels": conflicting,
            "duplicates_csv": str(out / "duplicates.csv")}


def _shown(examples: dict, i: int) -> str:
    """Example `i`'s label as the CSV shows it: its class, its `;`-joined labels, its number."""
    value, names = examples["labels"][i], examples["class_names"]
    if np.ndim(value) == 1:
        return ";".join(names[j] for j in np.flatnonzero(value)) or "(none)"
    return f"{float(value):.4g}" if np.issubdtype(np.asarray(value).dtype, np.floating) else (
        names[int(value)])


def _summary_lines(result: dict) -> list[str]:
    lines = [f"Check of {result['data']} ({result['kind']}, {result['target']})"]
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
