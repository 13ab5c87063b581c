"""Soft actor-critic (Haarnoja et al. 2018, with automatic temperature), any
optimizer.

``make_sac(config, optimizer)`` is an :class:`~lopt.rl.algorithm.Algorithm` on
the replay loop of :mod:`lopt.rl.continuous` (flashbax buffer, uniform warm-up,
one optimizer over every network). The agent:

- actor: an MLP giving the mean and a raw log-std per action dimension; the
  log-std is squashed into ``[LOG_STD_MIN, LOG_STD_MAX]`` with ``tanh``, and
  actions are ``tanh(u)``, ``u ~ N(mean, std)`` (a tanh-squashed Gaussian), with
  ``log pi(a) = sum log N(u) - sum log(1 - tanh(u)^2)``;
- twin critics ``q_0``, ``q_1`` on ``(obs, action)`` with Polyak-averaged target
  copies (``tau``);
- the temperature ``alpha = exp(log_alpha)``, tuned toward the target entropy
  ``-action_size`` (or ``target_entropy``).

Losses on a batch (summed into one; each reaches only its own subtree):

- critics: ``sum_i mean (q_i(s, a) - y)^2`` with ``y = r + gamma (1 - terminal)
  (min_i q'_i(s', a') - alpha log pi(a' | s'))``, ``a' ~ pi(s')``;
- actor: ``mean(alpha log pi(a~ | s) - min_i q_i(s, a~))``, ``a~ ~ pi(s)``,
  critics and alpha held constant;
- temperature: ``mean(-exp(log_alpha) (log pi(a~ | s) + target_entropy))``,
  ``log pi`` held constant (CleanRL's form).

The parameter tree is ``{"actor": ..., "critic": {"q_0": ..., "q_1": ...},
"temperature": {"log_alpha": ()}}``. The temperature is a parameter like the
others, updated by the same optimizer with the same optimizer state: its gradient
is clipped on its own (its own top-level subtree), its ``layer_prop`` is 0 (a
network of one layer) and its ``dormancy`` 1 (no activations), and OPEN's noise
does not touch it (the default noise mask covers ``"actor"`` only). The actor
and critics learn every gradient step (``policy_frequency = 1``, as SB3 and the
SAC paper; CleanRL's 2 is available). Metrics per update: ``return``,
``critic_loss``, ``actor_loss``, ``temperature_loss``, ``alpha``, ``entropy``
(``-log pi`` of the batch's actions), ``q``, ``dormant_fraction``,
``update_magnitude`` (means over the update's gradient steps; 0 before learning
starts).

One optimizer family means one learning rate for every network (the presets
use 3e-4, SB3's; CleanRL uses 3e-4 for the actor and 1e-3 for the critics and
the temperature).
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

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's bounds


@dataclasses.dataclass(frozen=True)
class SACConfig(ContinuousConfig):
    """SAC settings; defaults are CleanRL's ``sac_continuous_action.py`` (one
    learning rate, actor every step)."""

    target_entropy: float | None = None
    """the entropy the temperature steers toward (None: -action_size)"""
    initial_log_alpha: float = 0.0


def squashed_log_std(raw: jax.Array) -> jax.Array:
    """``raw`` squashed into ``[LOG_STD_MIN, LOG_STD_MAX]`` with ``tanh``."""
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array):
    """``log pi(tanh(u))`` of a tanh-squashed diagonal Gaussian, summed over the
    last axis: ``sum log N(u; mean, std) - sum log(1 - tanh(u)^2)``, the latter
    as ``2 (log 2 - u - softplus(-2 u))`` (exact, and finite for large |u|)."""
    z = (u - mean) * jnp.exp(-log_std)
    gaussian = -0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.sum(gaussian - log_det, axis=-1)


def sac_target(
    reward: jax.Array,
    terminal: jax.Array,
    next_q_0: jax.Array,
    next_q_1: jax.Array,
    next_log_prob: jax.Array,
    alpha: jax.Array,
    gamma: float,
) -> jax.Array:
    """``r + gamma (1 - terminal) (min(q'_0, q'_1) - alpha log pi(a' | s'))``."""
    soft_value = jnp.minimum(next_q_0, next_q_1) - alpha * next_log_prob
    return reward + gamma * (1.0 - terminal.astype(jnp.float32)) * soft_value


def sac_actor_loss(q_0, q_1, log_prob, alpha) -> jax.Array:
    """``mean(alpha log pi - min(q_0, q_1))``."""
    return jnp.mean(alpha * log_prob - jnp.minimum(q_0, q_1))


def temperature_loss(log_alpha, log_prob, target_entropy: float) -> jax.Array:
    """``mean(-exp(log_alpha) (log pi + target_entropy))``, ``log pi`` constant:
    its gradient raises alpha while the entropy ``-log pi`` is below target."""
    log_prob = jax.lax.stop_gradient(log_prob)
    return jnp.mean(-jnp.exp(log_alpha) * (log_prob + target_entropy))


def make_sac(
    config: SACConfig, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """SAC for ``config`` with ``optimizer``; see the module docstring."""
    env, env_params = env or continuous_env(config, "SAC")
    action_size = env.action_size(env_params)
    target_entropy = (
        -float(action_size) if config.target_entropy is None else config.target_entropy
    )
    actor, critic, init_networks = actor_and_critics(config, 2 * action_size)

    def init(key, obs, action):
        return {
            **init_networks(key, obs, action),
            "temperature": {
                "log_alpha": jnp.asarray(config.initial_log_alpha, jnp.float32)
            },
        }

    def policy(actor_params, obs, key):
        """Sampled actions in (-1, 1), their log-probabilities, activations."""
        out, activations = actor.apply(actor_params, obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        log_std = squashed_log_std(raw)
        u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return jnp.tanh(u), tanh_gaussian_log_prob(u, mean, log_std), activations

    def act(params, obs, key):
        return policy(params["actor"], obs, key)[0]

    def loss(params, target, batch: Transition, key, actor_step):
        key_next, key_now = jax.random.split(key)
        frozen = jax.lax.stop_gradient(params)
        log_alpha = params["temperature"]["log_alpha"]
        alpha = jnp.exp(frozen["temperature"]["log_alpha"])
        # critics
        next_action, next_log_prob, _ = policy(
            frozen["actor"], batch.next_obs, key_next
        )
        critics, q, critic_acts = critic_loss(
            critic,
            params,
            target,
            batch,
            next_action,
            lambda q_0, q_1: sac_target(
                batch.reward, batch.done, q_0, q_1, next_log_prob, alpha, config.gamma
            ),
        )
        # actor and temperature
        action, log_prob, actor_acts = policy(params["actor"], batch.obs, key_now)
        q_new, _ = critic.apply(frozen["critic"], batch.obs, action)
        actor_loss = sac_actor_loss(*q_new, log_prob, alpha)
        alpha_loss = temperature_loss(log_alpha, log_prob, target_entropy)
        total = critics + jnp.where(actor_step, actor_loss + alpha_loss, 0.0)
        metrics = {
            "critic_loss": critics,
            "actor_loss": actor_loss,
            "temperature_loss": alpha_loss,
            "alpha": alpha,
            "entropy": -jnp.mean(log_prob),
            "q": q,
        }
        return total, (metrics, {"actor": actor_acts, "critic": critic_acts})

    agent = ActorCritic(init, act, loss, target_names=("critic",))
    return make_continuous_learner(config, optimizer, agent, (env, env_params))
