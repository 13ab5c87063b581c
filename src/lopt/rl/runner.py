"""Running any inner-loop algorithm over several seeds in chunks, for progress.

``train`` from :func:`lopt.rl.algorithms.make_train` is one call for a whole run;
this runner calls the same update step in chunks of updates instead (one compiled
function, reused), and reports after each chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from lopt.envs.registry import is_host
from lopt.optim.family import Optimizer
from lopt.rl.algorithms import make_algorithm
from lopt.rl.host import train_host


def chunk_size(num_updates: int, target_chunks: int = 25) -> int:
    """The largest divisor of ``num_updates`` giving at least ``target_chunks``
    chunks (so every chunk has the same length and compiles once)."""
    limit = max(1, num_updates // target_chunks)
    return max(d for d in range(1, limit + 1) if num_updates % d == 0)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """One PRNG key per seed; seed s gives the same key in any run."""
    return jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))


def train_seeds(
    config: Any,
    optimizer: Optimizer,
    seeds: Sequence[int],
    opt_params: Any = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], Any]:
    """Trains one agent per seed (vmapped), in chunks of updates.

    Args:
      config: an algorithm's settings (``PPOConfig``, ``DQNConfig``, ...).
      optimizer: the optimizer family; ``opt_params`` defaults to its params.
      seeds: integer seeds.
      on_progress: called with the number of updates done after each chunk.

    Returns:
      ``(metrics, final_state)``: every metric as an array of shape
      ``(num_seeds, num_updates)``, and the final runner state (batched; for a
      host environment only the agents' parameters).
    """
    if is_host(config.env):  # Atari: ALE steps on the host, one update at a time
        return train_host(config, optimizer, seed_keys(seeds), opt_params, on_progress)
    algorithm = make_algorithm(config, optimizer)
    opt_params = optimizer.params if opt_params is None else opt_params
    chunk = chunk_size(config.num_updates)
    init = jax.jit(jax.vmap(algorithm.init, in_axes=(0, None)))
    run = jax.jit(
        jax.vmap(lambda s, p: algorithm.run(s, p, chunk), in_axes=(0, None)),
        donate_argnums=0,
    )
    state = init(seed_keys(seeds), opt_params)
    pieces = []
    for done in range(chunk, config.num_updates + 1, chunk):
        state, metrics = run(state, opt_params)
        pieces.append(jax.device_get(metrics))
        if on_progress is not None:
            on_progress(done)
    metrics = {k: np.concatenate([p[k] for p in pieces], axis=1) for k in pieces[0]}
    return metrics, state
