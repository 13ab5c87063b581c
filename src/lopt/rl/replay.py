"""A uniform experience-replay buffer: a circular array of transitions in a pytree.

The buffer is a :class:`Replay` NamedTuple, so it lives inside a jitted, vmapped
training run like any other state. ``add`` writes a batch of transitions at the
write position, wrapping around and overwriting the oldest once full; ``sample``
draws uniformly, with replacement, among the transitions stored so far.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Replay(NamedTuple):
    data: Any  # pytree of arrays, leading axis capacity
    position: jax.Array  # shape=(), int32: index the next transition is written to
    size: jax.Array  # shape=(), int32: transitions stored, at most capacity


def init(example: Any, capacity: int) -> Replay:
    """An empty buffer for ``capacity`` transitions shaped like ``example``.

    Args:
      example: one transition, a pytree of arrays (no batch axis).
      capacity: how many transitions the buffer holds.
    """
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    zero = jnp.zeros((), jnp.int32)
    return Replay(data, zero, zero)


def capacity(buffer: Replay) -> int:
    return jax.tree.leaves(buffer.data)[0].shape[0]


def add(buffer: Replay, batch: Any) -> Replay:
    """Writes ``batch`` (leading axis B <= capacity) after the newest transition."""
    cap = capacity(buffer)
    size = jax.tree.leaves(batch)[0].shape[0]
    if size > cap:
        raise ValueError(
            f"a batch of {size} transitions does not fit a buffer of {cap}"
        )
    index = (buffer.position + jnp.arange(size)) % cap
    data = jax.tree.map(lambda d, b: d.at[index].set(b), buffer.data, batch)
    return Replay(
        data, (buffer.position + size) % cap, jnp.minimum(buffer.size + size, cap)
    )


def sample(buffer: Replay, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` stored transitions, uniformly with replacement.

    The buffer must hold at least one transition (the training loops only sample
    after ``learning_starts`` frames).
    """
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[index], buffer.data)
