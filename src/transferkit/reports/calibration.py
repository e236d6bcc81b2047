"""Calibrated probabilities: temperature scaling, expected calibration error, reliability diagram.

Does a score of 0.9 mean right nine times in ten? A network trained with cross-entropy is often
over-confident. Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017) divides the logits by one scalar T, fitted on the validation split by minimising the
negative log-likelihood; the predicted class never changes, only how sure the scores are.
transferkit stores T in the model's `ClassLabels` layer (`transferkit.tasks.evaluation`), so
`predict_proba`, the saved `.keras` file and every export give calibrated scores.

Written here rather than taken from a library: it is one scalar fitted with SciPy's bounded
scalar minimiser, and the ECE is a dozen lines; netcal or torchcal would bring a framework for
that (and sklearn's `CalibratedClassifierCV` calibrates an estimator, not a Keras model's logits).

* `expected_calibration_error`: top-label ECE over 15 equal-width confidence bins;
* `negative_log_likelihood`: the mean of -log p(true class);
* `fit_temperature`, `with_temperature`: T, and probabilities at a temperature;
* `calibration_summary`: before/after numbers for a split; `plot_reliability` draws them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "BINS",
    "MIN_ERRORS",
    "MIN_EXAMPLES",
    "calibration_summary",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "plot_reliability",
    "why_not_fitted",
    "with_temperature",
]

BINS = 15  # the usual number of equal-width bins for ECE (Guo et al. 2017)
_EPS = 1e-7  # probabilities are float32: clip before taking logs
_BOUNDS = (0.05, 20.0)  # the temperatures searched
# When a temperature is fitted at all (`why_not_fitted`), from benchmarks/calibration_rule.py:
# T fitted on random validation subsets of five real pools (cats_and_dogs at 224 and 96 px,
# rt_polarity with MiniLM, the demo's faces with and without fine-tuning), judged by the NLL of
# the rest of each pool. On a subset without errors the fit drives T to its floor every time
# and held-out NLL rose in 100% of draws (+0.08 to +0.81 nats); with 1 error T still fell to
# 0.08; from 5 errors the mean change was never above +0.005. Fits on 40-60 examples hurt on
# average even with enough errors, broke even near 100 and helped from about 150.
#: The fewest validation examples a temperature is fitted on.
MIN_EXAMPLES = 100
#: The fewest mistakes, and right answers, among them: confidence is learnt from both.
MIN_ERRORS = 5


def _as_arrays(y_true, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y_true, dtype=np.int64).reshape(-1)
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(
            f"probabilities must be (n, classes) with n = {len(labels)} labels; got "
            f"{scores.shape}."
        )
    return labels, scores


def expected_calibration_error(y_true, probabilities, bins: int = BINS) -> float:
    """Top-label ECE: the mean over `bins` equal-width confidence bins of |accuracy - confidence|,
    weighted by the share of examples in each bin. 0 for no examples."""
    labels, scores = _as_arrays(y_true, probabilities)
    if not len(labels):
        return 0.0
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def negative_log_likelihood(y_true, probabilities) -> float:
    """The mean of -log p(true class), probabilities clipped at 1e-7."""
    labels, scores = _as_arrays(y_true, probabilities)
    if not len(labels):
        return 0.0
    picked = np.clip(scores[np.arange(len(labels)), labels], _EPS, 1.0)
    return float(-np.log(picked).mean()) + 0.0  # not -0.0 when every p is 1


def with_temperature(probabilities, temperature: float) -> np.ndarray:
    """`softmax(log p / T)`: the probabilities the same logits give at temperature T (for two
    classes this is `sigmoid(z / T)` of the one logit)."""
    scores = np.asarray(probabilities, dtype=np.float64)
    logits = np.log(np.clip(scores, _EPS, 1.0)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(y_true, probabilities) -> float:
    """The temperature T in [0.05, 20] that minimises the negative log-likelihood of `y_true`
    under `with_temperature(probabilities, T)` (searched on log T). 1.0 without examples."""
    from scipy.optimize import minimize_scalar

    labels, scores = _as_arrays(y_true, probabilities)
    if not len(labels):
        return 1.0
    log_p = np.log(np.clip(scores, _EPS, 1.0))
    rows = np.arange(len(labels))

    def loss(log_t: float) -> float:
        z = log_p / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(-(z[rows, labels] - np.log(np.exp(z).sum(axis=1))).mean())

    found = minimize_scalar(loss, bounds=tuple(np.log(_BOUNDS)), method="bounded",
                            options={"xatol": 1e-4})
    return float(np.exp(found.x))


def calibration_summary(y_true, calibrated, temperature: float) -> dict:
    """ECE and NLL of one split before (temperature 1) and after calibration.

    Args:
        y_true: int labels.
        calibrated: the model's probabilities at `temperature` (what `predict_proba` gives).
        temperature: the model's temperature.

    Returns:
        `{"examples", "ece_before", "ece_after", "nll_before", "nll_after"}`.
    """
    before = with_temperature(calibrated, 1.0 / float(temperature))
    return {
        "examples": int(len(np.asarray(y_true))),
        "ece_before": _rounded(expected_calibration_error(y_true, before)),
        "ece_after": _rounded(expected_calibration_error(y_true, calibrated)),
        "nll_before": _rounded(negative_log_likelihood(y_true, before)),
        "nll_after": _rounded(negative_log_likelihood(y_true, calibrated)),
    }


def _rounded(value: float) -> float:
    """`value` to 4 decimals, never a negative zero (-log 1.0 is -0.0; "-0.0000" is no number
    to print)."""
    return round(float(value), 4) + 0.0


def why_not_fitted(y_true, probabilities=None) -> str | None:
    """Why no temperature should be fitted on these examples (`None`: fit one): fewer than
    `MIN_EXAMPLES`, one class, or fewer than `MIN_ERRORS` mistakes or right answers among them
    (a split without errors drives T to its floor and the scores to 100%; see `MIN_EXAMPLES`).
    Without `probabilities`, only what the labels tell."""
    labels = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if len(labels) < MIN_EXAMPLES:
        return (f"{len(labels)} validation examples (fewer than {MIN_EXAMPLES}): too few to "
                "fit a temperature")
    if len(set(labels.tolist())) < 2:
        return "one class in the validation split: no temperature can be fitted"
    if probabilities is None:
        return None
    labels, scores = _as_arrays(labels, probabilities)
    errors = int((scores.argmax(axis=1) != labels).sum())
    for count, what in ((errors, "mistakes"), (len(labels) - errors, "right answers")):
        if count < MIN_ERRORS:
            return (f"{count} {what} among the {len(labels)} validation examples (fewer than "
                    f"{MIN_ERRORS}): too few to tell how confident to be, so the scores are "
                    "the model's own")
    return None


def _bin_stats(y_true, probabilities, bins: int):
    labels, scores = _as_arrays(y_true, probabilities)
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    centres, accuracy, counts = [], [], []
    for b in range(bins):
        members = which == b
        if members.any():
            centres.append(confidence[members].mean())
            accuracy.append(correct[members].mean())
            counts.append(int(members.sum()))
    return np.array(centres), np.array(accuracy), np.array(counts)


def plot_reliability(path: str | os.PathLike, y_true, calibrated, temperature: float, *,
                     split: str = "validation", title: str = "", bins: int = BINS) -> Path:
    """Writes the reliability diagram: mean confidence vs accuracy per bin, before and after
    temperature scaling, with the diagonal of perfect calibration and each curve's ECE."""
    from transferkit.reports.plots import _figure, _save

    before = with_temperature(calibrated, 1.0 / float(temperature))
    figure = _figure(5.5, 5.0)
    axis = figure.add_subplot()
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect")
    for scores, name, colour in ((before, "before", "tab:red"), (calibrated, "after", "tab:blue")):
        centres, accuracy, counts = _bin_stats(y_true, scores, bins)
        ece = expected_calibration_error(y_true, scores, bins)
        axis.plot(centres, accuracy, marker="o", color=colour,
                  label=f"{name} (ECE {ece:.3f})")
        for x, y, n in zip(centres, accuracy, counts):
            axis.annotate(str(n), (x, y), textcoords="offset points", xytext=(0, 5),
                          ha="center", fontsize=6, color=colour)
    axis.set_xlim(0, 1.0)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("confidence (top class score)")
    axis.set_ylabel("accuracy")
    heading = f"Reliability on {split}: temperature {float(temperature):.2f}"
    axis.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
    axis.legend(loc="upper left", fontsize=8)
    return _save(figure, path)
