"""Generalised advantage estimation (Schulman et al. 2016) as a reverse scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    dones: jax.Array,
    last_value: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets of a rollout.

    Args:
      rewards, values, dones: shape ``(T, ...)``; ``dones[t]`` says the episode
        ended at step t, which cuts both the bootstrap and the recursion there.
      last_value: shape ``(...)``: the value of the observation after step T-1.

    Returns:
      ``(advantages, targets)``, each of shape ``(T, ...)``, with
      ``targets = advantages + values``.
    """
    not_done = 1.0 - dones.astype(values.dtype)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    deltas = rewards + gamma * next_values * not_done - values

    def backward(gae, inputs):
        delta, mask = inputs
        gae = delta + gamma * gae_lambda * mask * gae
        return gae, gae

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(last_value), (deltas, not_done), reverse=True
    )
    return advantages, advantages + values
