"""Epochs of shuffled minibatches over one update's samples (PPO, PQN).

Each epoch draws a permutation of the batch, splits it into ``num_minibatches``
minibatches and takes one ``step`` on each; a key threads through, split once
per epoch (the permutation) and once per step (the step's own key).
:func:`minibatch_epochs` is one ``lax.scan``; :func:`minibatch_epochs_stepwise`
loops in Python over jitted steps with the same keys, for the host backend.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from lopt.rl.algorithm import AlgorithmConfig


@dataclasses.dataclass(frozen=True)
class MinibatchConfig(AlgorithmConfig):
    """An update's shape for PPO and PQN: a rollout of ``num_steps`` steps of
    every environment, then ``update_epochs`` epochs of ``num_minibatches``
    shuffled minibatches over its ``num_envs * num_steps`` samples."""

    num_steps: int = 128
    """rollout length per environment and update"""
    update_epochs: int = 4
    num_minibatches: int = 4

    def __post_init__(self):
        self.require_counts("num_steps", "update_epochs", "num_minibatches")
        super().__post_init__()
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"the batch of {self.batch_size} samples does not split into "
                f"{self.num_minibatches} minibatches"
            )

    @property
    def rollout_length(self) -> int:
        return self.num_steps

    @property
    def num_epochs(self) -> int:
        return self.update_epochs

    @property
    def steps_per_epoch(self) -> int:
        return self.num_minibatches

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


Step = Callable[[Any, Any, jax.Array], tuple[Any, dict]]
"""(carry, minibatch, key) -> (carry, metrics)"""


def shuffled_minibatches(key: jax.Array, samples: Any, num_minibatches: int) -> Any:
    """One epoch's split: leaves ``(B, ...)`` -> ``(num_minibatches, B / M, ...)``."""
    size = jax.tree.leaves(samples)[0].shape[0]
    perm = jax.random.permutation(key, size)
    return jax.tree.map(
        lambda x: x[perm].reshape(num_minibatches, -1, *x.shape[1:]), samples
    )


def minibatch_epochs(
    step: Step,
    carry: Any,
    samples: Any,
    key: jax.Array,
    num_epochs: int,
    num_minibatches: int,
) -> tuple[Any, dict]:
    """``num_epochs`` epochs of ``step`` over shuffled minibatches of ``samples``.

    Returns:
      ``(carry, metrics)``, each metric with leading axes
      ``(num_epochs, num_minibatches)``.
    """

    def minibatch(c, batch):
        inner, key = c
        key, key_step = jax.random.split(key)
        inner, metrics = step(inner, batch, key_step)
        return (inner, key), metrics

    def epoch(c, _):
        inner, key = c
        key, key_perm = jax.random.split(key)
        batches = shuffled_minibatches(key_perm, samples, num_minibatches)
        return jax.lax.scan(minibatch, (inner, key), batches)

    (carry, _), metrics = jax.lax.scan(epoch, (carry, key), None, num_epochs)
    return carry, metrics


def minibatch_epochs_stepwise(
    step: Step,
    split: Callable[[jax.Array, Any], Any],
    carry: Any,
    samples: Any,
    key: jax.Array,
    num_epochs: int,
    num_minibatches: int,
) -> tuple[Any, dict]:
    """:func:`minibatch_epochs` as a Python loop of calls, with the same keys.

    Args:
      step: jitted by the caller; so is ``split`` (``shuffled_minibatches`` with
        ``num_minibatches`` bound).

    Returns:
      ``(carry, metrics)`` as :func:`minibatch_epochs` (NumPy metrics).
    """
    per_epoch = []
    for _ in range(num_epochs):
        key, key_perm = jax.random.split(key)
        batches = split(key_perm, samples)
        per_step = []
        for i in range(num_minibatches):
            key, key_step = jax.random.split(key)
            carry, metrics = step(
                carry, jax.tree.map(lambda x: x[i], batches), key_step
            )
            per_step.append(jax.device_get(metrics))
        per_epoch.append(jax.tree.map(lambda *xs: np.stack(xs), *per_step))
    return carry, jax.tree.map(lambda *xs: np.stack(xs), *per_epoch)
