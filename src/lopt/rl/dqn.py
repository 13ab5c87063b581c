"""DQN (Mnih et al. 2015) with a replay buffer and a target network, any optimizer.

``make_train(config, optimizer)`` returns ``train(key, optimizer_params)``: one pure
function for a whole run, vmappable over ``key`` and ``optimizer_params``, as
:func:`lopt.rl.ppo.make_train`. The replay loop here is shared with IQN
(:mod:`lopt.rl.iqn`), which swaps in its network and loss.

One *update* steps ``num_envs`` environments ``train_frequency`` times with
epsilon-greedy actions (epsilon decays linearly over the first
``exploration_fraction * total_timesteps`` frames), stores the transitions, and,
once ``learning_starts`` frames have been collected, takes ``gradient_steps``
gradient steps on batches drawn uniformly from the buffer. The target network
moves toward the online one, ``target <- tau * online + (1 - tau) * target``
(``tau = 1``: a copy), each time the frame count passes a multiple of
``target_update_interval``. Episodes that end by truncation are treated as
terminal (no bootstrap), as in PureJaxRL.

OPEN's extra arguments, over the U updates that learn, each of G gradient steps:

- ``training_prop = floor(i / G) / (U - 1)`` after i gradient steps: the fraction
  of the learning updates done (with G = 1, of the gradient steps);
- ``batch_prop = (i mod G) / (G - 1)``: the position within the update's gradient
  steps, 0 when G = 1;
- ``dormancy``: from the online Q-network's activations on the sampled batch;
- noise: decided by the optimizer's ``noise_mask``; a Q-network has no
  ``"actor"`` subtree, so OPEN's default mask adds none. ``noise_on`` selects a
  mask over the whole Q-network (:func:`lopt.rl.algorithms.noise_mask`);
- ``layer_prop``: by depth in the Q-network's tree, ``Dense_0`` to the head.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.optim.family import Optimizer
from lopt.rl import networks, progress, replay
from lopt.rl.qnetworks import (
    METRICS,
    Learner,
    chosen,
    epsilon,
    epsilon_greedy,
    make_discrete_env,
    optimizer_step,
)


@dataclasses.dataclass(frozen=True)
class ReplayQConfig:
    """Settings shared by the replay-based Q-learners (DQN, IQN); frames are
    environment steps summed over the parallel environments."""

    env: str = "cartpole"
    """environment name or alias (see ``lopt.envs.registry``)"""
    total_timesteps: int = 500_000
    num_envs: int = 10
    train_frequency: int = 1
    """vector-environment steps (of num_envs frames each) per update"""
    gradient_steps: int = 1
    """gradient steps per update once learning has started"""
    buffer_size: int = 10_000
    """transitions the replay buffer holds"""
    batch_size: int = 128
    learning_starts: int = 10_000
    """frames collected before the first gradient step"""
    target_update_interval: int = 500
    """frames between target-network updates"""
    tau: float = 1.0
    """target-network step size: 1 copies the online network (a hard update)"""
    gamma: float = 0.99
    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.5
    """fraction of total_timesteps over which epsilon decays from start_e to end_e"""
    hidden_size: int = 64
    num_hidden: int = 2
    """hidden layers of the Q-network (IQN: of its state embedding, plus one
    after the quantile embedding)"""
    max_grad_norm: float | None = 10.0
    """global-norm clip of the Q-network's gradient (None: none); 10 as SB3's DQN"""
    noise_on: bool = False
    """OPEN's learned noise on the Q-network's parameters (off: no noise)"""

    def __post_init__(self):
        counts = ("num_envs", "train_frequency", "gradient_steps", "batch_size")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one update "
                f"(num_envs * train_frequency = {self.frames_per_update} frames)"
            )
        if self.num_learning_updates < 1:
            raise ValueError(
                f"learning_starts={self.learning_starts} leaves no update that "
                f"learns within total_timesteps={self.total_timesteps}; raise "
                "total_timesteps (--total-timesteps) above it"
            )
        if self.buffer_size < self.frames_per_update:
            raise ValueError(
                f"buffer_size={self.buffer_size} is smaller than one update's "
                f"{self.frames_per_update} transitions"
            )
        for name in ("num_envs", "train_frequency", "gradient_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.target_update_interval < 1:
            raise ValueError("target_update_interval must be at least 1 frame")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if not (0.0 <= self.end_e <= 1.0 and 0.0 <= self.start_e <= 1.0):
            raise ValueError("start_e and end_e must be probabilities in [0, 1]")
        if not 0.0 <= self.exploration_fraction <= 1.0:
            raise ValueError("exploration_fraction must be in [0, 1]")

    @property
    def frames_per_update(self) -> int:
        return self.num_envs * self.train_frequency

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.frames_per_update

    @property
    def first_learning_update(self) -> int:
        """Index of the first update whose frames reach ``learning_starts``."""
        return max(0, -(-self.learning_starts // self.frames_per_update) - 1)

    @property
    def num_learning_updates(self) -> int:
        return self.num_updates - self.first_learning_update

    @property
    def steps_per_update(self) -> int:
        return self.gradient_steps

    @property
    def num_optimizer_steps(self) -> int:
        return self.num_learning_updates * self.gradient_steps

    @property
    def anneal_frames(self) -> float:
        return self.exploration_fraction * self.total_timesteps


@dataclasses.dataclass(frozen=True)
class DQNConfig(ReplayQConfig):
    """DQN settings; defaults are CleanRL's ``dqn.py`` on CartPole, with 10
    environments as PureJaxRL (one gradient step per 10 frames, as both)."""


class Transition(NamedTuple):
    obs: jax.Array  # shape=(..., obs_dim)
    action: jax.Array  # shape=(...), int32
    reward: jax.Array  # shape=(...)
    done: jax.Array  # shape=(...), bool: terminated or truncated
    next_obs: jax.Array  # shape=(..., obs_dim): after auto-reset where done


class ReplayState(NamedTuple):
    params: Any  # the online Q-network's flax variables
    target_params: Any
    opt_state: Any
    buffer: replay.Replay
    env_state: Any  # leaves with leading axis num_envs
    obs: jax.Array  # shape=(num_envs, obs_dim)
    frames: jax.Array  # shape=(), int32: environment frames collected
    iteration: jax.Array  # shape=(), int32: gradient steps done
    key: jax.Array


class QFunctions(NamedTuple):
    """What distinguishes one replay-based Q-learner from another."""

    init: Callable[[jax.Array, jax.Array], Any]
    """(key, dummy_obs of shape (1, obs_dim)) -> the network's variables"""
    act_values: Callable[[Any, jax.Array, jax.Array], jax.Array]
    """(params, obs (num_envs, obs_dim), key) -> Q-values (num_envs, num_actions)"""
    loss: Callable[[Any, Any, Transition, jax.Array], tuple[jax.Array, Any]]
    """(params, target_params, batch, key) -> (loss, recorded activations)"""


def make_replay_learner(
    config: ReplayQConfig, optimizer: Optimizer, q: QFunctions, env_pair=None
) -> Learner:
    """The replay loop of the module docstring around the Q-learner ``q``."""
    env, env_params = (
        env_pair if env_pair is not None else make_discrete_env(config.env)
    )
    obs_shape = env.observation_shape(env_params)
    vmap_reset = jax.vmap(env.reset, in_axes=(0, None))
    vmap_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def build_tx(opt_params):
        return optimizer.build(opt_params, config.num_optimizer_steps)

    # INIT --------------------------------------------------------------------
    def init(key: jax.Array, opt_params: Any) -> ReplayState:
        key, key_network, key_env = jax.random.split(key, 3)
        params = q.init(key_network, jnp.zeros((1, *obs_shape)))
        obs, env_state = vmap_reset(
            jax.random.split(key_env, config.num_envs), env_params
        )
        example = Transition(
            obs=obs[0],
            action=jnp.zeros((), jnp.int32),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), bool),
            next_obs=obs[0],
        )
        zero = jnp.zeros((), jnp.int32)
        return ReplayState(
            params=params,
            target_params=params,
            opt_state=build_tx(opt_params).init(params),
            buffer=replay.init(example, config.buffer_size),
            env_state=env_state,
            obs=obs,
            frames=zero,
            iteration=zero,
            key=key,
        )

    # COLLECT TRANSITIONS -----------------------------------------------------
    def env_step(params, eps, carry, _):
        env_state, obs, key = carry
        key, key_q, key_action, key_env = jax.random.split(key, 4)
        action = epsilon_greedy(key_action, q.act_values(params, obs, key_q), eps)
        next_obs, env_state, reward, terminated, truncated, info = vmap_step(
            jax.random.split(key_env, config.num_envs), env_state, action, env_params
        )
        transition = Transition(
            obs=obs,
            action=action,
            reward=reward.astype(jnp.float32),
            done=jnp.logical_or(terminated, truncated),
            next_obs=next_obs,
        )
        return (env_state, next_obs, key), (transition, info["returned_episode_return"])

    # UPDATE THE Q-NETWORK ----------------------------------------------------
    def gradient_step(tx, buffer, target_params, carry, _):
        params, opt_state, iteration, key = carry
        key, key_sample, key_loss, key_opt = jax.random.split(key, 4)
        batch = replay.sample(buffer, key_sample, config.batch_size)
        (loss, activations), grads = jax.value_and_grad(q.loss, has_aux=True)(
            params, target_params, batch, key_loss
        )
        params, opt_state, metrics = optimizer_step(
            tx,
            params,
            opt_state,
            grads,
            activations,
            key_opt,
            training_prop=progress.training_prop(
                iteration, 1, config.gradient_steps, config.num_learning_updates
            ),
            batch_prop=progress.batch_prop(iteration, 1, config.gradient_steps),
            max_grad_norm=config.max_grad_norm,
            loss=loss,
        )
        return (params, opt_state, iteration + 1, key), {"loss": loss, **metrics}

    def learn(tx, buffer, target_params, carry):
        carry, metrics = jax.lax.scan(
            functools.partial(gradient_step, tx, buffer, target_params),
            carry,
            None,
            config.gradient_steps,
        )
        return carry, {k: jnp.mean(v) for k, v in metrics.items()}

    def skip(carry):
        return carry, {k: jnp.zeros((), jnp.float32) for k in METRICS}

    def update_step(state: ReplayState, opt_params: Any):
        tx = build_tx(opt_params)
        eps = epsilon(state.frames, config.start_e, config.end_e, config.anneal_frames)
        (env_state, obs, key), (traj, returns) = jax.lax.scan(
            functools.partial(env_step, state.params, eps),
            (state.env_state, state.obs, state.key),
            None,
            config.train_frequency,
        )
        buffer = replay.add(
            state.buffer, jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), traj)
        )
        frames = state.frames + config.frames_per_update
        key, key_learn = jax.random.split(key)
        (params, opt_state, iteration, _), metrics = jax.lax.cond(
            frames >= config.learning_starts,
            functools.partial(learn, tx, buffer, state.target_params),
            skip,
            (state.params, state.opt_state, state.iteration, key_learn),
        )
        crossed = (frames // config.target_update_interval) > (
            state.frames // config.target_update_interval
        )
        moved = optax.incremental_update(params, state.target_params, config.tau)
        target_params = jax.tree.map(
            lambda m, t: jnp.where(crossed, m, t), moved, state.target_params
        )
        metrics["return"] = jnp.mean(returns[-1])
        metrics["epsilon"] = eps
        new_state = ReplayState(
            params,
            target_params,
            opt_state,
            buffer,
            env_state,
            obs,
            frames,
            iteration,
            key,
        )
        return new_state, metrics

    def run(state: ReplayState, opt_params: Any, num_updates: int):
        """``num_updates`` updates from ``state``; metrics stacked per update."""
        return jax.lax.scan(
            lambda s, _: update_step(s, opt_params), state, None, num_updates
        )

    def train(key: jax.Array, opt_params: Any):
        """A whole run. Vmappable over ``key`` and ``opt_params``.

        Returns:
          ``(final_state, metrics)``; each metric has shape ``(num_updates,)``:
          ``return`` (mean over environments of the last completed episode's
          raw return at the end of each update, the fitness at the last one),
          ``loss``, ``dormant_fraction`` and ``update_magnitude`` (means over
          the update's gradient steps; 0 before learning starts), ``epsilon``.
        """
        return run(init(key, opt_params), opt_params, config.num_updates)

    return Learner(init=init, run=run, train=train, config=config)


def dqn_loss(network: networks.MLP, gamma: float):
    """Mean squared TD error against ``r + gamma * max_a' Q_target(s', a')``."""

    def loss(params, target_params, batch: Transition, key):
        del key
        q_values, activations = network.apply(params, batch.obs)
        next_q, _ = network.apply(target_params, batch.next_obs)
        not_done = 1.0 - batch.done.astype(jnp.float32)
        target = batch.reward + gamma * not_done * jnp.max(next_q, axis=-1)
        td = chosen(q_values, batch.action) - jax.lax.stop_gradient(target)
        return jnp.mean(jnp.square(td)), activations

    return loss


def make_dqn(config: DQNConfig, optimizer: Optimizer) -> Learner:
    """Builds DQN for ``config`` with ``optimizer``; see the module docstring."""
    env, env_params = make_discrete_env(config.env)
    network = networks.MLP(
        env.num_actions(env_params),
        config.hidden_size,
        "relu",
        num_hidden=config.num_hidden,
    )
    q = QFunctions(
        init=network.init,
        act_values=lambda params, obs, key: network.apply(params, obs)[0],
        loss=dqn_loss(network, config.gamma),
    )
    return make_replay_learner(config, optimizer, q, (env, env_params))


def make_train(config: DQNConfig, optimizer: Optimizer):
    """``train(key, optimizer_params) -> (final_state, metrics)``; see
    :func:`make_dqn`."""
    return make_dqn(config, optimizer).train
