"""TD3 (Fujimoto et al. 2018): twin critics, target policy smoothing, delayed
actor updates, any optimizer.

``make_td3(config, optimizer)`` is an :class:`~lopt.rl.algorithm.Algorithm` on
the replay loop of :mod:`lopt.rl.continuous`. The actor is an MLP with a ``tanh``
output, ``mu(s)`` in ``[-1, 1]``; it explores with ``clip(mu(s) + N(0,
exploration_noise), -1, 1)``. Actor and twin critics have Polyak-averaged
targets. Losses on a batch:

- critics: ``sum_i mean (q_i(s, a) - y)^2``, ``y = r + gamma (1 - terminal)
  min_i q'_i(s', a')`` with the smoothed target action ``a' = clip(mu'(s') +
  clip(policy_noise * eps, -noise_clip, noise_clip), -1, 1)``, ``eps ~ N(0, 1)``;
- actor: ``-mean q_0(s, mu(s))``, critics held constant, on actor steps only
  (every ``policy_frequency``-th gradient step).

Delayed updates are expressed in one optimizer step per gradient step: on
critic-only steps the actor's gradient is zero and its update discarded, and
targets move after actor steps only (:mod:`lopt.rl.continuous`, where OPEN's
``training_prop`` and ``batch_prop`` count every gradient step, critic-only ones
included). The tree is ``{"actor": ..., "critic": {"q_0": ..., "q_1": ...}}``;
OPEN's noise covers the actor's leaves. Metrics per update: ``return``,
``critic_loss``, ``actor_loss``, ``q``, ``dormant_fraction``,
``update_magnitude``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from lopt.optim.optimizer import Optimizer
from lopt.rl.algorithm import Algorithm, Transition
from lopt.rl.continuous import (
    ActorCritic,
    ContinuousConfig,
    actor_and_critics,
    continuous_env,
    critic_loss,
    make_continuous_learner,
)


@dataclasses.dataclass(frozen=True)
class TD3Config(ContinuousConfig):
    """TD3 settings; defaults are CleanRL's ``td3_continuous_action.py`` (actions
    in [-1, 1], so its noise scales are in units of the action range's half)."""

    learning_starts: int = 25_000
    policy_frequency: int = 2
    exploration_noise: float = 0.1
    policy_noise: float = 0.2
    """standard deviation of the target policy's smoothing noise"""
    noise_clip: float = 0.5


def smoothed_action(
    target_action: jax.Array, eps: jax.Array, policy_noise: float, noise_clip: float
) -> jax.Array:
    """``clip(target_action + clip(policy_noise * eps, -c, c), -1, 1)``."""
    noise = jnp.clip(policy_noise * eps, -noise_clip, noise_clip)
    return jnp.clip(target_action + noise, -1.0, 1.0)


def td3_target(reward, terminal, next_q_0, next_q_1, gamma: float) -> jax.Array:
    """``r + gamma (1 - terminal) min(q'_0, q'_1)``."""
    not_done = 1.0 - terminal.astype(jnp.float32)
    return reward + gamma * not_done * jnp.minimum(next_q_0, next_q_1)


def make_td3(
    config: TD3Config, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """TD3 for ``config`` with ``optimizer``; see the module docstring."""
    env, env_params = env or continuous_env(config, "TD3")
    action_size = env.action_size(env_params)
    actor, critic, init = actor_and_critics(config, action_size)

    def mu(actor_params, obs):
        out, activations = actor.apply(actor_params, obs)
        return jnp.tanh(out), activations

    def act(params, obs, key):
        action, _ = mu(params["actor"], obs)
        noise = config.exploration_noise * jax.random.normal(key, action.shape)
        return jnp.clip(action + noise, -1.0, 1.0)

    def loss(params, target, batch: Transition, key, actor_step):
        frozen_critic = jax.lax.stop_gradient(params["critic"])
        target_action, _ = mu(target["actor"], batch.next_obs)
        eps = jax.random.normal(key, target_action.shape)
        next_action = smoothed_action(
            target_action, eps, config.policy_noise, config.noise_clip
        )
        critics, q, critic_acts = critic_loss(
            critic,
            params,
            target,
            batch,
            next_action,
            lambda q_0, q_1: td3_target(
                batch.reward, batch.done, q_0, q_1, config.gamma
            ),
        )
        action, actor_acts = mu(params["actor"], batch.obs)
        (q_pi, _), _ = critic.apply(frozen_critic, batch.obs, action)
        actor_loss = -jnp.mean(q_pi)
        total = critics + jnp.where(actor_step, actor_loss, 0.0)
        metrics = {
            "critic_loss": critics,
            "actor_loss": actor_loss,
            "q": q,
        }
        return total, (metrics, {"actor": actor_acts, "critic": critic_acts})

    agent = ActorCritic(init, act, loss, target_names=("actor", "critic"))
    return make_continuous_learner(config, optimizer, agent, (env, env_params))
