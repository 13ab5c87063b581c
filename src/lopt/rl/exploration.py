"""Epsilon-greedy exploration with a linear schedule (the value-based loops)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def epsilon(frames: jax.Array, start: float, end: float, anneal_frames: float):
    """Linear decay from ``start`` to ``end`` over the first ``anneal_frames``
    environment frames, then ``end`` (CleanRL's ``linear_schedule``); ``end``
    throughout when ``anneal_frames`` is 0."""
    if anneal_frames <= 0:
        return jnp.asarray(end, jnp.float32)
    fraction = jnp.clip(frames / anneal_frames, 0.0, 1.0)
    return jnp.asarray(start + fraction * (end - start), jnp.float32)


def epsilon_greedy(key: jax.Array, q_values: jax.Array, eps: jax.Array) -> jax.Array:
    """Greedy actions, each replaced by a uniform one with probability ``eps``.

    Args:
      q_values: shape ``(num_envs, num_actions)``.

    Returns:
      int32 actions, shape ``(num_envs,)``.
    """
    key_explore, key_action = jax.random.split(key)
    greedy = jnp.argmax(q_values, axis=-1)
    explore = jax.random.uniform(key_explore, greedy.shape) < eps
    random = jax.random.randint(key_action, greedy.shape, 0, q_values.shape[-1])
    return jnp.where(explore, random, greedy).astype(jnp.int32)
