"""Adapters from each suite's interface to lopt's (gymnax >= 1.0's six-value step).

Every adapter answers the shape queries the agents need:
``observation_shape(params)``, and ``num_actions(params)`` for discrete actions or
``action_size(params)`` for continuous ones (``continuous`` says which).
Optional suites (brax, craftax) are imported only when an adapter is built; a
missing one raises :class:`MissingExtraError` naming the install command.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt.envs.wrappers import Wrapper


class MissingExtraError(ImportError):
    """An optional environment suite that is not installed."""


def import_extra(module: str, extra: str) -> Any:
    """Imports ``module`` of the optional suite installed by ``lopt[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"this environment needs the optional package {module.split('.')[0]!r} "
            f"({err}); install it with: pip install -e '.[{extra}]' "
            f"(or pip install 'lopt[{extra}]')"
        ) from err


class GymnaxAdapter(Wrapper):
    """A gymnax environment with lopt's shape queries (discrete actions)."""

    continuous = False

    def reset(self, key, params):
        return self._env.reset(key, params)

    def step(self, key, state, action, params):
        return self._env.step(key, state, action, params)

    def observation_shape(self, params) -> tuple[int, ...]:
        return tuple(self._env.observation_space(params).shape)

    def num_actions(self, params) -> int:
        return int(self._env.action_space(params).n)


class BraxAdapter(Wrapper):
    """A Brax task with episodes of ``episode_length`` steps and auto-reset.

    Built as OPEN's code builds Ant (§3.4): ``get_environment(name, backend)``,
    then Brax's ``EpisodeWrapper`` (action repeat 1) and ``AutoResetWrapper``,
    which restarts a finished episode from its first state. An episode cut at
    ``episode_length`` is ``truncated``; a fall is ``terminated``. Brax tasks have
    no environment parameters (``params`` is ``None``).
    """

    continuous = True

    def __init__(self, name: str, backend: str = "positional", episode_length=1000):
        envs = import_extra("brax.envs", "brax")
        training = import_extra("brax.envs.wrappers.training", "brax")
        env = envs.get_environment(name, backend=backend)
        env = training.EpisodeWrapper(env, episode_length, action_repeat=1)
        super().__init__(training.AutoResetWrapper(env))

    def reset(self, key, params):
        state = self._env.reset(key)
        return state.obs, state

    def step(self, key, state, action, params):
        del key  # Brax dynamics are deterministic
        state = self._env.step(state, action)
        truncated = state.info["truncation"] > 0
        terminated = jnp.logical_and(state.done > 0, jnp.logical_not(truncated))
        return state.obs, state, state.reward, terminated, truncated, {}

    def observation_shape(self, params) -> tuple[int, ...]:
        return (int(self._env.observation_size),)

    def action_size(self, params) -> int:
        return int(self._env.action_size)


class CraftaxAdapter(Wrapper):
    """Craftax (symbolic observations) without its own auto-reset.

    Craftax's reset builds a new world, too slow to run for every environment at
    every step, so lopt wraps the batch in :class:`~lopt.envs.vector.PoolReset`.
    Episodes that end by Craftax's step limit count as terminated, as Craftax
    reports them.
    """

    continuous = False

    def __init__(self, name: str):
        craftax_env = import_extra("craftax.craftax_env", "craftax")
        super().__init__(craftax_env.make_craftax_env_from_name(name, auto_reset=False))

    def default_params(self) -> Any:
        return self._env.default_params

    def reset(self, key, params):
        return self._env.reset(key, params)

    def step(self, key, state, action, params):
        obs, state, reward, done, info = self._env.step(key, state, action, params)
        return obs, state, reward, done, jnp.zeros_like(done), info

    def observation_shape(self, params) -> tuple[int, ...]:
        return tuple(self._env.observation_space(params).shape)

    def num_actions(self, params) -> int:
        return int(self._env.action_space(params).n)


class AtariAdapter:
    """A batch of ``num_envs`` Atari games emulated by ALE on the host (ale-py).

    Not JAX: ALE is C++, so a run steps it from Python (:mod:`lopt.rl.host`) and
    the batch cannot be vmapped or jitted. ale-py's own preprocessing: frame skip
    4 with max-pooling, 84 x 84 grayscale, 4 stacked frames, up to 30 no-ops and
    FIRE at reset; rewards unclipped (lopt logs raw returns and clips above the
    log). Observations are uint8 ``(num_envs, 84, 84, 4)``; an episode that ends
    restarts within the same step. ``params`` is ``None``.
    """

    continuous = False

    def __init__(self, game: str, num_envs: int):
        vector_env = import_extra("ale_py.vector_env", "atari")
        self.game = game
        self.num_envs = num_envs
        self._env = vector_env.AtariVectorEnv(
            game,
            num_envs,
            num_threads=min(num_envs, os.cpu_count() or 1),
            reward_clipping=False,
            autoreset_mode="SameStep",
        )

    def reset(self, key, params):
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        obs, _ = self._env.reset(seed=seed)
        return self._obs(obs), None

    def step(self, key, state, action, params):
        obs, reward, terminated, truncated, _ = self._env.step(np.asarray(action))
        return (
            self._obs(obs),
            state,
            reward.astype(np.float32),
            terminated,
            truncated,
            {},
        )

    @staticmethod
    def _obs(obs: np.ndarray) -> np.ndarray:
        return np.moveaxis(obs, 1, -1)  # (N, C, H, W) -> (N, H, W, C)

    def observation_shape(self, params) -> tuple[int, ...]:
        return (84, 84, 4)

    def num_actions(self, params) -> int:
        return int(self._env.single_action_space.n)

    def close(self) -> None:
        self._env.close()
