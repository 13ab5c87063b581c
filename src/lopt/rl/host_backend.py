"""The executor's second backend: environments stepped on the host (Atari, ALE).

ALE is C++, so a run cannot be one jitted function: the environments step from a
Python loop over the rollout, between jitted calls of the algorithm's own pieces
(:class:`~lopt.rl.algorithm.Algorithm`'s ``start``, ``collect_step`` and
``learn``, or its ``host_learn``), seed after seed. The keys are split as in the
JAX backend, so the numbers mean the same. Each seed has its own batch of
``num_envs`` emulators. Not for meta-training or tuning (a population would need
a host batch per member).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt.envs.registry import make_vec_env
from lopt.optim.optimizer import Optimizer
from lopt.rl.algorithm import AlgorithmConfig
from lopt.rl.registry import make_algorithm


def run_host(
    config: AlgorithmConfig,
    optimizer: Optimizer,
    keys: jax.Array,
    opt_params: Any,
    on_progress: Callable[[int], None] | None = None,
    on_metrics: Callable[[int, dict], None] | None = None,
    envs: list | None = None,
) -> tuple[dict[str, np.ndarray], list]:
    """Trains one agent per key on host environments.

    Args:
      config: ``config.env`` names a host environment (``atari/...``).
      keys: one PRNG key per seed, shape ``(num_seeds,)``.
      on_progress: called with the number of updates done after each update.
      on_metrics: called after each update with the updates done and that
        update's metrics, shaped ``(num_seeds, 1, ...)``.
      envs: one batch of environments per seed (default: built from ``config``).

    Returns:
      ``(metrics, params)``: every metric as an array ``(num_seeds, num_updates,
      ...)`` (as :class:`~lopt.rl.executor.Executor`), and each seed's final
      agent parameters.
    """
    if envs is None:
        envs = [
            make_vec_env(config.env, config.num_envs, config.gamma)[0]
            for _ in range(len(keys))
        ]
    algorithm = make_algorithm(config, optimizer, (envs[0], None))
    start = jax.jit(algorithm.start)
    collect_step = jax.jit(algorithm.collect_step)
    transition = jax.jit(algorithm.transition)
    learn = algorithm.host_learn or jax.jit(algorithm.learn)
    split = jax.jit(lambda key: tuple(jax.random.split(key)))
    init_keys = jax.jit(lambda key: tuple(jax.random.split(key, 3)))

    # Seeds one after another, not vmapped: a vmapped convolution over batched
    # kernels becomes a grouped convolution, many times slower on a CPU.
    states, env_states = [], []
    for env, seed_key in zip(envs, keys, strict=True):
        key, key_networks, key_env = init_keys(seed_key)
        obs, env_state = env.reset(key_env, None)
        states.append(start(key, key_networks, opt_params, jnp.asarray(obs)))
        env_states.append(env_state)  # host-side: the episode log's statistics
    history = []
    for update in range(config.num_updates):
        per_seed = []
        for i, env in enumerate(envs):
            state = states[i]
            obs, key, steps = state.obs, state.key, []
            for _ in range(config.rollout_length):
                key, action, extras, key_env = collect_step(state, obs, key)
                step = env.step(key_env, env_states[i], np.asarray(action), None)
                env_states[i] = step[1]
                steps.append(transition(obs, action, extras, step))
                obs = jnp.asarray(step[0])
            traj = jax.tree.map(lambda *xs: jnp.stack(xs), *steps)
            key, key_learn = split(key)
            state, metrics = learn(state._replace(obs=obs, key=key), traj, key_learn)
            metrics["return"] = np.mean(traj.episode_return[-1])
            states[i] = state._replace(update=state.update + 1)
            per_seed.append(jax.device_get(metrics))
        history.append(per_seed)
        if on_metrics is not None:
            on_metrics(
                update + 1,
                {k: np.stack([m[k] for m in per_seed])[:, None] for k in per_seed[0]},
            )
        if on_progress is not None:
            on_progress(update + 1)
    for env in envs:
        env.close()
    metrics = {
        k: np.asarray([[h[s][k] for h in history] for s in range(len(envs))])
        for k in history[0][0]
    }
    return metrics, [state.params for state in states]
