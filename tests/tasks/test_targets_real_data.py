"""Multi-label and regression heads on the shared real data (slow; CI runs them): the head must
be no worse than a plain baseline on the same frozen features. The full table, with text, is
`benchmarks/targets.py`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import shared_data
from transferkit.reports.targets import multilabel_metrics, regression_metrics
from transferkit.tasks.image_classifier import ImageClassifier

pytestmark = pytest.mark.slow


def _split(table: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(table))
    cut = int(0.8 * len(table))
    return table.iloc[order[:cut]], table.iloc[order[cut:]]


def test_multi_label_photos_match_one_vs_rest_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    path = shared_data("clothing_multilabel", "labels.csv")
    train, test = _split(pd.read_csv(path))
    folder = path.parent
    model = ImageClassifier("efficientnet_lite0", target="multi-label", augment="none")
    model.fit([str(folder / p) for p in train["path"]], train["labels"].tolist(), epochs=100,
              verbose=0)
    test_paths = [str(folder / p) for p in test["path"]]
    head = model.evaluate(test_paths, test["labels"].tolist())
    # The baseline: one-vs-rest logistic regression on the head's own training features.
    items, y = model.split_data("train")
    baseline = OneVsRestClassifier(LogisticRegression(max_iter=2000)).fit(
        model._training_features(items), y)
    _, truth, _ = model._evaluation_data(test_paths, test["labels"].tolist())
    plain = multilabel_metrics(truth, baseline.predict_proba(model._training_features(test_paths)),
                               model.class_names, [0.5] * len(model.class_names))
    assert head["micro_f1"] >= plain["micro_f1"] - 0.005, (head["micro_f1"], plain["micro_f1"])
    assert head["mean_average_precision"] >= 0.99


def test_age_regression_beats_the_mean_and_is_near_ridge():
    from sklearn.linear_model import RidgeCV

    path = shared_data("utkface_age", "targets.csv")
    train, test = _split(pd.read_csv(path).iloc[::2])  # 1,250 faces: half the set, for time
    folder = path.parent
    model = ImageClassifier("efficientnet_lite0", target="regression", augment="none")
    model.fit([str(folder / p) for p in train["path"]], train["target"].tolist(), epochs=100,
              verbose=0)
    test_paths = [str(folder / p) for p in test["path"]]
    head = model.evaluate(test_paths, test["target"].tolist())
    items, y = model.split_data("train")
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(model._training_features(items), y)
    plain = regression_metrics(test["target"].to_numpy(),
                               ridge.predict(model._training_features(test_paths)))
    assert head["mae"] < 0.7 * head["mean_predictor_mae"]
    assert head["mae"] <= 1.05 * plain["mae"], (head["mae"], plain["mae"])
