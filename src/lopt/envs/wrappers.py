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


@struct.dataclass
class LogState:
    env_state: Any
    episode_return: jax.Array  # shape=(): raw return of the running episode
    episode_length: jax.Array  # shape=(), int32
    returned_episode_return: jax.Array  # shape=(): return of the last completed one
    returned_episode_length: jax.Array  # shape=(), int32
    returned_episode_valid: jax.Array  # shape=(), bool: an episode has completed


class EpisodeLog(Wrapper):
    """Tracks the raw return of the most recently completed episode.

    ``info["returned_episode_return"]`` is 0 until the first episode ends (OPEN's
    logged metric and fitness, §3.3). Place it inside any reward normalisation.
    """

    def reset(self, key, params):
        obs, env_state = self._env.reset(key, params)
        zero, zero_int = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        state = LogState(env_state, zero, zero_int, zero, zero_int, jnp.array(False))
        return obs, state

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_return + reward.astype(jnp.float32)
        episode_length = state.episode_length + 1
        state = LogState(
            env_state=env_state,
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
        info = {
            **info,
            "returned_episode_return": state.returned_episode_return,
            "returned_episode_length": state.returned_episode_length,
            "returned_episode_valid": state.returned_episode_valid,
        }
        return obs, state, reward, terminated, truncated, info
