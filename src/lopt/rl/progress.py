"""OPEN's schedule features from the optimizer's step counter (§2.3).

``iteration`` counts optimizer steps from 0 and is the same counter the optimizer
would keep. An update that learns takes ``steps_per_update = E * M`` steps: E
passes (epochs) over its data of M steps each (PPO and PQN: epochs of M
minibatches; DQN: E gradient steps, M = 1). Over U updates that learn:

- ``training_prop = floor(iteration / (E * M)) / (U - 1)``: the index of the
  current update over (U - 1), 0 on the first and 1 on the last;
- ``batch_prop = ((iteration // M) mod E) / (E - 1)``: the pass within the
  current update, {0, 1/3, 2/3, 1} for 4 epochs.

A run of one update (U = 1) or one pass (E = 1) gets 0, where the paper's formula
would divide by zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def training_prop(
    iteration: jax.Array, steps_per_update: int, num_updates: int
) -> jax.Array:
    """Fraction of the inner run done, per update (float32 scalar in [0, 1])."""
    update = iteration // steps_per_update
    return jnp.asarray(update / max(num_updates - 1, 1), jnp.float32)


def batch_prop(
    iteration: jax.Array, steps_per_epoch: int, num_epochs: int
) -> jax.Array:
    """Fraction of the passes over the current batch done (float32 in [0, 1])."""
    epoch = (iteration // steps_per_epoch) % num_epochs
    return jnp.asarray(epoch / max(num_epochs - 1, 1), jnp.float32)
