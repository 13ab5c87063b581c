"""PPO on environments stepped on the host (Atari through ALE), any optimizer.

ALE is C++, so a run cannot be one jitted function: the environment steps from a
Python loop over the rollout's ``num_steps``, and the update from a loop over its
optimizer steps, each step jitted, seed after seed. The pieces are those of
:mod:`lopt.rl.ppo` (its agent, :func:`~lopt.rl.ppo.make_learn`, OPEN's
training_prop and batch_prop), so the numbers mean the same. Each seed has its own
batch of ``num_envs`` emulators. Not for meta-training (a population would need a
host batch per member).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt.envs.registry import HostEnvironmentError, make_vec_env
from lopt.optim.diagnostics import SAMPLES
from lopt.optim.family import Optimizer
from lopt.rl.ppo import PPOConfig, Transition, make_agent, make_learn, make_tx


def train_host(
    config: PPOConfig,
    optimizer: Optimizer,
    keys: jax.Array,
    opt_params: Any = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], Any]:
    """Trains one agent per key on a host environment.

    Args:
      config: PPO settings; ``config.env`` names a host environment (``atari/...``).
      optimizer: the optimizer family; ``opt_params`` defaults to its params.
      keys: one PRNG key per seed, shape ``(num_seeds,)``.
      on_progress: called with the number of updates done after each update.

    Returns:
      ``(metrics, params)``: every metric as an array ``(num_seeds, num_updates)``
      (as :func:`lopt.rl.runner.train_seeds`), and each seed's final agent
      parameters.
    """
    if not isinstance(config, PPOConfig):
        raise HostEnvironmentError(
            f"{config.env} runs on the host (ALE), where lopt trains PPO only; "
            f"got {type(config).__name__}"
        )
    opt_params = optimizer.params if opt_params is None else opt_params
    envs = [
        make_vec_env(config.env, config.num_envs, config.gamma)[0]
        for _ in range(len(keys))
    ]
    agent = make_agent(config, envs[0], None)
    update_parts = make_learn(config, agent)

    def build_tx(opt_params):
        return make_tx(config, optimizer, opt_params)

    @jax.jit
    def init(key):
        key, key_networks, key_env = jax.random.split(key, 3)
        params = agent.init(key_networks)
        return params, build_tx(opt_params).init(params), key, key_env

    @jax.jit
    def act(params, obs, key):
        key, key_action = jax.random.split(key)
        policy, value, _ = agent.policy_value(params, obs)
        action = agent.dist.sample(key_action, policy)
        return action, agent.dist.log_prob(policy, action), value, key

    # One jitted function per optimizer step, looped here: fused into one update
    # XLA on a CPU picked convolution kernels ~30x slower for the CNN's weight
    # gradients (measured with jax 0.9.2: 8.4 s against 0.24 s for two steps).
    samples_fn = jax.jit(update_parts.samples)
    split_fn = jax.jit(update_parts.minibatches)
    step_fn = jax.jit(
        lambda carry, batch: update_parts.minibatch_step(
            build_tx(opt_params), carry, batch
        )
    )

    def update(params, opt_state, iteration, key, traj, last_obs):
        """:func:`~lopt.rl.ppo.make_learn`'s ``learn``, with the same keys."""
        key, key_epochs = jax.random.split(key)
        samples = samples_fn(params, traj, last_obs)
        carry, step_metrics = (params, opt_state, iteration, key_epochs), []
        for _ in range(config.update_epochs):
            params, opt_state, iteration, key_epoch = carry
            key_epoch, key_perm = jax.random.split(key_epoch)
            carry = (params, opt_state, iteration, key_epoch)
            minibatches = split_fn(key_perm, samples)
            for i in range(config.num_minibatches):
                carry, m = step_fn(carry, jax.tree.map(lambda x: x[i], minibatches))
                step_metrics.append(m)
        metrics = {
            k: v if k in SAMPLES else np.mean([m[k] for m in step_metrics], axis=0)
            for k, v in step_metrics[-1].items()
        }
        metrics["return"] = np.mean(traj.returned_episode_return[-1])
        params, opt_state, iteration, _ = carry
        return params, opt_state, iteration, key, metrics

    # Seeds one after another, not vmapped: a vmapped convolution over batched
    # kernels becomes a grouped convolution, many times slower on a CPU.
    runs = []
    for env, seed_key in zip(envs, keys, strict=True):
        params, opt_state, key, key_env = init(seed_key)
        obs, env_state = env.reset(key_env, None)
        runs.append([params, opt_state, jnp.zeros((), jnp.int32), key, obs, env_state])
    history = []
    for update_index in range(config.num_updates):
        per_seed = []
        for env, run in zip(envs, runs, strict=True):
            params, opt_state, iteration, key, obs, env_state = run
            steps = []
            for _ in range(config.num_steps):
                action, log_prob, value, key = act(params, obs, key)
                action = np.asarray(action)
                next_obs, env_state, reward, terminated, truncated, info = env.step(
                    None, env_state, action, None
                )
                steps.append(
                    Transition(
                        obs=obs,
                        action=action,
                        reward=reward,
                        done=np.logical_or(terminated, truncated),
                        log_prob=log_prob,
                        value=value,
                        returned_episode_return=info["returned_episode_return"],
                    )
                )
                obs = next_obs
            traj = jax.tree.map(lambda *xs: jnp.stack(xs), *steps)
            params, opt_state, iteration, key, metrics = update(
                params, opt_state, iteration, key, traj, obs
            )
            run[:] = [params, opt_state, iteration, key, obs, env_state]
            per_seed.append(metrics)
        history.append(jax.device_get(per_seed))
        if on_progress is not None:
            on_progress(update_index + 1)
    for env in envs:
        env.close()
    metrics = {
        k: np.asarray([[h[s][k] for h in history] for s in range(len(runs))])
        for k in history[0][0]
    }
    return metrics, [run[0] for run in runs]
