"""Action distributions of the actors, written out to avoid a distrax dependency."""

from __future__ import annotations

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
