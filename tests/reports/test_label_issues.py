"""Likely label errors: out-of-fold heads on features, cleanlab's confident learning, the files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from transferkit.reports.label_issues import (
    find_label_issues,
    out_of_fold_probabilities,
    write_label_issues,
)


def _clusters(n_per_class=150, classes=3, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    features = centres[labels] + rng.normal(0, 1, (len(labels), dim))
    return features, labels


def test_flipped_labels_are_found():
    features, truth = _clusters()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(truth), size=len(truth) // 20, replace=False)  # 5%
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, 3, len(flipped))) % 3
    probabilities, folds, why = out_of_fold_probabilities(features, given, 3)
    assert (folds, why) == (5, "")
    issues = find_label_issues(given, probabilities)
    found = {issue["index"] for issue in issues}
    precision = len(found & set(flipped)) / len(found)
    recall = len(found & set(flipped)) / len(flipped)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)
    first = issues[0]
    assert first["suggested"] == truth[first["index"]] != first["given"]
    qualities = [issue["label_quality"] for issue in issues]
    assert qualities == sorted(qualities)  # least likely label first


def test_folds_adapt_to_small_classes_and_one_example_is_refused():
    features, labels = _clusters(n_per_class=3, classes=2)
    probabilities, folds, _ = out_of_fold_probabilities(features, labels, 2)
    assert folds == 3 and probabilities.shape == (6, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    probabilities, folds, why = out_of_fold_probabilities(features[:4], np.array([0, 0, 0, 1]), 2)
    assert probabilities is None and "class 1 has one example: out-of-fold predictions need two" in why


def test_the_csv_lists_path_labels_and_scores(tmp_path):
    issues = [{"index": 1, "given": 0, "suggested": 1, "label_quality": 0.05,
               "suggested_probability": 0.95}]
    files = write_label_issues(tmp_path, issues, ["a.txt", "b text"], ["neg", "pos"],
                               images=False)
    table = pd.read_csv(files["label_issues"])
    assert table.to_dict("records") == [{"text": "b text", "given_label": "neg",
                                         "suggested_label": "pos", "label_quality": 0.05,
                                         "suggested_probability": 0.95}]


def test_a_training_run_reports_label_issues(calibrated_run):
    result, run = calibrated_run
    table = pd.read_csv(run / "report" / "label_issues.csv")
    assert list(table.columns) == ["path", "given_label", "suggested_label", "label_quality",
                                   "suggested_probability"]
    assert result["label_issues"] == len(table)
    assert result["label_issues_csv"] == str(run / "report" / "label_issues.csv")
    assert (table["given_label"] != table["suggested_label"]).all()
    if len(table):
        assert (run / "report" / "label_issues.png").stat().st_size > 10_000
    summary = (run / "report" / "summary.txt").read_text()
    assert "likely mislabelled of 100 training examples" in summary
    assert json.loads((run / "report" / "metrics.json").read_text())


@pytest.mark.parametrize("fixture", ["text_run"])
def test_glove_runs_say_why_labels_are_not_checked(fixture, request):
    code, out, err, run, table = request.getfixturevalue(fixture)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["label_issues"] is None
    assert "not checked: this kind of model has no cached frozen features" in (
        run / "report" / "summary.txt").read_text()
