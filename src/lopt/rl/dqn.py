"""DQN (Mnih et al. 2015) with a replay buffer and a target network, any optimizer.

``make_dqn(config, optimizer)`` is an :class:`~lopt.rl.algorithm.Algorithm`, as
PPO is. The replay learner here is shared with IQN (:mod:`lopt.rl.iqn`), which
swaps in its network and loss.

One *update* steps ``num_envs`` environments ``train_frequency`` times with
epsilon-greedy actions (epsilon decays linearly over the first
``exploration_fraction * total_timesteps`` frames), stores the transitions, and,
once ``learning_starts`` frames have been collected, takes ``gradient_steps``
gradient steps on batches drawn uniformly from the buffer. The target network
moves toward the online one, ``target <- tau * online + (1 - tau) * target``
(``tau = 1``: a copy), each time the frame count passes a multiple of
``target_update_interval``. Episodes that end by truncation are treated as
terminal (no bootstrap), as in PureJaxRL. Metrics per update: ``return``,
``loss``, ``dormant_fraction``, ``update_magnitude`` (means over the update's
gradient steps; 0 before learning starts) and ``epsilon``.

OPEN's extra arguments, over the U updates that learn, each of G gradient steps:

- ``training_prop = floor(i / G) / (U - 1)`` after i gradient steps: the fraction
  of the learning updates done (with G = 1, of the gradient steps);
- ``batch_prop = (i mod G) / (G - 1)``: the position within the update's gradient
  steps, 0 when G = 1;
- ``dormancy``: from the online Q-network's activations on the sampled batch;
- noise: decided by the optimizer's ``noise_mask``; a Q-network has no
  ``"actor"`` subtree, so OPEN's default mask adds none. ``noise_on`` selects a
  mask over the whole Q-network (:meth:`QConfig.noise_mask`);
- ``layer_prop``: by depth in the Q-network's tree, ``Dense_0`` to the head.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt.envs.registry import make_vec_env
from lopt.optim import tree_paths
from lopt.optim.optimizer import Optimizer
from lopt.rl import networks, replay
from lopt.rl.algorithm import Algorithm, AlgorithmConfig, TrainState, Transition
from lopt.rl.exploration import epsilon, epsilon_greedy
from lopt.rl.offpolicy import (
    ReplayConfig,
    example_transition,
    flat,
    learn_steps,
    periodic_target,
)
from lopt.rl.optimizer_step import gradient_step


class UnsupportedEnvironmentError(ValueError):
    """An environment whose actions a value-based loop cannot take."""


@dataclasses.dataclass(frozen=True)
class QConfig(AlgorithmConfig):
    """What every value-based loop (DQN, IQN, PQN) adds: epsilon-greedy
    exploration and OPEN's noise switch."""

    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.5
    """fraction of total_timesteps over which epsilon decays from start_e to end_e"""
    max_grad_norm: float | None = 10.0
    """global-norm clip of the Q-network's gradient (None: none); 10 as SB3's DQN"""
    noise_on: bool = False
    """OPEN's learned noise on the Q-network's parameters (off: no noise)"""

    def __post_init__(self):
        super().__post_init__()
        if not (0.0 <= self.end_e <= 1.0 and 0.0 <= self.start_e <= 1.0):
            raise ValueError("start_e and end_e must be probabilities in [0, 1]")
        if not 0.0 <= self.exploration_fraction <= 1.0:
            raise ValueError("exploration_fraction must be in [0, 1]")

    @property
    def anneal_frames(self) -> float:
        return self.exploration_fraction * self.total_timesteps

    def epsilon(self, update: jax.Array) -> jax.Array:
        """Epsilon for the update after ``update`` updates."""
        frames = update * self.frames_per_update
        return epsilon(frames, self.start_e, self.end_e, self.anneal_frames)

    def noise_mask(self) -> Callable[[Any], Any]:
        """The whole Q-network with ``noise_on``, else no parameter."""
        return tree_paths.prefix_mask(["params"] if self.noise_on else [])


def discrete_env(config: QConfig) -> tuple[Any, Any]:
    """The batch of environments of a value-based loop, which picks among
    discrete actions (a clear error for continuous ones)."""
    env, env_params = make_vec_env(config.env, config.num_envs, config.gamma)
    if env.continuous:
        raise UnsupportedEnvironmentError(
            f"{config.env} has continuous actions; DQN, IQN and PQN choose among "
            "discrete ones (use PPO)"
        )
    return env, env_params


@dataclasses.dataclass(frozen=True)
class ReplayQConfig(QConfig, ReplayConfig):
    """Settings shared by the replay-based Q-learners (DQN, IQN, Rainbow): the
    replay loop (:class:`~lopt.rl.offpolicy.ReplayConfig`) with epsilon-greedy
    exploration and a target network updated every ``target_update_interval``
    frames."""

    total_timesteps: int = 500_000
    num_envs: int = 10
    target_update_interval: int = 500
    """frames between target-network updates"""

    def __post_init__(self):
        super().__post_init__()
        if self.target_update_interval < 1:
            raise ValueError("target_update_interval must be at least 1 frame")


@dataclasses.dataclass(frozen=True)
class DQNConfig(ReplayQConfig):
    """DQN settings; defaults are CleanRL's ``dqn.py`` on CartPole, with 10
    environments as PureJaxRL (one gradient step per 10 frames, as both)."""


class QFunctions(NamedTuple):
    """What distinguishes one replay-based Q-learner from another."""

    init: Callable[[jax.Array, jax.Array], Any]
    """(key, dummy_obs of shape (1, *obs_shape)) -> the network's variables"""
    act_values: Callable[[Any, jax.Array, jax.Array], jax.Array]
    """(params, obs (num_envs, *obs_shape), key) -> Q-values (num_envs, actions)"""
    loss: Callable[[Any, Any, Transition, jax.Array], tuple[jax.Array, Any]]
    """(params, target_params, batch, key) -> (loss, recorded activations)"""


class ReplayState(NamedTuple):
    """A replay Q-learner's own state (:attr:`TrainState.extra`)."""

    target_params: Any
    buffer: Any  # lopt.rl.replay.Replay (DQN, IQN); a flashbax state (Rainbow)


def finish_q_update(
    config: ReplayQConfig,
    state: TrainState,
    learned: tuple[Any, Any, jax.Array],
    target_params: Any,
    buffer: Any,
    metrics: dict,
) -> tuple[TrainState, dict]:
    """The state after a replay Q-learner's update: the ``learned`` ``(params,
    opt_state, iteration)``, the target network moved if its interval passed,
    the buffer; ``epsilon`` added to the metrics."""
    params, opt_state, iteration = learned
    target_params = periodic_target(config, state.update, params, target_params)
    metrics["epsilon"] = config.epsilon(state.update)
    state = state._replace(
        params=params,
        opt_state=opt_state,
        iteration=iteration,
        extra=ReplayState(target_params, buffer),
    )
    return state, metrics


def make_replay_learner(
    config: ReplayQConfig, optimizer: Optimizer, q: QFunctions, env: tuple
) -> Algorithm:
    """The replay loop of the module docstring around the Q-learner ``q``."""
    env, env_params = env

    def init_agent(key, obs):
        params = q.init(key, jnp.zeros((1, *obs.shape[1:])))
        example = example_transition(obs, jnp.zeros((), jnp.int32))
        return params, ReplayState(params, replay.init(example, config.buffer_size))

    # ACT -------------------------------------------------------------------------
    def act(state: TrainState, obs, key_q, key_action):
        q_values = q.act_values(state.params, obs, key_q)
        return epsilon_greedy(key_action, q_values, config.epsilon(state.update)), {}

    # LEARN -----------------------------------------------------------------------
    def sampled_step(tx, buffer, target_params, carry):
        params, opt_state, iteration, key = carry
        key, key_sample, key_loss, key_opt = jax.random.split(key, 4)
        batch = replay.sample(buffer, key_sample, config.batch_size)

        def loss_fn(p):
            loss, activations = q.loss(p, target_params, batch, key_loss)
            return loss, ({"loss": loss}, activations)

        inner, metrics = gradient_step(
            config, tx, loss_fn, (params, opt_state, iteration), key_opt
        )
        return (*inner, key), metrics

    def learn(state: TrainState, traj: Transition, key):
        tx = algorithm.build_tx(state.opt_params)
        target_params, buffer = state.extra
        buffer = replay.add(buffer, flat(traj._replace(episode_return=None)))
        carry = (state.params, state.opt_state, state.iteration, key)
        step = functools.partial(sampled_step, tx, buffer, target_params)
        (*learned, _), metrics = learn_steps(config, state.update, step, carry)
        return finish_q_update(config, state, learned, target_params, buffer, metrics)

    pieces = (init_agent, act, learn)
    algorithm = Algorithm(
        config, optimizer, env, env_params, *pieces, act_keys=2, keep_next_obs=True
    )
    return algorithm


def dqn_loss(network: networks.MLP, gamma: float):
    """Mean squared TD error against ``r + gamma * max_a' Q_target(s', a')``."""

    def loss(params, target_params, batch: Transition, key):
        del key
        q_values, activations = network.apply(params, batch.obs)
        next_q, _ = network.apply(target_params, batch.next_obs)
        not_done = 1.0 - batch.done.astype(jnp.float32)
        target = batch.reward + gamma * not_done * jnp.max(next_q, axis=-1)
        td = networks.chosen(q_values, batch.action) - jax.lax.stop_gradient(target)
        return jnp.mean(jnp.square(td)), activations

    return loss


def make_dqn(
    config: DQNConfig, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """DQN for ``config`` with ``optimizer``; see the module docstring."""
    env, env_params = env or discrete_env(config)
    network = networks.MLP(
        env.num_actions(env_params),
        config.hidden_size,
        config.activation,
        num_hidden_layers=config.num_hidden_layers,
    )
    q = QFunctions(
        init=network.init,
        act_values=lambda params, obs, key: network.apply(params, obs)[0],
        loss=dqn_loss(network, config.gamma),
    )
    return make_replay_learner(config, optimizer, q, (env, env_params))
