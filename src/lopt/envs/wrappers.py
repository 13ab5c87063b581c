"""Environment wrappers, each defined once.

Every environment in lopt speaks one step interface (gymnax >= 1.0's)::

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(
        key, state, action, params
    )

with auto-reset inside ``step``. Wrappers keep that interface.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class Wrapper:
    """Base wrapper: forwards every attribute it does not define."""

    def __init__(self, env: Any):
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class FlattenObservation(Wrapper):
    """Flattens observations to 1-D (MinAtar's 10x10xC grids, for an MLP agent)."""

    def reset(self, key, params):
        obs, state = self._env.reset(key, params)
        return jnp.ravel(obs), state

    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, params
        )
        return jnp.ravel(obs), state, reward, terminated, truncated, info

    def observation_shape(self, params) -> tuple[int, ...]:
        size = 1
        for dim in self._env.observation_shape(params):
            size *= dim
        return (size,)


class ClipAction(Wrapper):
    """Clips continuous actions to ``[low, high]`` before the environment sees them.

    The agent's unclipped sample is what PPO stores and scores (OPEN §3.4, Brax).
    """

    def __init__(self, env: Any, low: float = -1.0, high: float = 1.0):
        super().__init__(env)
        self.low, self.high = low, high

    def step(self, key, state, action, params):
        return self._env.step(key, state, jnp.clip(action, self.low, self.high), params)


@struct.dataclass
class LogState:
    env_state: Any
    # shapes are the batch's, () for one environment
    episode_return: jax.Array  # raw return of the running episode
    episode_length: jax.Array  # int32
    returned_episode_return: jax.Array  # return of the last completed one
    returned_episode_length: jax.Array  # int32
    returned_episode_valid: jax.Array  # bool: an episode has completed


@jax.jit
def _log_step(state: LogState, reward, terminated, truncated) -> LogState:
    """The statistics after one step (jitted: one call for a host environment)."""
    done = jnp.logical_or(terminated, truncated)
    episode_return = state.episode_return + reward.astype(jnp.float32)
    episode_length = state.episode_length + 1
    return LogState(
        env_state=state.env_state,
        episode_return=episode_return * (1 - done),
        episode_length=episode_length * (1 - done),
        returned_episode_return=jnp.where(
            done, episode_return, state.returned_episode_return
        ),
        returned_episode_length=jnp.where(
            done, episode_length, state.returned_episode_length
        ),
        returned_episode_valid=state.returned_episode_valid | done,
    )


class EpisodeLog(Wrapper):
    """Tracks the raw return of the most recently completed episode.

    ``info["returned_episode_return"]`` is 0 until the first episode ends (OPEN's
    logged metric and fitness, §3.3). Place it inside any reward normalisation.
    It wraps one environment or a batch of ``num_envs``
    (:class:`~lopt.envs.vector.VecEnv`), keeping statistics per environment.
    """

    def reset(self, key, params):
        obs, env_state = self._env.reset(key, params)
        num_envs = getattr(self._env, "num_envs", None)
        batch = () if num_envs is None else (num_envs,)
        zero, zero_int = jnp.zeros(batch, jnp.float32), jnp.zeros(batch, jnp.int32)
        valid = jnp.zeros(batch, bool)
        state = LogState(env_state, zero, zero_int, zero, zero_int, valid)
        return obs, state

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        state = _log_step(state.replace(env_state=None), reward, terminated, truncated)
        state = state.replace(env_state=env_state)
        info = {
            **info,
            "returned_episode_return": state.returned_episode_return,
            "returned_episode_length": state.returned_episode_length,
            "returned_episode_valid": state.returned_episode_valid,
        }
        return obs, state, reward, terminated, truncated, info


class ClipReward(Wrapper):
    """Rewards to their sign, for learning on Atari (host-side NumPy rewards);
    place above :class:`EpisodeLog` so logged returns stay raw."""

    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, params
        )
        return obs, state, np.sign(reward), terminated, truncated, info
