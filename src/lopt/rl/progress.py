"""OPEN's schedule features from the optimizer's step counter (§2.3).

``iteration`` counts minibatch updates from 0 and is the same counter the optimizer
would keep. With U rollouts/updates, E epochs and M minibatches per epoch:

- ``training_prop = floor(iteration / (M * E)) / (U - 1)``: the index of the
  current update over (U - 1), 0 on the first and 1 on the last;
- ``batch_prop = ((iteration // M) mod E) / (E - 1)``: the epoch within the
  current update, {0, 1/3, 2/3, 1} for 4 epochs.

A run of one update (U = 1) or one epoch (E = 1) gets 0, where the paper's formula
would divide by zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def training_prop(
    iteration: jax.Array, num_minibatches: int, update_epochs: int, num_updates: int
) -> jax.Array:
    """Fraction of the inner run done, per update (float32 scalar in [0, 1])."""
    update = iteration // (num_minibatches * update_epochs)
    return jnp.asarray(update / max(num_updates - 1, 1), jnp.float32)


def batch_prop(
    iteration: jax.Array, num_minibatches: int, update_epochs: int
) -> jax.Array:
    """Fraction of the epochs over the current batch done (float32 in [0, 1])."""
    epoch = (iteration // num_minibatches) % update_epochs
    return jnp.asarray(epoch / max(update_epochs - 1, 1), jnp.float32)
