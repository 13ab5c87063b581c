"""PQN, parallelised Q-learning (Gallici et al. 2025), any optimizer.

No replay buffer and no target network: ``num_envs`` environments run
``num_steps`` epsilon-greedy steps with the current Q-network (a LayerNorm MLP),
Q(lambda) returns are computed over the rollout, and the network regresses
``0.5 * (Q(s, a) - G)^2`` for ``update_epochs`` epochs of ``num_minibatches``
shuffled minibatches, as PPO does. Epsilon decays linearly from ``start_e`` to
``end_e`` over the first ``exploration_fraction * total_timesteps`` frames.
Settings follow purejaxql (``pqn_gymnax.py``, ``pqn_minatar.py``), with an MLP in
place of its MinAtar CNN, and Adam in place of its RAdam.

``make_train(config, optimizer)`` returns ``train(key, optimizer_params)``, one pure
function vmappable over ``key`` and ``optimizer_params``.

OPEN's extra arguments are PPO's (:mod:`lopt.rl.progress`), with U rollouts, E
epochs and M minibatches:

- ``training_prop = floor(i / (M E)) / (U - 1)`` after i gradient steps: the
  index of the current rollout over U - 1;
- ``batch_prop = ((i // M) mod E) / (E - 1)``: the epoch within the rollout;
- ``dormancy``: from the Q-network's activations on the minibatch;
- noise: off by default (``noise_on``, see :mod:`lopt.rl.dqn`);
- ``layer_prop``: ``Dense_0`` (with its LayerNorm), ``Dense_1``, head.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt.optim.family import Optimizer
from lopt.rl import networks, progress
from lopt.rl.qnetworks import (
    Learner,
    chosen,
    epsilon,
    epsilon_greedy,
    make_discrete_env,
    optimizer_step,
)


@dataclasses.dataclass(frozen=True)
class PQNConfig:
    """PQN settings; defaults are purejaxql's CartPole ones (``pqn_cartpole.yaml``)."""

    env: str = "cartpole"
    """environment name or alias (see ``lopt.envs.registry``)"""
    total_timesteps: int = 500_000
    num_envs: int = 32
    num_steps: int = 64
    """rollout length per environment and update"""
    update_epochs: int = 4
    num_minibatches: int = 16
    gamma: float = 0.99
    q_lambda: float = 0.95
    """lambda of the Q(lambda) returns"""
    start_e: float = 1.0
    end_e: float = 0.2
    exploration_fraction: float = 0.2
    """fraction of total_timesteps over which epsilon decays from start_e to end_e"""
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (returns are logged raw)"""
    hidden_size: int = 256
    num_hidden: int = 2
    max_grad_norm: float | None = 10.0
    """global-norm clip of the Q-network's gradient (None: none)"""
    noise_on: bool = False
    """OPEN's learned noise on the Q-network's parameters (off: no noise)"""

    def __post_init__(self):
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one rollout "
                f"(num_envs * num_steps = {self.num_envs * self.num_steps})"
            )
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"the batch of {self.batch_size} samples does not split into "
                f"{self.num_minibatches} minibatches"
            )
        if not (0.0 <= self.end_e <= 1.0 and 0.0 <= self.start_e <= 1.0):
            raise ValueError("start_e and end_e must be probabilities in [0, 1]")
        if not 0.0 <= self.exploration_fraction <= 1.0:
            raise ValueError("exploration_fraction must be in [0, 1]")

    @property
    def num_updates(self) -> int:
        """Rollouts (updates) in the run."""
        return self.total_timesteps // self.num_steps // self.num_envs

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def frames_per_update(self) -> int:
        return self.batch_size

    @property
    def steps_per_update(self) -> int:
        return self.update_epochs * self.num_minibatches

    @property
    def num_optimizer_steps(self) -> int:
        return self.num_updates * self.steps_per_update

    @property
    def anneal_frames(self) -> float:
        return self.exploration_fraction * self.total_timesteps


def q_lambda_returns(
    rewards: jax.Array,
    dones: jax.Array,
    next_values: jax.Array,
    gamma: float,
    q_lambda: float,
) -> jax.Array:
    """Peng's Q(lambda) returns of a rollout (PQN's targets).

    ``G_t = r_t + gamma (1 - d_t) ((1 - lambda) V_{t+1} + lambda G_{t+1})``, with
    ``G_{T-1} = r_{T-1} + gamma (1 - d_{T-1}) V_T``, where ``V_{t+1}`` is
    ``max_a Q(s_{t+1}, a)``.

    Args:
      rewards, dones: shape ``(T, ...)``; ``dones[t]``: the episode ended at step
        t, which cuts the bootstrap and the recursion there.
      next_values: shape ``(T, ...)``: ``V_{t+1}``, the greedy value of the
        observation after step t.

    Returns:
      ``G``, shape ``(T, ...)``.
    """
    not_done = 1.0 - dones.astype(rewards.dtype)
    last = rewards[-1] + gamma * not_done[-1] * next_values[-1]

    def backward(following, inputs):
        reward, mask, value = inputs
        ret = reward + gamma * mask * ((1 - q_lambda) * value + q_lambda * following)
        return ret, ret

    _, earlier = jax.lax.scan(
        backward, last, (rewards[:-1], not_done[:-1], next_values[:-1]), reverse=True
    )
    return jnp.concatenate([earlier, last[None]], axis=0)


class PQNState(NamedTuple):
    params: Any  # the Q-network's flax variables
    opt_state: Any
    env_state: Any  # leaves with leading axis num_envs
    obs: jax.Array  # shape=(num_envs, obs_dim)
    frames: jax.Array  # shape=(), int32: environment frames collected
    iteration: jax.Array  # shape=(), int32: gradient steps done
    key: jax.Array


class Rollout(NamedTuple):
    obs: jax.Array  # shape=(T, num_envs, obs_dim)
    action: jax.Array  # shape=(T, num_envs)
    reward: jax.Array  # shape=(T, num_envs), scaled
    done: jax.Array  # shape=(T, num_envs)
    value: jax.Array  # shape=(T, num_envs): max_a Q(s_t, a)
    returned_episode_return: jax.Array  # shape=(T, num_envs)


class Minibatch(NamedTuple):
    obs: jax.Array
    action: jax.Array
    target: jax.Array


def make_pqn(config: PQNConfig, optimizer: Optimizer) -> Learner:
    """Builds PQN for ``config`` with ``optimizer``; see the module docstring."""
    env, env_params = make_discrete_env(config.env)
    obs_shape = env.observation_shape(env_params)
    network = networks.MLP(
        env.num_actions(env_params),
        config.hidden_size,
        "relu",
        num_hidden=config.num_hidden,
        layer_norm=True,
    )
    vmap_reset = jax.vmap(env.reset, in_axes=(0, None))
    vmap_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def build_tx(opt_params):
        return optimizer.build(opt_params, config.num_optimizer_steps)

    # INIT --------------------------------------------------------------------
    def init(key: jax.Array, opt_params: Any) -> PQNState:
        key, key_network, key_env = jax.random.split(key, 3)
        params = network.init(key_network, jnp.zeros((1, *obs_shape)))
        obs, env_state = vmap_reset(
            jax.random.split(key_env, config.num_envs), env_params
        )
        zero = jnp.zeros((), jnp.int32)
        return PQNState(
            params, build_tx(opt_params).init(params), env_state, obs, zero, zero, key
        )

    # COLLECT TRAJECTORIES ----------------------------------------------------
    def env_step(params, eps, carry, _):
        env_state, obs, key = carry
        key, key_action, key_env = jax.random.split(key, 3)
        q_values, _ = network.apply(params, obs)
        action = epsilon_greedy(key_action, q_values, eps)
        next_obs, env_state, reward, terminated, truncated, info = vmap_step(
            jax.random.split(key_env, config.num_envs), env_state, action, env_params
        )
        rollout = Rollout(
            obs=obs,
            action=action,
            reward=config.reward_scale * reward.astype(jnp.float32),
            done=jnp.logical_or(terminated, truncated),
            value=jnp.max(q_values, axis=-1),
            returned_episode_return=info["returned_episode_return"],
        )
        return (env_state, next_obs, key), rollout

    # UPDATE THE Q-NETWORK ----------------------------------------------------
    def loss_fn(params, batch: Minibatch):
        q_values, activations = network.apply(params, batch.obs)
        td = chosen(q_values, batch.action) - batch.target
        return 0.5 * jnp.mean(jnp.square(td)), activations

    def minibatch_step(tx, carry, batch: Minibatch):
        params, opt_state, iteration, key = carry
        key, key_opt = jax.random.split(key)
        (loss, activations), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch
        )
        params, opt_state, metrics = optimizer_step(
            tx,
            params,
            opt_state,
            grads,
            activations,
            key_opt,
            training_prop=progress.training_prop(
                iteration,
                config.num_minibatches,
                config.update_epochs,
                config.num_updates,
            ),
            batch_prop=progress.batch_prop(
                iteration, config.num_minibatches, config.update_epochs
            ),
            max_grad_norm=config.max_grad_norm,
            loss=loss,
        )
        return (params, opt_state, iteration + 1, key), {"loss": loss, **metrics}

    def epoch_step(tx, samples: Minibatch, carry, _):
        params, opt_state, iteration, key = carry
        key, key_perm = jax.random.split(key)
        perm = jax.random.permutation(key_perm, config.batch_size)
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape(config.num_minibatches, -1, *x.shape[1:]), samples
        )
        return jax.lax.scan(
            functools.partial(minibatch_step, tx),
            (params, opt_state, iteration, key),
            minibatches,
        )

    def update_step(state: PQNState, opt_params: Any):
        tx = build_tx(opt_params)
        eps = epsilon(state.frames, config.start_e, config.end_e, config.anneal_frames)
        (env_state, obs, key), traj = jax.lax.scan(
            functools.partial(env_step, state.params, eps),
            (state.env_state, state.obs, state.key),
            None,
            config.num_steps,
        )
        last_q, _ = network.apply(state.params, obs)
        next_values = jnp.concatenate(
            [traj.value[1:], jnp.max(last_q, axis=-1)[None]], axis=0
        )
        targets = q_lambda_returns(
            traj.reward, traj.done, next_values, config.gamma, config.q_lambda
        )
        samples = jax.tree.map(
            lambda x: x.reshape(config.batch_size, *x.shape[2:]),
            Minibatch(traj.obs, traj.action, targets),
        )
        key, key_epochs = jax.random.split(key)
        (params, opt_state, iteration, _), step_metrics = jax.lax.scan(
            functools.partial(epoch_step, tx, samples),
            (state.params, state.opt_state, state.iteration, key_epochs),
            None,
            config.update_epochs,
        )
        metrics = {k: jnp.mean(v) for k, v in step_metrics.items()}
        metrics["return"] = jnp.mean(traj.returned_episode_return[-1])
        metrics["epsilon"] = eps
        new_state = PQNState(
            params,
            opt_state,
            env_state,
            obs,
            state.frames + config.frames_per_update,
            iteration,
            key,
        )
        return new_state, metrics

    def run(state: PQNState, opt_params: Any, num_updates: int):
        """``num_updates`` updates from ``state``; metrics stacked per update."""
        return jax.lax.scan(
            lambda s, _: update_step(s, opt_params), state, None, num_updates
        )

    def train(key: jax.Array, opt_params: Any):
        """A whole run. Vmappable over ``key`` and ``opt_params``.

        Returns:
          ``(final_state, metrics)``; each metric has shape ``(num_updates,)``:
          ``return`` (mean over environments of the last completed episode's
          raw return at the end of each rollout, the fitness at the last one),
          ``loss``, ``dormant_fraction``, ``update_magnitude`` (means over the
          update's gradient steps), ``epsilon``.
        """
        return run(init(key, opt_params), opt_params, config.num_updates)

    return Learner(init=init, run=run, train=train, config=config)


def make_train(config: PQNConfig, optimizer: Optimizer):
    """``train(key, optimizer_params) -> (final_state, metrics)``; see
    :func:`make_pqn`."""
    return make_pqn(config, optimizer).train
