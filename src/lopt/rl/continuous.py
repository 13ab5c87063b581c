"""The replay loop of SAC and TD3: an actor, twin critics, target networks.

One *update* steps ``num_envs`` environments ``train_frequency`` times, stores
the transitions in a flashbax buffer, and once ``learning_starts`` frames are
stored takes ``gradient_steps`` gradient steps, each on a fresh batch of
``batch_size`` transitions drawn uniformly. Before ``learning_starts`` actions
are uniform in ``[-1, 1]`` (CleanRL's warm-up).

Every network sits in one parameter tree, ``{"actor": ..., "critic": {"q_0":
..., "q_1": ...}, ...}`` (SAC adds ``"temperature"``), updated by one optimizer
with one optimizer state, the gradient clipped per top-level subtree
(:mod:`lopt.rl.optimizer_step`). A gradient step is one optimizer step on the sum
of the algorithm's losses, each a function of its own subtree only (the others
enter through ``stop_gradient``), so the sum's gradient is each loss's gradient
on its own network.

Delayed actor updates (TD3's ``policy_frequency``): gradient step ``i`` (counted
from the first that learns) is an *actor step* when ``i mod policy_frequency ==
0``. On the other steps the actor's loss is left out of the sum (its gradient is
zero) and the actor's (and SAC's temperature's) parameters are kept as they were:
the optimizer's update for them is discarded. The optimizer still takes that step
over the whole tree, so its state for those leaves sees a zero gradient (Adam's
moments decay; a learned optimizer reads a zero gradient). Target networks move
after actor steps only, ``target <- tau * online + (1 - tau) * target`` (with
``policy_frequency = 1``, after every step).

OPEN's extra arguments, over U updates that learn, G gradient steps each:
``training_prop = floor(i / G) / (U - 1)`` (with the presets' G = 1: the
fraction of gradient steps done), ``batch_prop = (i mod G) / (G - 1)`` (0 for G =
1), both counting critic-only steps too; ``dormancy`` from each network's
activations on the batch (the actor on the batch's observations, each critic on
its observations and actions); ``layer_prop`` by depth within each network;
OPEN's noise on the actor's leaves only (the config's ``noise_mask``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lopt.envs.registry import make_vec_env
from lopt.optim.optimizer import Optimizer
from lopt.rl import networks
from lopt.rl.algorithm import TrainState, Transition
from lopt.rl.offpolicy import (
    OffPolicyAlgorithm,
    ReplayConfig,
    example_transition,
    flat,
    item_buffer,
    learn_steps,
    polyak,
    select,
    stored,
)
from lopt.rl.optimizer_step import gradient_step


class UnsupportedActionsError(ValueError):
    """An environment whose actions an algorithm cannot take."""


@dataclasses.dataclass(frozen=True)
class ContinuousConfig(ReplayConfig):
    """Settings shared by SAC and TD3; defaults are CleanRL's MuJoCo settings
    (``sac_continuous_action.py``, ``td3_continuous_action.py``)."""

    env: str = "classic/pendulum"
    total_timesteps: int = 1_000_000
    num_envs: int = 1
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 5_000
    tau: float = 0.005
    hidden_size: int = 256
    max_grad_norm: float | None = None
    """CleanRL does not clip SAC's or TD3's gradients"""
    policy_frequency: int = 1
    """gradient steps per actor step (TD3's delayed actor updates)"""

    def __post_init__(self):
        self.require_counts("policy_frequency")
        super().__post_init__()


def continuous_env(config: ContinuousConfig, name: str) -> tuple[Any, Any]:
    """The batch of environments of SAC or TD3 (raw observations and rewards: the
    buffer keeps them); a clear error for discrete actions."""
    env, env_params = make_vec_env(
        config.env, config.num_envs, config.gamma, normalize=False
    )
    if not env.continuous:
        raise UnsupportedActionsError(
            f"{config.env} has discrete actions; {name} acts in continuous ones "
            "(use ppo, dqn, iqn, pqn or rainbow)"
        )
    return env, env_params


class TwinCritic(nn.Module):
    """Two Q-networks ``q_0``, ``q_1``, each an :class:`~lopt.rl.networks.MLP` on
    ``concat(obs, action)``: ``(obs (B, D), action (B, A)) -> ((q_0, q_1) each
    (B,), activations)``."""

    hidden_size: int = 256
    activation: str = "relu"
    num_hidden_layers: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array):
        x = jnp.concatenate([obs, action], axis=-1)
        values, recorded = [], {}
        for i in range(2):
            q = networks.MLP(
                1,
                self.hidden_size,
                self.activation,
                self.num_hidden_layers,
                name=f"q_{i}",
            )
            value, acts = q(x)
            values.append(value[..., 0])
            recorded[f"q_{i}"] = acts["params"]
        return tuple(values), {"params": recorded}


def twin_critic_loss(q_0: jax.Array, q_1: jax.Array, target: jax.Array) -> jax.Array:
    """``mean((q_0 - y)^2) + mean((q_1 - y)^2)``, ``y`` a constant (CleanRL's
    ``qf1_loss + qf2_loss``). All ``(B,)``."""
    target = jax.lax.stop_gradient(target)
    return jnp.mean(jnp.square(q_0 - target)) + jnp.mean(jnp.square(q_1 - target))


class Networks(NamedTuple):
    """An actor MLP and twin critics, and how to build the parameter tree."""

    actor: networks.MLP
    critic: TwinCritic
    init: Callable[[jax.Array, jax.Array, jax.Array], dict]
    """(key, obs (1, D), action (1, A)) -> ``{"actor": ..., "critic": ...}``"""


def actor_and_critics(config: ContinuousConfig, actor_outputs: int) -> Networks:
    """An actor with ``actor_outputs`` outputs and twin critics, both
    ``num_hidden_layers`` x ``hidden_size`` with the config's activation."""
    layers = (config.hidden_size, config.activation, config.num_hidden_layers)
    actor = networks.MLP(actor_outputs, *layers)
    critic = TwinCritic(*layers)

    def init(key, obs, action):
        key_actor, key_critic = jax.random.split(key)
        return {
            "actor": actor.init(key_actor, obs),
            "critic": critic.init(key_critic, obs, action),
        }

    return Networks(actor, critic, init)


def critic_loss(
    critic: TwinCritic,
    params: dict,
    target: dict,
    batch: Transition,
    next_action: jax.Array,
    bootstrap: Callable[[jax.Array, jax.Array], jax.Array],
) -> tuple[jax.Array, jax.Array, dict]:
    """The twin critics' loss on ``batch`` against ``y = bootstrap(q'_0, q'_1)``,
    the target critics' values of ``(next_obs, next_action)``.

    Returns:
      ``(loss, mean of min(q_0, q_1), the critics' activations)``.
    """
    next_q, _ = critic.apply(target["critic"], batch.next_obs, next_action)
    y = bootstrap(*next_q)
    (q_0, q_1), activations = critic.apply(params["critic"], batch.obs, batch.action)
    loss = twin_critic_loss(q_0, q_1, y)
    return loss, jnp.mean(jnp.minimum(q_0, q_1)), activations


class ActorCritic(NamedTuple):
    """What distinguishes SAC from TD3 in the loop."""

    init: Callable[[jax.Array, jax.Array, jax.Array], dict]
    """(key, dummy obs (1, D), dummy action (1, A)) -> the parameter tree"""
    act: Callable[[dict, jax.Array, jax.Array], jax.Array]
    """(params, obs (N, D), key) -> exploring actions (N, A) in [-1, 1]"""
    loss: Callable[..., tuple[jax.Array, tuple[dict, dict]]]
    """(params, target_params, batch, key, actor_step) -> (loss, (metrics,
    activations))"""
    target_names: tuple[str, ...]
    """the subtrees with target networks"""


class ContinuousState(NamedTuple):
    """SAC's and TD3's own state (:attr:`TrainState.extra`)."""

    target_params: dict  # {name: params} for ``target_names``
    buffer: Any  # a flashbax item buffer's state


def make_continuous_learner(
    config: ContinuousConfig,
    optimizer: Optimizer,
    agent: ActorCritic,
    env: tuple[Any, Any],
) -> OffPolicyAlgorithm:
    """The loop of the module docstring around SAC's or TD3's ``agent``."""
    env, env_params = env
    action_size = env.action_size(env_params)
    buffer_fns = item_buffer(config)

    def init_agent(key, obs):
        action = jnp.zeros((action_size,), jnp.float32)
        params = agent.init(key, jnp.zeros((1, *obs.shape[1:])), action[None])
        target = {name: params[name] for name in agent.target_names}
        buffer = buffer_fns.init(example_transition(obs, action))
        return params, ContinuousState(target, buffer)

    # ACT -------------------------------------------------------------------------
    def act(state: TrainState, obs, key):
        key_random, key_policy = jax.random.split(key)
        warming_up = state.update * config.frames_per_update < config.learning_starts
        uniform = jax.random.uniform(
            key_random, (obs.shape[0], action_size), minval=-1.0, maxval=1.0
        )
        policy = agent.act(state.params, obs, key_policy)
        return jnp.where(warming_up, uniform, policy), {}

    # LEARN -----------------------------------------------------------------------
    def sampled_step(tx, buffer, carry):
        params, opt_state, iteration, target, key = carry
        key, key_sample, key_loss, key_opt = jax.random.split(key, 4)
        batch = buffer_fns.sample(buffer, key_sample).experience
        actor_step = iteration % config.policy_frequency == 0
        (new, opt_state, iteration), metrics = gradient_step(
            config,
            tx,
            lambda p: agent.loss(p, target, batch, key_loss, actor_step),
            (params, opt_state, iteration),
            key_opt,
        )
        # Delayed actor: only the critic moves on critic-only steps.
        new = {
            name: value if name == "critic" else select(actor_step, value, params[name])
            for name, value in new.items()
        }
        target = select(
            actor_step,
            {n: polyak(new[n], target[n], config.tau) for n in target},
            target,
        )
        return (new, opt_state, iteration, target, key), metrics

    def learn(state: TrainState, traj: Transition, key):
        tx = algorithm.build_tx(state.opt_params)
        target, buffer = state.extra
        buffer = buffer_fns.add(buffer, flat(stored(traj)))
        carry = (state.params, state.opt_state, state.iteration, target, key)
        (params, opt_state, iteration, target, _), metrics = learn_steps(
            config, state.update, functools.partial(sampled_step, tx, buffer), carry
        )
        state = state._replace(
            params=params,
            opt_state=opt_state,
            iteration=iteration,
            extra=ContinuousState(target, buffer),
        )
        return state, metrics

    algorithm = OffPolicyAlgorithm(
        config, optimizer, env, env_params, init_agent, act, learn
    )
    return algorithm
