"""Fitness in lopt is "higher is better"; the one flip for evosax lives here.

The fitness of one inner run is its final return (OPEN §3.3): the mean over the
parallel environments of the last completed episode's return after the final
update. A member's raw fitness on a task is that, averaged over the generation's
rollouts; on several tasks, each raw fitness is divided by the task's Adam return
and the results are averaged (OPEN §4.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def final_return(metrics: dict) -> jax.Array:
    """The final return of a run or of a batch of runs (last axis: updates)."""
    return metrics["return"][..., -1]


def finite_or_worst(fitness: jax.Array) -> jax.Array:
    """NaN and infinite fitness become -inf: the worst rank, never a NaN."""
    return jnp.where(jnp.isfinite(fitness), fitness, -jnp.inf)


def combine_tasks(
    raw: Sequence[jax.Array], baseline_returns: Sequence[float]
) -> jax.Array:
    """Mean over tasks of ``raw / baseline``; each ``raw`` has shape ``(members,)``."""
    normalised = [
        finite_or_worst(r) / b for r, b in zip(raw, baseline_returns, strict=True)
    ]
    return finite_or_worst(jnp.mean(jnp.stack(normalised), axis=0))


def to_minimisation(fitness: jax.Array) -> jax.Array:
    """evosax minimises: the single place where lopt's fitness changes sign."""
    return -fitness


def pairwise(raw: jax.Array) -> jax.Array:
    """OPEN §4.3's shaping for antithetic pairs (member i with i + members/2).

    The better member of each pair gets 1 and the other 0; a tie gives the first
    0 and the second 1. Returns shape ``(members,)``, higher is better (after
    :func:`to_minimisation`, the paper's -1 / 0).
    """
    raw = finite_or_worst(raw)
    first, second = jnp.split(raw, 2)
    first_wins = (first > second).astype(jnp.float32)
    return jnp.concatenate([first_wins, 1.0 - first_wins])
