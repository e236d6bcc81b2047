"""Temperature scaling and calibration error: the formulas on cases worked by hand, the fitted
temperature against a known one, and a trained classifier whose saved file keeps it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from transferkit.reports.calibration import (
    MIN_ERRORS,
    MIN_EXAMPLES,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    why_not_fitted,
    with_temperature,
)


def test_ece_by_hand():
    # Four examples: two at confidence 0.9 (one right), two at 0.6 (both right).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    # bin of 0.9: accuracy 0.5, gap 0.4; bin of 0.6: accuracy 1.0, gap 0.4; each half the data.
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.4)
    assert expected_calibration_error(labels[2:], probabilities[2:]) == pytest.approx(0.4)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error([0, 1], perfect) == 0.0


def test_nll_by_hand():
    probabilities = np.array([[0.8, 0.2], [0.25, 0.75]])
    expected = -(np.log(0.8) + np.log(0.75)) / 2
    assert negative_log_likelihood([0, 1], probabilities) == pytest.approx(expected)


def test_temperature_of_two_classes_is_sigmoid_of_the_scaled_logit():
    z = np.array([-3.0, -0.5, 0.0, 2.0, 6.0])
    p = 1 / (1 + np.exp(-z))
    scaled = with_temperature(np.stack([1 - p, p], axis=1), 2.5)
    np.testing.assert_allclose(scaled[:, 1], 1 / (1 + np.exp(-z / 2.5)), atol=1e-9)
    np.testing.assert_allclose(with_temperature(np.stack([1 - p, p], axis=1), 1.0)[:, 1], p,
                               atol=1e-9)


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_fit_temperature_recovers_the_temperature_of_the_data(true_temperature):
    """Labels drawn from softmax(z / T0), scores given as softmax(z): the fit finds T0, and
    calibration lowers ECE and NLL."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 4))
    truth = np.exp(logits / true_temperature)
    truth /= truth.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in truth])
    scores = np.exp(logits)
    scores /= scores.sum(axis=1, keepdims=True)
    fitted = fit_temperature(labels, scores)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    summary = calibration_summary(labels, with_temperature(scores, fitted), fitted)
    assert summary["ece_after"] < 0.02 < summary["ece_before"]
    assert summary["nll_after"] < summary["nll_before"]


def _scores(labels, wrong, confidence=0.9):
    """Two-class scores that put `confidence` on the true class, except at `wrong` indices."""
    labels = np.asarray(labels)
    top = labels.copy()
    top[wrong] = 1 - top[wrong]
    scores = np.full((len(labels), 2), 1 - confidence)
    scores[np.arange(len(labels)), top] = confidence
    return scores


@pytest.mark.parametrize("mistakes, reason", [
    (0, "0 mistakes among the 120 validation examples"),
    (MIN_ERRORS - 1, f"{MIN_ERRORS - 1} mistakes among the 120"),
    (MIN_ERRORS, None),
    (120 - MIN_ERRORS + 1, f"{MIN_ERRORS - 1} right answers among the 120"),
])
def test_a_temperature_needs_mistakes_and_right_answers(mistakes, reason):
    labels = np.arange(120) % 2
    found = why_not_fitted(labels, _scores(labels, np.arange(mistakes)))
    assert found == reason if reason is None else reason in found


def test_too_few_examples_or_one_class_need_no_predictions():
    assert f"fewer than {MIN_EXAMPLES}" in why_not_fitted(np.arange(MIN_EXAMPLES - 1) % 2)
    assert "one class" in why_not_fitted(np.zeros(MIN_EXAMPLES, int))
    assert why_not_fitted(np.arange(MIN_EXAMPLES) % 2) is None  # the predictions decide


def test_an_errorless_split_fitted_anyway_would_claim_certainty():
    """What the rule prevents: on a split without mistakes the fit sharpens without limit."""
    labels = np.arange(120) % 2
    scores = _scores(labels, [])
    assert fit_temperature(labels, scores) < 0.2
    assert with_temperature(scores, fit_temperature(labels, scores)).max() > 0.9999


def test_no_negative_zero():
    """-log(1.0) is -0.0; the summary printed "-0.0000"."""
    certain = np.array([[1.0, 0.0], [0.0, 1.0]])
    summary = calibration_summary([0, 1], certain, 0.5)
    for key in ("ece_after", "nll_before", "nll_after"):
        assert np.copysign(1.0, summary[key]) == 1.0, key
    assert f"{negative_log_likelihood([0, 1], certain):.4f}" == "0.0000"


def test_trained_run_is_calibrated_and_reports_it(calibrated_run, hundred_faces):
    """The temperature is in the saved model, predict_proba applies it, and the report has the
    numbers and the reliability diagram."""
    import transferkit

    result, run = calibrated_run
    temperature = result["calibration"]["temperature"]
    classifier = transferkit.load(run)
    assert classifier.temperature == pytest.approx(temperature, rel=1e-3)
    assert temperature != 1.0
    validation = result["calibration"]["validation"]
    assert validation["examples"] == 100
    assert validation["nll_after"] <= validation["nll_before"]  # what the fit minimises
    photos = sorted((hundred_faces / "face").glob("*.png"))[:4]
    calibrated = classifier.predict_proba(photos)
    classifier._labels_layer().temperature = 1.0
    raw = classifier.predict_proba(photos)
    np.testing.assert_allclose(calibrated, with_temperature(raw, temperature), atol=1e-5)
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["calibration"] == result["calibration"]
    assert (run / "report" / "reliability.png").stat().st_size > 10_000
    summary = (run / "report" / "summary.txt").read_text()
    assert "temperature" in summary and "validation ECE / NLL" in summary


@pytest.mark.slow  # ~6 s: a second training run
def test_no_calibrate_keeps_raw_scores(hundred_faces, tmp_path):
    import transferkit

    result = transferkit.train_images(
        hundred_faces, image_size=32, epochs=5, fine_tune_epochs=0, augment="none",
        validation_size=0.3, calibrate=False, output=tmp_path / "run", verbose=0,
        log=lambda line: None,
    )
    assert result["calibration"] is None
    assert transferkit.load(tmp_path / "run").temperature == 1.0
    assert "calibration" in (tmp_path / "run" / "report" / "summary.txt").read_text()


def test_too_small_a_validation_split_is_not_calibrated(image_run):
    """The shared CLI run has 4 validation images: a temperature fitted on them would only
    sharpen the scores, so none is fitted, and the summary says why."""
    code, out, err, run, data = image_run
    result = json.loads(out.strip().splitlines()[-1])
    assert result["calibration"] is None
    summary = (run / "report" / "summary.txt").read_text()
    assert re.search(rf"calibration +none: 4 validation examples \(fewer than {MIN_EXAMPLES}\): "
                     "too few to fit a temperature", summary), summary
