"""Adapters from each suite's interface to lopt's (gymnax >= 1.0's six-value step).

Every adapter answers the shape queries the agents need:
``observation_shape(params)``, and ``num_actions(params)`` for discrete actions or
``action_size(params)`` for continuous ones (``continuous`` says which).
Continuous adapters take actions in ``[-1, 1]`` per dimension and rescale them to
the task's bounds. Where a suite exposes it, ``info["final_observation"]`` is the
observation an episode ended on (before the auto-reset), so off-policy learners
can bootstrap through a time limit.
Optional suites (brax, craftax, ale-py, gymnasium's MuJoCo, MuJoCo Playground) are
imported only when an adapter is built; a missing one raises
:class:`MissingExtraError` naming the install command.
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


def rescale(action, low, high):
    """``action`` in ``[-1, 1]`` mapped linearly onto ``[low, high]``."""
    return low + 0.5 * (action + 1.0) * (high - low)


def strong_types(tree: Any) -> Any:
    """``tree`` without weak types: a state whose leaves change from weakly to
    strongly typed after a step makes a scan's caller compile twice."""
    return jax.tree.map(lambda x: jnp.asarray(x).astype(jnp.asarray(x).dtype), tree)


class GymnaxContinuousAdapter(GymnaxAdapter):
    """A gymnax environment with a ``Box`` of actions (Pendulum, continuous
    MountainCar): actions in ``[-1, 1]`` rescaled to the box. States are strongly
    typed (Pendulum's reset gives a weakly typed ``last_u``)."""

    continuous = True

    def reset(self, key, params):
        obs, state = self._env.reset(key, params)
        return obs, strong_types(state)

    def step(self, key, state, action, params):
        space = self._env.action_space(params)
        action = rescale(action, space.low, space.high)
        obs, state, *rest = self._env.step(key, state, action, params)
        return (obs, strong_types(state), *rest)

    def action_size(self, params) -> int:
        return int(np.prod(self._env.action_space(params).shape))


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


class GymnasiumAdapter:
    """A batch of ``num_envs`` gymnasium environments stepped on the host (MuJoCo).

    Not JAX: gymnasium's MuJoCo tasks run in C through the ``mujoco`` bindings, so
    a run steps them from Python (:mod:`lopt.rl.host_backend`), like Atari. One
    ``gymnasium.vector.SyncVectorEnv`` of ``num_envs`` copies, auto-resetting in
    the same step; ``info["final_observation"]`` holds each environment's last
    observation of an episode that just ended (the new episode's first otherwise).
    Actions in ``[-1, 1]`` are clipped and rescaled to the task's bounds;
    observations are float32 ``(num_envs, obs_dim)``; ``params`` is ``None``.
    """

    continuous = True

    def __init__(self, env_id: str, num_envs: int):
        gym = import_extra("gymnasium", "mujoco")
        import_extra("mujoco", "mujoco")
        self.env_id = env_id
        self.num_envs = num_envs
        self._env = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        )
        space = self._env.single_action_space
        self._low = np.asarray(space.low, np.float32)
        self._high = np.asarray(space.high, np.float32)

    def reset(self, key, params):
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        obs, _ = self._env.reset(seed=seed)
        return obs.astype(np.float32), None

    def step(self, key, state, action, params):
        action = rescale(np.clip(np.asarray(action), -1.0, 1.0), self._low, self._high)
        obs, reward, terminated, truncated, info = self._env.step(action)
        obs = obs.astype(np.float32)
        final = obs.copy()
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final[i] = info["final_obs"][i]
        return (
            obs,
            state,
            reward.astype(np.float32),
            terminated,
            truncated,
            {"final_observation": final},
        )

    def observation_shape(self, params) -> tuple[int, ...]:
        return tuple(self._env.single_observation_space.shape)

    def action_size(self, params) -> int:
        return int(np.prod(self._env.single_action_space.shape))

    def close(self) -> None:
        self._env.close()


class PlaygroundAdapter(Wrapper):
    """A MuJoCo Playground task (MJX, in JAX): DeepMind Control Suite tasks.

    Loaded with MJX's JAX implementation (``impl="jax"``), so it vmaps and jits
    like Brax. Episodes last ``episode_length`` steps (truncated) unless the
    physics diverges (terminated); a finished episode restarts from the run's
    first state, cached at reset, as Brax's and Playground's own auto-reset
    wrappers do (a fresh reset every step would run the task's reset physics
    every step). ``info["final_observation"]`` is the episode's last observation.
    ``params`` is ``None``.
    """

    continuous = True

    def __init__(self, name: str, episode_length: int = 1000):
        playground = import_extra("mujoco_playground", "playground")
        env = playground.registry.load(name, config_overrides={"impl": "jax"})
        super().__init__(env)
        self.episode_length = episode_length

    def reset(self, key, params):
        state = self._env.reset(key)
        return state.obs, (state, state, jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params):
        del key  # the tasks' dynamics are deterministic
        current, first, steps = state
        current = self._env.step(current, action)
        steps = steps + 1
        terminated = current.done > 0
        truncated = jnp.logical_and(steps >= self.episode_length, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        restart = jax.tree.map(lambda a, b: jnp.where(done, a, b), first, current)
        info = {"final_observation": current.obs}
        return (
            restart.obs,
            (restart, first, jnp.where(done, 0, steps)),
            current.reward,
            terminated,
            truncated,
            info,
        )

    def observation_shape(self, params) -> tuple[int, ...]:
        size = self._env.observation_size
        return (int(size),) if np.ndim(size) == 0 else tuple(size)

    def action_size(self, params) -> int:
        return int(self._env.action_size)
