"""Multi-label and regression heads on the shared real data (slow; CI runs them): the head must
be no worse than a plain baseline on the same frozen features. The full table, with text, is
`benchmarks/targets.py`."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers import shared_data
from transferkit.reports.targets import multilabel_metrics, regression_metrics
from transferkit.tasks.image_classifier import ImageClassifier

pytestmark = pytest.mark.slow


def _trained(table: tuple[str, str], column: str, target: str, rows=slice(None)):
    """A head (100 epochs on Lite0's cached features) trained on a seeded 80% of a shared
    table's rows, measured on the other 20%; with what a baseline needs: the head's own
    training features and targets, and the test features and targets."""
    path = shared_data(*table)
    frame = pd.read_csv(path).iloc[rows]
    order = np.random.default_rng(0).permutation(len(frame))
    cut = int(0.8 * len(frame))
    train, test = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
    model = ImageClassifier("efficientnet_lite0", target=target, augment="none")
    model.fit([str(path.parent / p) for p in train["path"]], train[column].tolist(), epochs=100,
              verbose=0)
    test_paths = [str(path.parent / p) for p in test["path"]]
    items, y = model.split_data("train")
    _, truth, _ = model._evaluation_data(test_paths, test[column].tolist())
    return SimpleNamespace(
        model=model, head=model.evaluate(test_paths, test[column].tolist()),
        train_x=model._training_features(items), train_y=y,
        test_x=model._training_features(test_paths), test_y=truth)


def test_multi_label_photos_match_one_vs_rest_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    run = _trained(("clothing_multilabel", "labels.csv"), "labels", "multi-label")
    # The baseline: one-vs-rest logistic regression on the head's own training features.
    baseline = OneVsRestClassifier(LogisticRegression(max_iter=2000)).fit(run.train_x, run.train_y)
    names = run.model.class_names
    plain = multilabel_metrics(run.test_y, baseline.predict_proba(run.test_x), names,
                               [0.5] * len(names))
    assert run.head["micro_f1"] >= plain["micro_f1"] - 0.005, (run.head["micro_f1"],
                                                              plain["micro_f1"])
    assert run.head["mean_average_precision"] >= 0.99


def test_age_regression_beats_the_mean_and_is_near_ridge():
    from sklearn.linear_model import RidgeCV

    # 1,250 faces: half the set, for time.
    run = _trained(("utkface_age", "targets.csv"), "target", "regression", slice(None, None, 2))
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(run.train_x, run.train_y)
    plain = regression_metrics(run.test_y, ridge.predict(run.test_x))
    assert run.head["mae"] < 0.7 * run.head["mean_predictor_mae"]
    assert run.head["mae"] <= 1.05 * plain["mae"], (run.head["mae"], plain["mae"])
