"""Statistics for comparing optimizers: curves with bands, aggregates over runs and
tasks with stratified bootstrap intervals, scores normalised by a reference
(rliable). Per-run summaries (IQM, mean, ...) are :mod:`lopt.summary`'s."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from lopt.summary import iqm


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed``, restored afterwards.

    rliable 1.2's bootstraps draw from the global generator and ignore their
    ``random_state``, so this is how the same scores give the same intervals.
    """
    global_state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(global_state)  # noqa: NPY002


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


AGGREGATES = ("mean", "median", "iqm", "optimality_gap")


def aggregate(scores: np.ndarray) -> np.ndarray:
    """Mean, median, IQM and optimality gap (threshold 1) of ``(runs, tasks)`` scores.

    The optimality gap is the mean shortfall below 1 (rliable): with scores
    normalised by a reference optimizer, how far runs fall short of it.
    """
    from rliable import metrics

    return np.array(
        [
            metrics.aggregate_mean(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_iqm(scores),
            metrics.aggregate_optimality_gap(scores, 1.0),
        ]
    )


RUN_AGGREGATES = ("mean", "median", "iqm")


def run_aggregate(scores: np.ndarray) -> np.ndarray:
    """Mean, median and IQM over all runs of ``(runs, tasks)`` scores (for one
    task, where rliable's median over tasks would be the mean)."""
    x = np.asarray(scores).ravel()
    return np.array([x.mean(), np.median(x), iqm(x)])


def interval_estimates(
    scores: dict[str, np.ndarray],
    reps: int = 2000,
    seed: int = 0,
    func: Any = aggregate,
    names: tuple[str, ...] = AGGREGATES,
) -> dict[str, dict[str, dict[str, float]]]:
    """Point estimates and 95% stratified bootstrap intervals (rliable).

    Args:
      scores: optimizer -> shape ``(num_seeds, num_tasks)``; runs are resampled
        within each task.
      reps: bootstrap resamples.
      seed: of the resampling, so the same scores give the same intervals.
      func, names: the aggregates (:func:`aggregate` or :func:`run_aggregate`)
        and their names.

    Returns:
      optimizer -> aggregate name -> ``{"point", "low", "high"}``.
    """
    from rliable import library

    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            {k: np.asarray(v, np.float64) for k, v in scores.items()}, func, reps=reps
        )
    return {
        name: {
            agg: {
                "point": float(points[name][i]),
                "low": float(intervals[name][0, i]),
                "high": float(intervals[name][1, i]),
            }
            for i, agg in enumerate(names)
        }
        for name in scores
    }


def normalise(
    final: dict[str, dict[str, np.ndarray]], reference: str
) -> dict[str, np.ndarray]:
    """Scores divided, per task, by the reference optimizer's mean final return.

    Args:
      final: task -> optimizer -> final returns, shape ``(num_seeds,)``.
      reference: the optimizer whose mean return is 1 on every task.

    Returns:
      optimizer -> shape ``(num_seeds, num_tasks)``, tasks in ``final``'s order.
    """
    tasks = list(final)
    names = set(final[tasks[0]])
    for task in tasks:
        if set(final[task]) != names:
            raise ValueError(
                f"{task} has optimizers {sorted(final[task])}, but {tasks[0]} has "
                f"{sorted(names)}: every task needs the same ones"
            )
    columns = {}
    for task in tasks:
        scale = float(np.mean(final[task][reference]))
        if not np.isfinite(scale) or scale <= 0.0:
            raise ValueError(
                f"{reference}'s mean return on {task} is {scale:.4g}: only a "
                "positive return can normalise the scores"
            )
        for name, returns in final[task].items():
            columns.setdefault(name, []).append(np.asarray(returns) / scale)
    return {name: np.stack(cols, axis=1) for name, cols in columns.items()}


def _estimate(point: Any, interval: Any) -> dict[str, float]:
    interval = np.asarray(interval, np.float64).reshape(2, -1)
    return {
        "point": float(np.ravel(point)[0]),
        "low": float(interval[0, 0]),
        "high": float(interval[1, 0]),
    }


def probability_of_improvement(
    scores: dict[str, np.ndarray],
    reference: str,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """P(X > reference) for every other optimizer X, with 95% intervals (rliable).

    The probability that a run of X on a task scores higher than a run of the
    reference (ties count half: the Mann-Whitney U statistic over all pairs of
    runs), averaged over tasks; the interval is rliable's stratified bootstrap,
    runs of each optimizer resampled independently within each task.

    Args:
      scores: optimizer -> shape ``(num_runs, num_tasks)``; task columns in the
        same order for every optimizer (the scores need not be normalised).
      reference: the optimizer compared against.
      reps, seed: of the bootstrap.

    Returns:
      optimizer (all but ``reference``) -> ``{"point", "low", "high"}``.
    """
    from rliable import library, metrics

    ref = np.asarray(scores[reference], np.float64)
    pairs = {
        name: (np.asarray(x, np.float64), ref)
        for name, x in scores.items()
        if name != reference
    }
    if not pairs:
        return {}
    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            pairs, metrics.probability_of_improvement, reps=reps
        )
    return {name: _estimate(points[name], intervals[name]) for name in pairs}


def bootstrap_interval(
    func: Callable[..., float],
    *scores: np.ndarray,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """A statistic of one or more score matrices and its 95% stratified bootstrap
    interval (rliable): the runs of each matrix resampled independently within
    each task column.

    Args:
      func: ``func(*scores) -> float``, e.g. the slope of a gain against task size.
      scores: each of shape ``(num_runs, num_tasks)`` (the run counts may differ).

    Returns:
      ``{"point", "low", "high"}``.
    """
    from rliable import library

    arrays = tuple(np.asarray(s, np.float64) for s in scores)

    def statistic(*resampled: np.ndarray) -> np.ndarray:
        return np.atleast_1d(np.asarray(func(*resampled), np.float64))

    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            {"x": arrays[0] if len(arrays) == 1 else arrays}, statistic, reps=reps
        )
    return _estimate(points["x"], intervals["x"])
