"""Targets: what a model predicts from its features, and everything that depends on it.

* `"single-label"`: one class per example (softmax, or one sigmoid logit for two classes): what
  transferkit always did, and the default;
* `"multi-label"`: a set of labels per example (`"black;jeans"`): one sigmoid per label, binary
  cross-entropy, and a threshold per label chosen on the validation split (`choose_thresholds`);
* `"regression"`: a number per example (an age, a 1-5 rating): one linear output on standardised
  targets, a Huber loss, and the model de-standardises, so predictions come back in the user's
  units (`transferkit.layers.ClassLabels`).

The backbone, its cached features, fine-tuning, saving and exporting are the same for all three;
only the head's width, its loss, the labels' form and the reports change. So a target is data
here (parsing, splitting, the loss, thresholds), used by `transferkit.tasks.base.Classifier`, not
a third classifier class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from transferkit.data.labels import encode_labels
from transferkit.errors import DataError, InputError

__all__ = [
    "ClassifierTargets",
    "DEFAULT_THRESHOLD",
    "HUBER_DELTA",
    "LABEL_SEPARATOR",
    "MIN_POSITIVES_TO_TUNE",
    "TARGETS",
    "ParsedTargets",
    "check_target",
    "choose_thresholds",
    "compile_spec",
    "describe_row",
    "num_logits",
    "parse_label_sets",
    "parse_values",
    "split_keys",
    "standardisation",
]

TARGETS = ("single-label", "multi-label", "regression")
#: What separates the labels of one example in a table cell (`"black;jeans"`).
LABEL_SEPARATOR = ";"
#: The threshold of a label with too few validation positives to choose one.
DEFAULT_THRESHOLD = 0.5
#: A label's threshold is tuned on validation only when it has at least this many positives
#: there: with one or two, the F1-optimal threshold is whatever separates those few examples.
MIN_POSITIVES_TO_TUNE = 3
#: Huber's delta on standardised targets: quadratic within one standard deviation (as efficient
#: as squared error there), linear beyond, so a mistyped age of 999 or a rater's outlier pulls
#: the head as much as an error of one standard deviation, not a thousand times more.
HUBER_DELTA = 1.0


def check_target(value, name: str = "target") -> str:
    """`value` if it is one of `TARGETS`; raises `InputError` naming them otherwise."""
    if value not in TARGETS:
        raise InputError(
            f"`{name}` must be one of {', '.join(TARGETS)}. Received: {name}={value!r}."
        )
    return value


def num_logits(target: str, num_classes: int) -> int:
    """The head's width: one logit for two single-label classes (a sigmoid), one per class or
    label otherwise, one for a regression target."""
    if target == "regression":
        return 1
    if target == "single-label" and num_classes == 2:
        return 1
    return num_classes


@dataclass
class ParsedTargets:
    """Labels read for a multi-label or regression target.

    Attributes:
        values: `(n, k)` float32 0/1 (multi-label, columns in `names` order) or `(n,)` float64
            (regression), for the rows kept.
        names: the labels (multi-label), or `[]` for regression.
        kept: the index of each kept row in the input.
        bad: input index -> why the row was left out.
    """

    values: np.ndarray
    names: list[str]
    kept: np.ndarray
    bad: dict[int, str] = field(default_factory=dict)


def _label_set(value) -> list[str] | None:
    """The labels of one cell: a `;`-separated string, or a list/tuple of labels (Python, or
    a table's 0/1 columns). None for a missing or blank cell, or one of separators only: a cell
    cannot tell "no label" from "not labelled". An empty list or tuple says "none of the labels"
    and is kept as `[]`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return list(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
    found = list(dict.fromkeys(p.strip() for p in str(value).split(LABEL_SEPARATOR) if p.strip()))
    return found or None


def parse_label_sets(labels, names=None) -> ParsedTargets:
    """Multi-label targets from one label set per example.

    Args:
        labels: per example, a `;`-separated string (`"black;jeans"`) or a list of labels.
            Surrounding spaces are dropped; a label may contain inner spaces (`"money fx"`). An
            empty list is an example of none of the labels; an empty string is missing.
        names: the model's labels in output order (evaluating). Default `None`: learned from
            `labels`, sorted.

    Returns:
        The 0/1 matrix; a row with no label (empty, missing) is left out and listed in `bad`.

    Raises:
        DataError: labels that differ only in case (`"Red"` and `"red"`: one label written two
            ways, or two?), labels not among `names`, or fewer than two labels in all.
    """
    sets, bad = [], {}
    for index, value in enumerate(labels):
        found = _label_set(value)
        if found is None:
            bad[index] = ("empty label set (write at least one label, ';' between them; for "
                          "examples of none of the labels, use 0/1 columns, one per label)")
        else:
            sets.append((index, found))
    seen = sorted({label for _, found in sets for label in found})
    if names is None:
        folded: dict[str, list[str]] = {}
        for label in seen:
            folded.setdefault(label.casefold(), []).append(label)
        variants = [spellings for spellings in folded.values() if len(spellings) > 1]
        if variants:
            listed = "; ".join(" and ".join(repr(s) for s in group) for group in variants[:5])
            raise DataError(
                f"Labels that differ only in case: {listed}. Write each label one way (or give "
                "them names that differ by more than case)."
            )
        names = seen
        if len(names) < 2:
            raise DataError(
                f"Multi-label targets need at least two labels; the data has {names}. With one "
                "label per example, train a single-label model (--target single-label)."
            )
    else:
        names = [str(n) for n in names]
        unknown = sorted(set(seen) - set(names))
        if unknown:
            raise DataError(
                f"Labels not among the model's labels {names[:20]}: {unknown[:10]}. Use the "
                "labels the model was trained on."
            )
    column = {name: i for i, name in enumerate(names)}
    values = np.zeros((len(sets), len(names)), dtype=np.float32)
    for row, (_, found) in enumerate(sets):
        values[row, [column[label] for label in found]] = 1.0
    kept = np.asarray([index for index, _ in sets], dtype=np.int64)
    return ParsedTargets(values, list(names), kept, bad)


def parse_values(values) -> ParsedTargets:
    """Regression targets: one finite number per example; others are left out, with why."""
    numbers, kept, bad = [], [], {}
    for index, value in enumerate(values):
        try:
            number = float(str(value).strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            bad[index] = f"target {str(value)[:40]!r} is not a number"
            continue
        if not math.isfinite(number):
            bad[index] = f"target {value!r} is not a finite number (NaN or infinity)"
            continue
        numbers.append(number)
        kept.append(index)
    return ParsedTargets(np.asarray(numbers, dtype=np.float64), [],
                         np.asarray(kept, dtype=np.int64), bad)


def split_keys(target: str, values: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """What `transferkit.data.labels.stratified_split` stratifies a target by.

    Multi-label: the rarest label of each example (counted over all of them), so every label with
    a few examples gets some into each split (a simple form of iterative stratification,
    Sechidis et al. 2011). Regression: the target's quantile bin (up to five), so that validation
    covers the whole range, not by chance only its middle.
    """
    values = np.asarray(values)
    if target == "multi-label":
        counts = values.sum(axis=0)
        # Each example's present label with the smallest count (ties: the first column); the
        # examples of no label are a stratum of their own.
        masked = np.where(values > 0, counts[None, :], np.inf)
        return np.where(values.any(axis=1), masked.argmin(axis=1), values.shape[1])
    if target == "regression":
        bins = int(min(5, max(1, len(values) // 10)))
        if bins < 2:
            return np.zeros(len(values), dtype=np.int64)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        return np.searchsorted(edges, values, side="right")
    raise InputError(f"No split keys for target {target!r}.")


def standardisation(values: np.ndarray) -> tuple[float, float]:
    """`(mean, scale)` of regression targets (the training split's); a constant target gets
    scale 1 so nothing divides by zero."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    scale = float(values.std())
    return mean, scale if scale > 0 and math.isfinite(scale) else 1.0


def compile_spec(target: str, num_classes: int, mean: float = 0.0, scale: float = 1.0):
    """`(loss, metrics)` for the network's logits (before `ClassLabels`)."""
    import keras

    if target == "multi-label":
        return (keras.losses.BinaryCrossentropy(from_logits=True),
                [keras.metrics.AUC(curve="PR", multi_label=False, from_logits=True,
                                   name="pr_auc")])
    if target == "regression":
        from transferkit.layers import StandardisedHuber, StandardisedMAE

        return StandardisedHuber(mean, scale, HUBER_DELTA), [StandardisedMAE(mean, scale)]
    if num_classes == 2:
        return (keras.losses.BinaryCrossentropy(from_logits=True),
                [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)])
    return (keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def choose_thresholds(y_true, probabilities, names) -> tuple[list[float], dict]:
    """A threshold per label, chosen on validation: the one with the best F1 for that label.

    The rule: `DEFAULT_THRESHOLD` (0.5) unless another cut is strictly better on validation. The
    candidate cuts are the label's validation scores (each a place where a prediction changes);
    the best one's threshold is set halfway between that score and the next lower validation
    score, so that the margin is split as a max-margin classifier splits it (a cut right at the
    lowest positive score would miss every test positive a hair below it). A label with fewer
    than `MIN_POSITIVES_TO_TUNE` positives in validation keeps the default: too few to tune on.

    Returns:
        `(thresholds in names order, {"rule", "tuned", "default"})`: the labels whose threshold
        moved, and those that kept the default for too few positives (with their counts).
    """
    y_true = np.asarray(y_true) > 0.5
    probabilities = np.asarray(probabilities, dtype=np.float64)
    thresholds, tuned, default = [], [], {}
    for column, name in enumerate(names):
        truth, scores = y_true[:, column], probabilities[:, column]
        positives = int(truth.sum())
        if positives < MIN_POSITIVES_TO_TUNE:
            thresholds.append(DEFAULT_THRESHOLD)
            default[name] = positives
            continue
        threshold = _best_cut(truth, scores, positives)
        thresholds.append(threshold)
        if threshold != DEFAULT_THRESHOLD:
            tuned.append(name)
    rule = (f"per label, the F1-optimal cut on the validation split, halfway between the two "
            f"validation scores it separates; {DEFAULT_THRESHOLD} when no cut is strictly "
            f"better, or for labels with fewer than {MIN_POSITIVES_TO_TUNE} validation positives")
    return thresholds, {"rule": rule, "tuned": tuned, "default": default}


def _f1_at(truth: np.ndarray, scores: np.ndarray, cuts: np.ndarray, positives: int) -> np.ndarray:
    predicted = scores[None, :] >= cuts[:, None]
    tp = (predicted & truth[None, :]).sum(axis=1)
    return 2 * tp / (predicted.sum(axis=1) + positives)


def _best_cut(truth: np.ndarray, scores: np.ndarray, positives: int) -> float:
    """The threshold of one label (see `choose_thresholds`)."""
    cuts = np.unique(scores)
    f1 = _f1_at(truth, scores, cuts, positives)
    default = _f1_at(truth, scores, np.asarray([DEFAULT_THRESHOLD]), positives)[0]
    best = int(np.argmax(f1))  # the lowest cut of the best F1
    if f1[best] <= default:
        return DEFAULT_THRESHOLD
    below = scores[scores < cuts[best]]
    return float((cuts[best] + below.max()) / 2) if below.size else float(cuts[best])


def describe_row(target: str, names, row, thresholds=None) -> dict:
    """What one output row means: the same words for `predict`, the server and batch jobs.

    single-label: `label`, `score`, `probabilities` (class -> probability); multi-label: `labels`
    (the predicted set: each label at or above its threshold, best first) and `scores` (label ->
    probability); regression: `value`, in the target's units.
    """
    names = [str(n) for n in names]
    row = np.asarray(row, dtype=np.float64).reshape(-1)
    if target == "regression":
        return {"value": float(row[0])}
    if target == "multi-label":
        cuts = list(thresholds) if thresholds else [DEFAULT_THRESHOLD] * len(names)
        chosen = [i for i in np.argsort(-row, kind="stable") if row[i] >= cuts[i]]
        return {"labels": [names[i] for i in chosen],
                "scores": {name: float(p) for name, p in zip(names, row)}}
    best = int(np.argmax(row))
    return {"label": names[best], "score": float(row[best]),
            "probabilities": {name: float(p) for name, p in zip(names, row)}}


class ClassifierTargets:
    """What a `transferkit.tasks.base.Classifier` does with its `target`: the head's width,
    its labels as the network learns them, the split keys, the regression standardisation,
    the thresholds and what an output row means. `Classifier` inherits it, as it inherits
    `ClassifierEvaluation`; not used on its own (it relies on the classifier's `target`,
    `class_names`, `metadata` and hooks)."""

    @property
    def num_logits(self) -> int:
        """The head's width for this target and these classes (`targets.num_logits`)."""
        return num_logits(self.target, len(self.class_names))

    def encode_targets(self, labels, names=None) -> tuple[np.ndarray, list[str], np.ndarray, dict]:
        """The labels as the network learns them, for this classifier's `target`.

        Returns:
            `(values, names, kept, bad)`: int classes, a 0/1 matrix (multi-label) or numbers
            (regression) for the `kept` rows; `bad` maps a left-out row to why.
        """
        if self.target == "single-label":
            ints, names = encode_labels(labels, names)
            return ints, names, np.arange(len(ints)), {}
        if self.target == "regression":
            parsed = parse_values(labels)
            return parsed.values, [self.target_name()], parsed.kept, parsed.bad
        matrix = np.asarray(labels, dtype=object) if len(labels) else None
        if (names is not None and matrix is not None and matrix.ndim == 2
                and matrix.shape[1] == len(names)):  # an indicator matrix, columns in names order
            # A row of zeros is an example of none of the labels: kept.
            values = np.asarray(matrix, dtype=np.float32)
            return values, list(names), np.arange(len(values)), {}
        parsed = parse_label_sets(labels, names)
        return parsed.values, parsed.names, parsed.kept, parsed.bad

    def usable_targets(self, items: list, labels: list,
                       names=None) -> tuple[list, np.ndarray, list, list]:
        """`(items, target values, names, skipped)`: the inputs whose labels are usable for this
        target (`encode_targets`), and `{"path" or "text", "reason"}` of the others."""
        values, names, kept, bad = self.encode_targets(labels, names)
        skipped = [{**self._skipped_item(items[i], i), "reason": why} for i, why in bad.items()]
        if not len(kept):
            raise DataError(f"No usable labels: {skipped[0]['reason'] if skipped else 'none'}.")
        return [items[i] for i in kept], values, names, skipped

    def target_name(self) -> str:
        """A regression target's name (the only output's): its column, or `"value"`."""
        if self.class_names:
            return str(self.class_names[0])
        return str(self.metadata.get("label_column") or "value")

    def split_keys(self, values: np.ndarray) -> np.ndarray:
        """What a held-out split is stratified by (`targets.split_keys`; classes themselves)."""
        return values if self.target == "single-label" else split_keys(self.target, values)

    def _fit_standardisation(self, splits) -> None:
        """A regression target's mean and scale, from the training split, into the model."""
        if self.target != "regression":
            return
        mean, scale = standardisation(splits["train"][1])
        self.metadata["target_standardisation"] = [mean, scale]
        if self.model is not None:
            layer = self._labels_layer()
            layer.target_mean, layer.target_scale = mean, scale

    @property
    def thresholds(self) -> list[float]:
        """Multi-label: each label's threshold (chosen on validation; 0.5 before `fit`)."""
        chosen = self.metadata.get("thresholds")
        return list(chosen) if chosen else [DEFAULT_THRESHOLD] * len(self.class_names)

    def describe_output(self, row) -> dict:
        """What one output row means, as `predict` gives it.

        single-label: `label`, `score`, `probabilities` (class -> probability); multi-label:
        `labels` (the predicted set: scores at or above their label's threshold, best first),
        `scores` (label -> probability); regression: `value` (in the target's units).
        """
        return describe_row(self.target, self.class_names, row, self.thresholds)
