"""Distribution statistics shared by the motion and visual metrics: Frechet distance, correlation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and covariance (D, D) of a feature set, and how many samples it came from."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> "GaussianStats":
        """Stats of (N, D) features (N >= 2; the covariance is the unbiased estimate)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need (N >= 2, D) features for Gaussian statistics, got {x.shape}")
        return cls(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)), len(x))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Frechet distance between two Gaussians: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2), >= 0.

    tr((S_a S_b)^1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    S_a^1/2 S_b S_a^1/2 (same spectrum), which stays exact for singular covariances (a frozen video
    has a zero covariance) where a general matrix square root is unstable.
    """
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape} vs {b.mean.shape}")
    diff = a.mean - b.mean
    root = _psd_sqrt(a.cov)
    inner = np.linalg.eigvalsh(root @ b.cov @ root)
    cross = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    value = float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * cross)
    return max(value, 0.0)


def frechet_of(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between two (N, D) feature sets."""
    return frechet_distance(GaussianStats.of(x), GaussianStats.of(y))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two (N,) series; 0 when either is constant (no linear relation to measure)."""
    x = np.asarray(a, dtype=np.float64) - np.mean(a)
    y = np.asarray(b, dtype=np.float64) - np.mean(b)
    norm = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return float(np.dot(x, y) / norm) if norm > 1e-12 else 0.0
