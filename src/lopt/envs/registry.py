"""Environments by name: ``make_env("minatar/breakout")`` or its alias ``"breakout"``.

Each entry builds the environment lazily (optional suites are imported only when
asked for) and wraps it in one fixed order: the suite's adapter, then
:class:`~lopt.envs.wrappers.FlattenObservation`, then
:class:`~lopt.envs.wrappers.EpisodeLog`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from lopt.envs.gridworld import GRID_TYPES, Gridworld
from lopt.envs.wrappers import EpisodeLog, FlattenObservation, Wrapper


class UnknownEnvironmentError(ValueError):
    """An environment name that is not in the registry."""


class GymnaxAdapter(Wrapper):
    """A gymnax environment with lopt's shape queries."""

    def reset(self, key, params):
        return self._env.reset(key, params)

    def step(self, key, state, action, params):
        return self._env.step(key, state, action, params)

    def observation_shape(self, params) -> tuple[int, ...]:
        return tuple(self._env.observation_space(params).shape)

    def num_actions(self, params) -> int:
        return int(self._env.action_space(params).n)


def _gymnax(gymnax_id: str, **env_kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        import gymnax

        env, params = gymnax.make(gymnax_id, **env_kwargs)
        return GymnaxAdapter(env), params

    return make


DEEPSEA_SIZES = (8, 16, 24, 32)


def _gridworld(grid_type: str) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        env = Gridworld(grid_type)
        return env, env.default_params()

    return make


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    make: Callable[[], tuple[Any, Any]]
    """builds ``(env, env_params)`` with the suite's adapter"""
    aliases: tuple[str, ...] = ()
    description: str = ""


REGISTRY: dict[str, EnvEntry] = {
    "minatar/asterix": EnvEntry(
        _gymnax("Asterix-MinAtar"), ("asterix",), "Asterix-MinAtar (gymnax)"
    ),
    "minatar/breakout": EnvEntry(
        _gymnax("Breakout-MinAtar"), ("breakout",), "Breakout-MinAtar (gymnax)"
    ),
    "minatar/freeway": EnvEntry(
        _gymnax("Freeway-MinAtar"), ("freeway",), "Freeway-MinAtar (gymnax)"
    ),
    "minatar/spaceinvaders": EnvEntry(
        _gymnax("SpaceInvaders-MinAtar"),
        ("spaceinvaders", "space_invaders"),
        "SpaceInvaders-MinAtar (gymnax)",
    ),
    "classic/cartpole": EnvEntry(
        _gymnax("CartPole-v1"), ("cartpole",), "CartPole-v1 (gymnax)"
    ),
    "classic/acrobot": EnvEntry(
        _gymnax("Acrobot-v1"), ("acrobot",), "Acrobot-v1 (gymnax)"
    ),
    # OPEN §5.3: rand_all is the training distribution, the others out of support.
    **{
        f"gridworld/{t}": EnvEntry(
            _gridworld(t),
            ("gridworld",) if t == "rand_all" else (),
            f"gridworld {t} (lopt, a level per run)",
        )
        for t in GRID_TYPES
    },
    # bsuite's Deep Sea (an N x N grid, N steps per episode), for exploration.
    **{
        f"bsuite/deepsea-{n}": EnvEntry(
            _gymnax("DeepSea-bsuite", size=n),
            (f"deepsea-{n}", *(("deepsea",) if n == DEEPSEA_SIZES[0] else ())),
            f"DeepSea-bsuite of size {n} (gymnax)",
        )
        for n in DEEPSEA_SIZES
    },
}


def canonical_name(name: str) -> str:
    """The registry name for ``name`` or one of its aliases.

    Raises:
      UnknownEnvironmentError: naming the closest known names.
    """
    key = name.strip().lower()
    if key in REGISTRY:
        return key
    for canonical, entry in REGISTRY.items():
        if key in entry.aliases:
            return canonical
    known = sorted([*REGISTRY, *(a for e in REGISTRY.values() for a in e.aliases)])
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise UnknownEnvironmentError(
        f"unknown environment {name!r}.{hint} Known: {', '.join(known)}"
    )


def make_env(name: str) -> tuple[Any, Any]:
    """Builds a wrapped environment and its default parameters by name or alias."""
    env, params = REGISTRY[canonical_name(name)].make()
    return EpisodeLog(FlattenObservation(env)), params
