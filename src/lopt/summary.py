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


def diverged_at(finite: np.ndarray) -> list[int | None]:
    """Per run, the update (counted from 1) after which it first was not finite
    (parameters, losses or updates: the ``finite`` metric of
    :func:`lopt.rl.algorithm.finite_update`), or None for a run that stayed finite.

    Args:
      finite: bool, shape ``(..., num_updates)``; runs along the leading axes,
        flattened in C order.
    """
    flags = np.asarray(finite, bool)
    flags = flags.reshape(-1, flags.shape[-1])
    return [int(np.argmin(row)) + 1 if not row.all() else None for row in flags]
