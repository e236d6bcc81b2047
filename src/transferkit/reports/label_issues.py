"""Likely label errors: confident learning on out-of-fold predictions from the cached features.

"Are my labels right?" Confident learning (Northcutt, Jiang and Chuang, JAIR 2021) compares each
training example's given label with what a model that never saw it predicts, class by class
thresholds included; `cleanlab` implements it and is used as it is (`cleanlab.filter`,
`cleanlab.rank`). What transferkit adds is the out-of-fold predictions, cheaply: the frozen
backbone's (or sentence encoder's) features are cached already, so K heads, one per fold, train
on them in seconds: a standardised logistic regression, the same linear head the classifier
trains, fitted by scikit-learn (exact and fast for a linear model; a Keras head would give the
same kind of probabilities in more time), its L2 strength chosen by cross-validated log loss.
K is 5, or the smallest class's count when a class has fewer examples; a class of one example
leaves the check undone, with the reason. A training run checks its training split;
`transferkit check`, which trains nothing else, checks every labelled example.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transferkit.config import ImageTrainConfig

__all__ = [
    "FOLDS",
    "find_label_issues",
    "multilabel_label_issues",
    "out_of_fold_probabilities",
    "regression_label_issues",
    "write_label_issues",
]

FOLDS = 5
SEED = ImageTrainConfig.seed  # the folds' seed, the runs' default
#: The inverse L2 strengths tried; the one with the best cross-validated log loss is used.
_STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def out_of_fold_probabilities(features, labels, num_classes: int, *, folds: int = FOLDS,
                              seed: int = SEED, class_names=None,
                              ) -> tuple[np.ndarray | None, int, str]:
    """Each example's class probabilities from a head trained on the other folds.

    Args:
        class_names: the names of the classes, for the reason. Default `None`: their indices.

    Returns:
        `(probabilities (n, num_classes) or None, folds used, why not)`: None with the reason
        when a class has fewer than two examples.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float32).reshape(len(labels), -1)
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=num_classes)
    present = counts[counts > 0]
    if len(present) < 2:
        return None, 0, "the data has one class"
    k = int(min(folds, present.min()))
    if k < 2:
        smallest = int(np.flatnonzero(counts == present.min())[0])
        name = smallest if class_names is None else repr(str(class_names[smallest]))
        return None, 0, (f"class {name} has one example: out-of-fold predictions need two of "
                         "each class. Add examples of it")
    strength = _regularization(x, y, k, seed)
    probabilities = np.zeros((len(y), num_classes))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, held_out in splitter.split(x, y):
        head = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=2000))
        head.fit(x[train], y[train])
        probabilities[np.ix_(held_out, head.classes_)] = head.predict_proba(x[held_out])
    return probabilities, k, ""


def _regularization(x, y, folds: int, seed: int) -> float:
    """The L2 strength (C) of the heads: the best cross-validated log loss on the training
    split. Confident learning needs probabilities, not only the right class: with a thousand
    standardised features and a few thousand examples, a weakly regularised head is
    over-confident and flags right labels too (precision 0.62 at C = 1 against 0.90-0.95 here on
    cats_and_dogs with 5% flipped, `benchmarks/label_issues.py`)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    search = LogisticRegressionCV(
        Cs=list(_STRENGTHS), cv=StratifiedKFold(min(3, folds), shuffle=True, random_state=seed),
        scoring="neg_log_loss", max_iter=2000, l1_ratios=(0.0,), use_legacy_attributes=False,
    )
    search.fit(StandardScaler().fit_transform(x), y)
    return float(np.atleast_1d(search.C_)[0])


def find_label_issues(labels, probabilities) -> list[dict]:
    """The examples confident learning flags, least likely label first.

    Returns:
        One dict per flagged example: `index`, `given`, `suggested` (class indices),
        `label_quality` (cleanlab's self-confidence score: the out-of-fold probability of the
        given label) and `suggested_probability`.
    """
    import cleanlab.filter
    import cleanlab.rank

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    # n_jobs=1: cleanlab's default forks a process pool, and a fork of a process running
    # TensorFlow or JAX threads can hang (it did, in a two-process data-parallel run).
    flagged = cleanlab.filter.find_label_issues(
        labels=y, pred_probs=p, return_indices_ranked_by="self_confidence", n_jobs=1,
    )
    quality = cleanlab.rank.get_label_quality_scores(y, p, method="self_confidence")
    suggested = p.argmax(axis=1)
    return [
        {"index": int(i), "given": int(y[i]), "suggested": int(suggested[i]),
         "label_quality": round(float(quality[i]), 4),
         "suggested_probability": round(float(p[i, suggested[i]]), 4)}
        for i in flagged
    ]


def multilabel_label_issues(features, labels, *, folds: int = FOLDS,
                            seed: int = SEED) -> tuple[list[dict] | None, int, str]:
    """Likely wrong label sets: cleanlab's multi-label confident learning
    (`cleanlab.multilabel_classification`) on out-of-fold probabilities of one-vs-rest
    standardised logistic regressions (C from `_regularization` on the most frequent label).

    Args:
        labels: `(n, k)` 0/1, one column per label.

    Returns:
        `(issues or None, folds used, why not)`; each issue: `index`, `given` and `suggested`
        (label indices: the set as written, and the out-of-fold scores >= 0.5) and
        `label_quality` (cleanlab's score of the set as written), least likely first.
    """
    import cleanlab.multilabel_classification.filter as multilabel_filter
    import cleanlab.multilabel_classification.rank as multilabel_rank
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = (np.asarray(labels) > 0.5).astype(np.int64)
    x = np.asarray(features, dtype=np.float32).reshape(len(y), -1)
    counts = y.sum(axis=0)
    if (counts < 2).any():
        rare = int(np.flatnonzero(counts < 2)[0])
        return None, 0, (f"label #{rare} is on fewer than two training examples: out-of-fold "
                         "predictions need two of each label")
    k = int(min(folds, len(y) // 2))
    strength = _regularization(x, y[:, int(counts.argmax())], min(k, 3), seed)
    probabilities = np.zeros(y.shape)
    for train, held_out in KFold(n_splits=k, shuffle=True, random_state=seed).split(x):
        head = make_pipeline(StandardScaler(), OneVsRestClassifier(
            LogisticRegression(C=strength, max_iter=2000)))
        head.fit(x[train], y[train])  # a label absent from a fold's training part: constant
        probabilities[held_out] = head.predict_proba(x[held_out])
    given = [list(np.flatnonzero(row)) for row in y]
    flagged = multilabel_filter.find_label_issues(
        labels=given, pred_probs=probabilities, return_indices_ranked_by="self_confidence",
        n_jobs=1)
    quality = multilabel_rank.get_label_quality_scores(given, probabilities)
    return [{"index": int(i), "given": [int(j) for j in given[i]],
             "suggested": [int(j) for j in np.flatnonzero(probabilities[i] >= 0.5)],
             "label_quality": round(float(quality[i]), 4)} for i in flagged], k, ""


#: A regression target is flagged when its out-of-fold residual is this many robust standard
#: deviations (1.4826 x the median absolute deviation) from the median residual: about 6 in
#: 100,000 clean examples with normal errors.
ROBUST_Z = 4.0


def regression_label_issues(features, values, *, folds: int = FOLDS,
                            seed: int = SEED) -> tuple[list[dict] | None, int, str]:
    """Likely wrong targets: out-of-fold predictions of a standardised ridge regression
    (`RidgeCV`: its strength by leave-one-out) on the features, ranked by cleanlab's regression
    label quality (`cleanlab.regression.rank`, "outre"), flagged when the residual is beyond
    `ROBUST_Z` robust standard deviations. cleanlab's own `CleanLearning` flags a fraction
    chosen by refitting without it, which on clean linear data always takes its largest
    candidate (20%): a rule on the residuals says what it means.

    Returns:
        `(issues or None, folds used, why not)`; each issue: `index`, `given` (the target as
        written), `suggested` (the out-of-fold prediction) and `label_quality`, worst first.
    """
    import cleanlab.regression.rank as regression_rank
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(values, dtype=np.float64)
    x = np.asarray(features, dtype=np.float32).reshape(len(y), -1)
    k = int(min(folds, len(y) // 2))
    if k < 2:
        return None, 0, "fewer than four training examples"
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    predicted = cross_val_predict(model, x, y, cv=KFold(k, shuffle=True, random_state=seed))
    residuals = y - predicted
    spread = 1.4826 * np.median(np.abs(residuals - np.median(residuals)))
    if spread <= 0:
        return [], k, ""
    far = np.abs(residuals - np.median(residuals)) > ROBUST_Z * spread
    quality = regression_rank.get_label_quality_scores(y, predicted)
    flagged = np.flatnonzero(far)
    order = flagged[np.argsort(quality[flagged], kind="stable")]
    return [{"index": int(i), "given": float(y[i]), "suggested": float(predicted[i]),
             "label_quality": round(float(quality[i]), 4)} for i in order], k, ""


def _shown(value, class_names) -> str:
    """A label as the CSV shows it: a class, a `;`-joined label set, or a number."""
    if isinstance(value, list):
        return ";".join(str(class_names[i]) for i in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(class_names[value])


def write_label_issues(report_dir: str | os.PathLike, issues: list[dict], items: list,
                       class_names, *, images: bool, limit: int = 16) -> dict:
    """Writes `label_issues.csv` (and for images `label_issues.png`, the top `limit` suspects
    with both labels). Returns `{name: path}` of the files written."""
    import pandas as pd

    from transferkit.files import atomic_path

    report_dir = Path(report_dir)
    column = "path" if images else "text"
    table = pd.DataFrame(
        [{column: str(items[issue["index"]]),
          "given_label": _shown(issue["given"], class_names),
          "suggested_label": _shown(issue["suggested"], class_names),
          "label_quality": issue["label_quality"],
          "suggested_probability": issue.get("suggested_probability")} for issue in issues],
        columns=[column, "given_label", "suggested_label", "label_quality",
                 "suggested_probability"],
    )
    files = {"label_issues": report_dir / "label_issues.csv"}
    with atomic_path(files["label_issues"]) as path:
        table.to_csv(path, index=False)
    if images and issues:
        from transferkit.data.image_inputs import ImageInputs
        from transferkit.reports.plots import plot_image_grid

        top = issues[:limit]
        pictures = ImageInputs([items[issue["index"]] for issue in top]).displayable()
        titles = [f"given {_shown(i['given'], class_names)}, looks like "
                  f"{_shown(i['suggested'], class_names)}"
                  + (f" ({i['suggested_probability']:.0%})" if "suggested_probability" in i
                     else "") for i in top]
        files["label_issues_grid"] = plot_image_grid(
            report_dir / "label_issues.png", pictures, titles,
            title=f"Likely label errors: {len(top)} of {len(issues)}",
        )
    return {name: str(path) for name, path in files.items()}
