"""LogME: how well a frozen backbone's features suit a labelled dataset, without training.

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021. For each class c, the one-vs-rest target y_c is modelled as a Bayesian
linear regression on the features F (n x D): w ~ N(0, 1/alpha I), y_c | F, w ~ N(F w,
1/beta I). The evidence p(y_c | F) = N(y_c; 0, F F^T / alpha + I / beta) is maximised over
alpha and beta by MacKay's fixed-point updates (the paper's Algorithm 1), computed through one
eigendecomposition of F^T F shared by all classes; LogME is the mean over classes of the
maximised log evidence divided by n. Higher is better; values compare backbones on the same
data, not across datasets.

Written from the paper's equations (no kept library ships it; the authors' reference code is a
research script); the tests check it against the Gaussian marginal likelihood computed directly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["evidence", "logme"]

_EPS = 1e-5
_STEPS = 11  # the paper: converges in two or three steps, always within ten


def _fixed_point(projected, eigenvalues, target_norm2, n, dim):
    """MacKay's updates of alpha and beta for one target, in the eigenbasis of F^T F.

    `projected` is V^T F^T y (V: eigenvectors of F^T F, `eigenvalues` its eigenvalues), so the
    posterior mean m = beta (alpha I + beta F^T F)^-1 F^T y has coordinates
    beta * projected / (alpha + beta * eigenvalues) and |m|^2, |F m - y|^2 follow without any
    n x n or D x D matrix."""
    alpha, beta = 1.0, 1.0
    for _ in range(_STEPS):
        lam = alpha / beta
        gamma = float((eigenvalues / (eigenvalues + lam)).sum())
        m = beta * projected / (alpha + beta * eigenvalues)
        m2 = float((m * m).sum())
        # |F m - y|^2 = |y|^2 - 2 m.F^T y + m^T F^T F m, in the eigenbasis
        residual = float(target_norm2 - 2 * (m * projected).sum() + (eigenvalues * m * m).sum())
        residual = max(residual, 0.0)
        alpha = gamma / (m2 + _EPS)
        beta = (n - gamma) / (residual + _EPS)
        if abs(alpha / beta - lam) / lam < 0.01:
            break
    m = beta * projected / (alpha + beta * eigenvalues)
    m2 = float((m * m).sum())
    residual = max(float(target_norm2 - 2 * (m * projected).sum()
                         + (eigenvalues * m * m).sum()), 0.0)
    return alpha, beta, m2, residual


def evidence(features, target, alpha: float, beta: float) -> float:
    """log p(target | features, alpha, beta) / n, in the paper's closed form (eq. 2): n/2 log
    beta + D/2 log alpha - n/2 log 2 pi - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log |A|, with
    A = alpha I + beta F^T F and m = beta A^-1 F^T y. Dense: for tests and small problems."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    n, dim = f.shape
    a = alpha * np.eye(dim) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    value = (n / 2 * np.log(beta) + dim / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
             - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * np.sum(m * m)
             - 0.5 * np.linalg.slogdet(a)[1])
    return float(value / n)


def logme(features, labels, *, details: bool = False):
    """LogME of `features` (n x D) for int `labels` (n,): the mean over classes of the maximised
    log evidence per example. With `details`, also each class's `(alpha, beta, evidence)`.

    For two classes one target is enough (the other is its mirror image), as in the paper's
    code; otherwise one one-hot target per class.
    """
    f = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    y = np.asarray(labels, dtype=np.int64)
    n, dim = f.shape
    eigenvalues, vectors = np.linalg.eigh(f.T @ f)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    classes = np.unique(y)
    targets = classes[1:] if len(classes) == 2 else classes
    per_class = []
    for c in targets:
        target = (y == c).astype(np.float64)
        projected = vectors.T @ (f.T @ target)
        alpha, beta, m2, residual = _fixed_point(projected, eigenvalues, float(target @ target),
                                                 n, dim)
        value = (dim / 2 * np.log(alpha) + n / 2 * np.log(beta)
                 - 0.5 * np.sum(np.log(alpha + beta * eigenvalues))
                 - beta / 2 * residual - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n
        per_class.append((float(alpha), float(beta), float(value)))
    score = float(np.mean([value for _, _, value in per_class]))
    return (score, per_class) if details else score
