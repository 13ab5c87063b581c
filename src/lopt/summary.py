"""Summary statistics of final returns over seeds: mean, IQM (rliable), spread.

Training, tuning and meta-training summarise their runs with these; the
comparisons with intervals and normalised scores are :mod:`lopt.analysis.stats`'.
"""

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
