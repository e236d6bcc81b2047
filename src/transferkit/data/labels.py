"""Labels and splits, the same for images and texts: class names, int labels, stratified splits."""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from transferkit.errors import DataError, InputError

__all__ = [
    "AUTO_WEIGHT_RATIO",
    "IMBALANCE_RATIO",
    "balanced_class_weights",
    "class_weights_for",
    "check_sizes",
    "encode_labels",
    "sort_class_names",
    "stratified_split",
]


def sort_class_names(labels) -> list[str]:
    """The distinct labels in a stable order: numerically if all are numbers, else alphabetically.

    Args:
        labels: label strings.

    Returns:
        The class names; position `i` is the model's output `i`.
    """
    names = sorted({str(label) for label in labels})
    try:
        return sorted(names, key=lambda n: (float(n), n))
    except ValueError:
        return names


def _is_index(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def encode_labels(labels, class_names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Int labels (indices into the class names) and the class names, from the labels as given.

    Labels are values (strings, numbers): without `class_names` the classes are their distinct
    values, sorted (`sort_class_names`). With `class_names`, string labels must be among them and
    ints are indices into them (`[0, len(class_names))`), as Keras's sparse labels are.

    Args:
        labels: one label per example.
        class_names: the known classes in output order. Default `None`: learned from `labels`.

    Returns:
        `(int64 labels, class names)`.

    Raises:
        DataError: a label that is not among `class_names` (the message lists them), or an index
            out of range.
    """
    values = list(np.asarray(labels, dtype=object).tolist()) if len(labels) else []
    if class_names is None:
        names = sort_class_names(str(v) for v in values)
    else:
        names = [str(name) for name in class_names]
        if values and all(_is_index(v) for v in values):
            ints = np.asarray(values, dtype=np.int64)
            if ints.min() < 0 or ints.max() >= len(names):
                raise DataError(
                    f"Int labels are class indices and must be in [0, {len(names) - 1}] for the "
                    f"{len(names)} classes {names}. Received: min {ints.min()}, max {ints.max()}."
                )
            return ints, names
    index = {name: i for i, name in enumerate(names)}
    if class_names is not None:
        from transferkit.data.text import as_label

        for i, name in enumerate(names):  # a model trained on "1.0" takes the label "1"
            index.setdefault(as_label(name), i)
    unknown = sorted({str(v) for v in values} - set(index))
    if unknown:
        raise DataError(
            f"Labels not among the classes {names}: {unknown[:10]}. Use the classes the model "
            "was trained on."
        )
    return np.asarray([index[str(v)] for v in values], dtype=np.int64), names


def stratified_split(
    labels,
    sizes: dict[str, float],
    seed: int,
    groups: Sequence[str] | None = None,
    min_per_split: bool = False,
) -> dict[str, np.ndarray]:
    """Seeded, stratified splits: each class is shared out between `sizes` and `"train"`.

    Each class is shuffled with `seed` (its groups, when given: identical files stay together)
    and cut from the front: the first split in `sizes` gets about its share (at least one
    example), then the next, and the rest goes to `"train"`, which always keeps at least one.

    Args:
        labels: one label per example (any hashable values).
        sizes: split name -> share of each class, e.g. `{"test": 0.2, "validation": 0.1}`.
        seed: the shuffling seed.
        groups: one key per example; examples with the same key go to the same split. Default
            `None`: every example on its own.
        min_per_split: refuse classes too small to give every split one example. Default
            `False`: a class of one example goes to `"train"` only.

    Returns:
        `{"train": idx, **{name: idx}}`, sorted integer index arrays.

    Raises:
        InputError: a share not in (0, 1), or shares that add up to 1 or more.
        DataError: with `min_per_split`, classes with too few examples (each is named with its
            count), or fewer than two classes.
    """
    check_sizes(sizes)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if min_per_split:
        _check_splittable([str(c) for c in classes], [int(n) for n in counts], len(sizes) + 1)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], **{name: [] for name in sizes}}
    for name in classes:
        members = np.flatnonzero(labels == name)
        if groups is None:
            order = [[int(i)] for i in members]
        else:
            grouped: dict[str, list[int]] = defaultdict(list)
            for i in members:
                grouped[groups[i]].append(int(i))
            order = list(grouped.values())
        rng.shuffle(order)
        n = len(members)
        targets = {split: max(1, round(n * share)) for split, share in sizes.items()}
        while n - sum(targets.values()) < 1 and any(targets.values()):
            largest = max(targets, key=lambda split: (targets[split], split == next(iter(sizes))))
            targets[largest] -= 1  # tiny classes: keep one for training
        taken_groups: list[tuple[str, list[int]]] = []
        for split, target in targets.items():
            taken = 0
            while order and taken < target:
                group = order.pop(0)
                taken_groups.append((split, group))
                taken += len(group)
        if not order and taken_groups:
            # Identical copies took every example: the last group stays for training.
            order.append(taken_groups.pop()[1])
        for split, group in taken_groups:
            parts[split].extend(group)
        parts["train"].extend(i for group in order for i in group)
    return {split: np.asarray(sorted(indices), dtype=np.int64) for split, indices in parts.items()}


def _check_splittable(classes: list[str], counts: list[int], splits: int) -> None:
    if len(classes) < 2:
        only = f"({classes[0]!r}) " if classes else ""
        raise DataError(
            f"The labels have only one class {only}after dropping unusable rows; a classifier "
            "needs at least two."
        )
    rare = [(c, n) for c, n in zip(classes, counts) if n < splits]
    if rare:
        listed = ", ".join(f"{c!r} ({n} example{'s' if n > 1 else ''})" for c, n in rare[:10])
        if len(rare) > 10:  # 10,000 unique labels must not make a 10,000-item message
            listed = f" ({len(rare)} classes): {listed} and {len(rare) - 10} more"
        else:
            listed = f": {listed}"
        hint = ""
        if len(classes) > sum(counts) / 2:
            hint = (f" {len(classes)} classes for {sum(counts)} examples: most labels are unique; "
                    "check that these are the labels (not ids or free text).")
        raise DataError(
            f"Classes too rare to split{listed}. Each class needs at least {splits} examples "
            f"(one for each split). Add examples, or merge or remove these classes.{hint}"
        )


def check_sizes(sizes: dict[str, float]) -> None:
    """Raises `InputError` unless every share is in (0, 1) and they leave room for training."""
    from transferkit.checks import check_fraction

    for name, share in sizes.items():
        check_fraction(share, f"{name}_size")
    if sum(sizes.values()) >= 1:
        listed = ", ".join(f"{name}_size={share}" for name, share in sizes.items())
        raise InputError(
            f"The held-out shares must add up to less than 1, to leave examples for training. "
            f"Received: {listed}."
        )


#: The ratio of the largest to the smallest training class from which classes count as imbalanced:
#: the summary then leads with macro F1 and balanced accuracy.
IMBALANCE_RATIO = 3.0
#: The ratio from which `class_weight="auto"` weighs the classes. Measured (benchmarks/
#: class_weight.py): at 4x the weights cost accuracy and macro F1; from 10x they raise macro F1
#: and balanced accuracy (cats_and_dogs 10x, Reuters R8 26x).
AUTO_WEIGHT_RATIO = 10.0


def balanced_class_weights(labels, num_classes: int) -> tuple[dict[int, float] | None, float]:
    """`({class: n / (classes present x count)}, largest / smallest count)`; the weights are
    None when every present class has the same count (or there are no labels)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts[counts > 0]
    if not len(present):
        return None, 1.0
    ratio = float(present.max() / present.min())
    if ratio == 1.0:
        return None, ratio
    total = float(counts.sum())
    return {i: total / (len(present) * float(c)) for i, c in enumerate(counts) if c}, ratio


def class_weights_for(labels, class_names, mode: str, metadata: dict) -> dict[int, float] | None:
    """The class weights a training phase uses: balanced ones when `mode` is `"balanced"`, or
    `"auto"` and the largest class is at least `AUTO_WEIGHT_RATIO` times the smallest; else None. Writes `class_counts`, `imbalance` (largest / smallest
    count) and `class_weights` (by name, when used) into `metadata`."""
    labels = np.asarray(labels, dtype=np.int64)
    weights, ratio = balanced_class_weights(labels, len(class_names))
    metadata["class_counts"] = {name: int((labels == i).sum()) for i, name in enumerate(class_names)}
    metadata["imbalance"] = round(ratio, 2)
    metadata.pop("class_weights", None)
    wanted = mode == "balanced" or (mode == "auto" and ratio >= AUTO_WEIGHT_RATIO)
    if not wanted or weights is None:
        return None
    metadata["class_weights"] = {class_names[i]: round(w, 4) for i, w in weights.items()}
    return weights
