"""Summary statistics of final returns across seeds (rliable for the IQM)."""

from __future__ import annotations

import numpy as np


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores (rliable)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(np.asarray(scores, np.float64)))


def summarise(final_returns: np.ndarray) -> dict[str, float]:
    """Mean, IQM, median, standard deviation, min and max over seeds.

    Args:
      final_returns: shape ``(num_seeds,)``.
    """
    x = np.asarray(final_returns, np.float64)
    return {
        "mean": float(x.mean()),
        "iqm": iqm(x),
        "median": float(np.median(x)),
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": float(x.min()),
        "max": float(x.max()),
        "num_seeds": int(x.size),
    }


def mean_and_ci(curves: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds and the half-width of a normal-approximation 95% interval.

    Args:
      curves: shape ``(num_seeds, T)``.

    Returns:
      ``(mean, half_width)``, each of shape ``(T,)``; the half-width is
      ``z * std / sqrt(num_seeds)`` and 0 for a single seed.
    """
    curves = np.asarray(curves, np.float64)
    mean = curves.mean(axis=0)
    if curves.shape[0] < 2:
        return mean, np.zeros_like(mean)
    return mean, z * curves.std(axis=0, ddof=1) / np.sqrt(curves.shape[0])
