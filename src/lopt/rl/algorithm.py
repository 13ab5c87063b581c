"""The one shape of every inner-loop algorithm (PPO, DQN, IQN, PQN).

An algorithm is a frozen config and three pieces of its own:

- ``init_agent(key, obs) -> (params, extra)``: its networks (and anything else it
  carries, e.g. DQN's target network and replay buffer);
- ``act(state, obs, *keys) -> (action, extras)``: how it acts while collecting,
  with ``extras`` whatever it must remember per step (PPO: value, log-prob);
- ``learn(state, traj, key) -> (state, metrics)``: what it does with one
  update's :class:`Transition`\\ s (PPO: GAE and epochs of minibatches).

Written once, here, for all of them: the start of a run (:meth:`Algorithm.init`),
one update (:meth:`Algorithm.update`: collect ``rollout_length`` steps of
``num_envs`` environments, then learn), :meth:`Algorithm.run` (a scan over
updates) and :meth:`Algorithm.train` (a whole run)::

    algorithm = make_algorithm(PPOConfig(env="breakout"), adam())
    state, metrics = jax.jit(algorithm.train)(jax.random.key(0), adam().params)
    # or in pieces: state = algorithm.init(key, opt_params)
    #               state, metrics = algorithm.run(state, num_updates)

``train(key, opt_params)`` is pure and vmappable over ``key`` (seeds) and over
``opt_params`` (a population of meta-parameters, a grid of learning rates): the
optimizer's parameters travel in the state, so ``run`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.optim import tree_paths
from lopt.optim.diagnostics import with_diagnostics
from lopt.optim.optimizer import Optimizer
from lopt.rl import networks


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig:
    """Settings every algorithm has; frames are environment steps summed over the
    parallel environments. Subclasses say how an update is shaped (the
    ``rollout_length``, ``num_epochs`` and ``steps_per_epoch`` properties)."""

    env: str = "cartpole"
    """environment name or alias (see ``lopt.envs.registry``)"""
    total_timesteps: int = 100_000
    """environment steps summed over the parallel environments"""
    num_envs: int = 4
    gamma: float = 0.99
    hidden_size: int = 64
    num_hidden_layers: int = 2
    """hidden layers of each network"""
    activation: str = "relu"
    max_grad_norm: float | None = 0.5
    """global-norm clip of the gradient, per network (None: no clipping)"""
    diagnostics: bool = False
    """also record how the optimizer's updates align with the gradient and its
    momenta, its learned noise, and sampled (gradient, update) pairs
    (:mod:`lopt.optim.diagnostics`); costs memory and time"""

    def __post_init__(self):
        self.require_counts("num_envs", "hidden_size", "total_timesteps")
        if self.num_hidden_layers < 0:
            raise ValueError(
                f"num_hidden_layers must be 0 or more, got {self.num_hidden_layers}"
            )
        if self.activation not in networks.ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose from "
                f"{sorted(networks.ACTIVATIONS)}"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(
                f"max_grad_norm must be positive (or None), got {self.max_grad_norm}"
            )
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one update "
                f"({self.frames_per_update} frames)"
            )

    def require_counts(self, *names: str) -> None:
        """Raises ``ValueError`` unless every setting in ``names`` is at least 1
        (checked before the sizes derived from them divide by them)."""
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )

    # The shape of an update, per algorithm.
    @property
    def rollout_length(self) -> int:
        """Steps of the batch of environments per update."""
        raise NotImplementedError

    @property
    def num_epochs(self) -> int:
        """Passes over an update's data (DQN: gradient steps, one batch each)."""
        raise NotImplementedError

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per pass (PPO: minibatches)."""
        raise NotImplementedError

    @property
    def first_learning_update(self) -> int:
        """Index of the first update that learns (DQN waits for its buffer)."""
        return 0

    # Derived, the same for all.
    @property
    def frames_per_update(self) -> int:
        return self.num_envs * self.rollout_length

    @property
    def num_updates(self) -> int:
        """Updates in the run."""
        return self.total_timesteps // self.frames_per_update

    @property
    def num_frames(self) -> int:
        """Environment frames the run takes: whole updates, at most
        ``total_timesteps``."""
        return self.num_updates * self.frames_per_update

    @property
    def steps_per_update(self) -> int:
        """Optimizer steps per update that learns."""
        return self.num_epochs * self.steps_per_epoch

    @property
    def num_learning_updates(self) -> int:
        return self.num_updates - self.first_learning_update

    @property
    def num_optimizer_steps(self) -> int:
        return self.num_learning_updates * self.steps_per_update

    def noise_mask(self) -> Callable[[Any], Any]:
        """Which parameters OPEN's learned noise may touch: the actor's (OPEN's
        default; a network with no ``actor`` subtree gets none)."""
        return tree_paths.actor_mask


def finite_update(params: Any, metrics: dict) -> jax.Array:
    """Whether an update left the run finite: every parameter, every loss (the
    metrics named ``*loss``) and the update's magnitude. A bool of shape ``()``;
    the first update where it is False is where the run diverged."""
    checked = [
        v for k, v in metrics.items() if k.endswith("loss") or k == "update_magnitude"
    ]
    checked += jax.tree.leaves(params)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in checked]))


class TrainState(NamedTuple):
    """What every algorithm carries from one update to the next."""

    params: Any  # the agent's networks (flax variables)
    opt_state: Any
    opt_params: Any  # the optimizer's parameters, the same all run
    env_state: Any  # the batch's state (lopt.envs.registry.make_vec_env)
    obs: jax.Array  # shape=(num_envs, *obs_shape)
    update: jax.Array  # shape=(), int32: updates done
    iteration: jax.Array  # shape=(), int32: optimizer steps done
    key: jax.Array
    # The environment's parameters for this run, where the environment samples a
    # level per run (the gridworld); None: its fixed parameters.
    level: Any = None
    extra: Any = None  # the algorithm's own (DQN: target network, replay buffer)


class Transition(NamedTuple):
    """Steps of the batch of environments; leaves ``(T, num_envs, ...)`` from a
    rollout, ``(B, ...)`` from a replay buffer."""

    obs: jax.Array
    action: jax.Array  # int32 (T, num_envs) or float (T, num_envs, action_size)
    reward: jax.Array  # float32, raw (logged returns are raw too)
    done: jax.Array  # bool: terminated or truncated
    next_obs: Any  # the observation after the step (after auto-reset where done);
    # kept by algorithms that learn from it (replay), else None
    episode_return: Any  # the last completed episode's raw return, 0 before one
    extras: dict  # what ``act`` returned beside the action


@dataclasses.dataclass(frozen=True, eq=False)
class Algorithm:
    """An inner-loop algorithm on one environment with one optimizer family; see
    the module docstring."""

    config: AlgorithmConfig
    optimizer: Optimizer
    env: Any  # a batch of num_envs environments (make_vec_env)
    env_params: Any
    init_agent: Callable[[jax.Array, jax.Array], tuple[Any, Any]]
    """(key, first observations (num_envs, *obs_shape)) -> (params, extra)"""
    act: Callable[..., tuple[jax.Array, dict]]
    """(state, obs, *keys) -> (action, extras), with ``act_keys`` keys"""
    learn: Callable[[TrainState, Transition, jax.Array], tuple[TrainState, dict]]
    """(state after collecting, the update's transitions, key) -> (state,
    metrics); the state's ``obs`` are those after the last step"""
    act_keys: int = 1
    keep_next_obs: bool = False
    host_learn: Callable | None = None
    """``learn`` for the host backend when it must not be one jitted function
    (PPO's CNNs; :mod:`lopt.rl.host_backend`); None: ``jax.jit(learn)``"""

    def build_tx(self, opt_params: Any) -> optax.GradientTransformationExtraArgs:
        """The optimizer for a whole run, with diagnostics if the config asks."""
        tx = self.optimizer.build(opt_params, self.config.num_optimizer_steps)
        return with_diagnostics(tx) if self.config.diagnostics else tx

    def start(
        self,
        key: jax.Array,
        key_networks: jax.Array,
        opt_params: Any,
        obs: jax.Array,
        env_state: Any = None,
        level: Any = None,
    ) -> TrainState:
        """The state before the first update, from the first observations."""
        params, extra = self.init_agent(key_networks, obs)
        zero = jnp.zeros((), jnp.int32)
        return TrainState(
            params=params,
            opt_state=self.build_tx(opt_params).init(params),
            opt_params=opt_params,
            env_state=env_state,
            obs=obs,
            update=zero,
            iteration=zero,
            key=key,
            level=level,
            extra=extra,
        )

    def init(self, key: jax.Array, opt_params: Any) -> TrainState:
        """A new run's state: networks, optimizer state, environments reset."""
        key, key_networks, key_env = jax.random.split(key, 3)
        level = None
        if hasattr(self.env, "sample_level"):  # one level per run, for every env
            level = self.env.sample_level(
                jax.random.fold_in(key_env, 1), self.env_params
            )
        obs, env_state = self.env.reset(key_env, self.level_params(level))
        return self.start(key, key_networks, opt_params, obs, env_state, level)

    def level_params(self, level: Any) -> Any:
        return self.env_params if level is None else level

    def collect_step(self, state: TrainState, obs: jax.Array, key: jax.Array):
        """The keys and action of one environment step: ``(key, action, extras,
        key_env)``; split here so the host backend draws the same numbers."""
        key, *act_keys, key_env = jax.random.split(key, 2 + self.act_keys)
        action, extras = self.act(state, obs, *act_keys)
        return key, action, extras, key_env

    def transition(self, obs, action, extras, step) -> Transition:
        """A :class:`Transition` from ``env.step``'s six values."""
        next_obs, _, reward, terminated, truncated, info = step
        return Transition(
            obs=obs,
            action=action,
            reward=reward.astype(jnp.float32),
            done=jnp.logical_or(terminated, truncated),
            next_obs=next_obs if self.keep_next_obs else None,
            episode_return=info["returned_episode_return"],
            extras=extras,
        )

    def update(self, state: TrainState) -> tuple[TrainState, dict]:
        """One update: ``rollout_length`` steps of every environment, then
        ``learn``. Metrics: ``return`` (the mean over environments of the last
        completed episode's return at the end of the rollout: OPEN's fitness at
        the last update), ``finite`` (:func:`finite_update`) and the
        algorithm's."""
        env_params = self.level_params(state.level)

        # COLLECT TRANSITIONS ---------------------------------------------------
        def env_step(carry, _):
            env_state, obs, key = carry
            key, action, extras, key_env = self.collect_step(state, obs, key)
            step = self.env.step(key_env, env_state, action, env_params)
            return (step[1], step[0], key), self.transition(obs, action, extras, step)

        (env_state, obs, key), traj = jax.lax.scan(
            env_step,
            (state.env_state, state.obs, state.key),
            None,
            self.config.rollout_length,
        )

        # LEARN -----------------------------------------------------------------
        key, key_learn = jax.random.split(key)
        state = state._replace(env_state=env_state, obs=obs, key=key)
        state, metrics = self.learn(state, traj, key_learn)
        metrics["return"] = jnp.mean(traj.episode_return[-1])
        metrics["finite"] = finite_update(state.params, metrics)
        return state._replace(update=state.update + 1), metrics

    def run(self, state: TrainState, num_updates: int) -> tuple[TrainState, dict]:
        """``num_updates`` updates from ``state``; metrics stacked per update."""
        return jax.lax.scan(lambda s, _: self.update(s), state, None, num_updates)

    def train(self, key: jax.Array, opt_params: Any) -> tuple[TrainState, dict]:
        """A whole run. Vmappable over ``key`` and ``opt_params``.

        Returns:
          ``(final_state, metrics)``; each metric has shape ``(num_updates, ...)``:
          ``return`` and the algorithm's own (its module docstring lists them).
        """
        return self.run(self.init(key, opt_params), self.config.num_updates)
