"""A batch of environments stepped together, and the wrappers that need the batch.

:class:`VecEnv` vmaps one environment over ``num_envs`` copies and speaks the same
interface as a single environment, with a leading axis of ``num_envs`` on
observations, rewards, flags and state leaves::

    obs, state = vec_env.reset(key, params)           # obs: (num_envs, obs_dim)
    obs, state, reward, terminated, truncated, info = vec_env.step(
        key, state, action, params                    # action: (num_envs, ...)
    )

Wrappers here use statistics over the whole batch (OPEN §3.4's observation and
reward normalisation, as in PureJaxRL) or replace finished environments from a
shared pool of fresh states (:class:`PoolReset`), so they sit above the vmap.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from lopt.envs.wrappers import Wrapper


class VecEnv(Wrapper):
    """``num_envs`` copies of ``env``, each with its own key."""

    def __init__(self, env: Any, num_envs: int):
        super().__init__(env)
        self.num_envs = num_envs
        self._reset = jax.vmap(env.reset, in_axes=(0, None))
        self._step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def reset(self, key, params):
        return self._reset(jax.random.split(key, self.num_envs), params)

    def step(self, key, state, action, params):
        return self._step(jax.random.split(key, self.num_envs), state, action, params)


@struct.dataclass
class PoolResetState:
    env_state: Any  # leaves (num_envs, ...)
    pool_obs: jax.Array  # shape=(pool_size, obs_dim): fresh starts to hand out
    pool_state: Any  # leaves (pool_size, ...)


class PoolReset(Wrapper):
    """Auto-reset from a pool of fresh states, for environments with costly resets.

    Resetting Craftax builds a world (OPEN §5.4; ECOSYSTEM: 2.1k steps/s with a
    reset per environment per step, 13k without). Each step draws ``pool_size``
    fresh states, and the k-th environment to finish this step takes the
    ``k mod pool_size``-th of them: with ``pool_size`` at least the number of
    episodes that end per step, every finished environment gets a fresh world.

    Wraps a :class:`VecEnv` of an environment that does not reset itself.
    """

    def __init__(self, vec_env: VecEnv, pool_size: int):
        super().__init__(vec_env)
        self.pool_size = pool_size
        self._fresh = jax.vmap(vec_env._env.reset, in_axes=(0, None))

    def reset(self, key, params):
        key, key_pool = jax.random.split(key)
        obs, env_state = self._env.reset(key, params)
        pool_obs, pool_state = self._fresh(
            jax.random.split(key_pool, self.pool_size), params
        )
        return obs, PoolResetState(env_state, pool_obs, pool_state)

    def step(self, key, state, action, params):
        key, key_pool = jax.random.split(key)
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        slot = (jnp.cumsum(done) - 1) % self.pool_size

        def take(fresh, current):
            mask = done.reshape(done.shape + (1,) * (current.ndim - 1))
            return jnp.where(mask, fresh[slot], current)

        obs = take(state.pool_obs, obs)
        env_state = jax.tree.map(take, state.pool_state, env_state)
        pool_obs, pool_state = self._fresh(
            jax.random.split(key_pool, self.pool_size), params
        )
        state = PoolResetState(env_state, pool_obs, pool_state)
        return obs, state, reward, terminated, truncated, info


@struct.dataclass
class RunningMoments:
    """Running mean and variance of a batch quantity (parallel-variance update)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array  # shape=(): samples seen, starting at 1e-4 as OPEN's code

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningMoments:
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4))

    def update(self, batch: jax.Array) -> RunningMoments:
        """Folds in ``batch`` of shape ``(n, *shape)``."""
        batch_mean = jnp.mean(batch, axis=0)
        batch_var = jnp.var(batch, axis=0)
        n = batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningMoments(mean, m2 / total, total)


@struct.dataclass
class NormalizeObservationState:
    env_state: Any
    moments: RunningMoments  # over observations, shape (obs_dim,)


class NormalizeObservation(Wrapper):
    """``obs <- (obs - mean) / sqrt(var + 1e-8)`` with running statistics.

    Statistics are over the batch and all steps so far, updated before
    normalising at reset and at every step (OPEN §3.4, Brax tasks).
    """

    def reset(self, key, params):
        obs, env_state = self._env.reset(key, params)
        moments = RunningMoments.create(obs.shape[1:]).update(obs)
        return self._normalise(obs, moments), NormalizeObservationState(
            env_state, moments
        )

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        moments = state.moments.update(obs)
        state = NormalizeObservationState(env_state, moments)
        return self._normalise(obs, moments), state, reward, terminated, truncated, info

    @staticmethod
    def _normalise(obs: jax.Array, moments: RunningMoments) -> jax.Array:
        return (obs - moments.mean) / jnp.sqrt(moments.var + 1e-8)


@struct.dataclass
class NormalizeRewardState:
    env_state: Any
    discounted_return: jax.Array  # shape=(num_envs,)
    moments: RunningMoments  # of the discounted return, shape ()


class NormalizeReward(Wrapper):
    """``reward <- reward / sqrt(var + 1e-8)``, var of the discounted return.

    The discounted return (factor ``gamma``) restarts when an episode ends; its
    variance is tracked over the batch and all steps so far (OPEN §3.4). Rewards
    are scaled, not centred. Place :class:`~lopt.envs.wrappers.EpisodeLog` below
    this wrapper so logged returns stay raw.
    """

    def __init__(self, env: Any, gamma: float):
        super().__init__(env)
        self.gamma = gamma

    def reset(self, key, params):
        obs, env_state = self._env.reset(key, params)
        batch = obs.shape[:1]
        return obs, NormalizeRewardState(
            env_state, jnp.zeros(batch), RunningMoments.create(())
        )

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        discounted = state.discounted_return * self.gamma * (1 - done) + reward
        moments = state.moments.update(discounted)
        state = NormalizeRewardState(env_state, discounted, moments)
        reward = reward / jnp.sqrt(moments.var + 1e-8)
        return obs, state, reward, terminated, truncated, info
