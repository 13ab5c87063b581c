"""Action distributions of the actors, written out to avoid a distrax dependency.

A categorical over logits ``(..., A)`` for discrete actions, a diagonal Gaussian
``(mean, log_std)``, each ``(..., D)``, for continuous ones.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """log pi(action) for logits of shape ``(..., A)`` and integer actions ``(...)``."""
    log_probs = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """Entropy of a categorical distribution, shape ``(..., A) -> (...)``."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def gaussian_sample(key: jax.Array, dist: tuple[jax.Array, jax.Array]) -> jax.Array:
    """A sample of a diagonal Gaussian ``(mean, log_std)``, shape ``(..., D)``."""
    mean, log_std = dist
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def gaussian_log_prob(dist: tuple[jax.Array, jax.Array], action: jax.Array):
    """log pi(action), summed over the action dimensions: ``(..., D) -> (...)``."""
    mean, log_std = dist
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def gaussian_entropy(dist: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Entropy of a diagonal Gaussian, ``(..., D) -> (...)``."""
    _, log_std = dist
    return jnp.sum(log_std + 0.5 * (1.0 + jnp.log(2 * jnp.pi)), axis=-1)


class Distribution(NamedTuple):
    """The three operations PPO needs of a policy's action distribution."""

    sample: Any  # (key, dist) -> action
    log_prob: Any  # (dist, action) -> log pi(action), shape (...)
    entropy: Any  # dist -> entropy, shape (...)


CATEGORICAL = Distribution(
    lambda key, logits: jax.random.categorical(key, logits),
    categorical_log_prob,
    categorical_entropy,
)
DIAGONAL_GAUSSIAN = Distribution(gaussian_sample, gaussian_log_prob, gaussian_entropy)
