"""LogME against the closed forms of the paper, on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.reports.logme import evidence, logme


def _data(n=120, dim=6, classes=3, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(0, 2, (classes, dim))
    return centres[labels] + rng.normal(0, noise, (n, dim)), labels


def _gaussian_log_likelihood(features, target, alpha, beta):
    """log N(target; 0, F F^T / alpha + I / beta): the evidence straight from its definition."""
    from scipy.stats import multivariate_normal

    covariance = features @ features.T / alpha + np.eye(len(target)) / beta
    return multivariate_normal(mean=np.zeros(len(target)), cov=covariance).logpdf(target)


def test_evidence_is_the_gaussian_marginal_likelihood():
    features, labels = _data()
    target = (labels == 1).astype(float)
    for alpha, beta in ((0.5, 2.0), (3.0, 0.7)):
        direct = _gaussian_log_likelihood(features, target, alpha, beta) / len(target)
        assert evidence(features, target, alpha, beta) == pytest.approx(direct, rel=1e-9)


def test_logme_maximises_the_evidence_per_class():
    features, labels = _data()
    score, per_class = logme(features, labels, details=True)
    assert len(per_class) == 3
    for c, (alpha, beta, value) in enumerate(per_class):
        target = (labels == c).astype(float)
        assert value == pytest.approx(evidence(features, target, alpha, beta), rel=1e-6)
        for a, b in ((alpha * 1.5, beta), (alpha / 1.5, beta), (alpha, beta * 1.5),
                     (alpha, beta / 1.5)):
            assert evidence(features, target, a, b) < value + 1e-9  # a maximum
    assert score == pytest.approx(np.mean([v for _, _, v in per_class]))


def test_better_features_score_higher():
    clean, labels = _data(noise=0.5)
    noisy, _ = _data(noise=3.0)
    random = np.random.default_rng(5).normal(size=clean.shape)
    assert logme(clean, labels) > logme(noisy, labels) > logme(random, labels)


def test_two_classes_use_one_target():
    features, labels = _data(classes=2)
    score, per_class = logme(features, labels, details=True)
    assert len(per_class) == 1
