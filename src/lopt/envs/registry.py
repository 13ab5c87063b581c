"""Environments by name: ``make_env("minatar/breakout")`` or its alias ``"breakout"``.

Each entry builds the environment lazily (optional suites, brax and craftax, are
imported only when asked for) and wraps it in one fixed order. Per environment:
the suite's adapter (:mod:`lopt.envs.adapters`), then
:class:`~lopt.envs.wrappers.FlattenObservation`, then for continuous actions
:class:`~lopt.envs.wrappers.ClipAction`. :func:`make_vec_env` then batches
``num_envs`` of them (:class:`~lopt.envs.vector.VecEnv`), adds
:class:`~lopt.envs.vector.PoolReset` where resets are costly (Craftax),
:class:`~lopt.envs.wrappers.EpisodeLog` (raw returns), and for Brax tasks
:class:`~lopt.envs.vector.NormalizeObservation` and
:class:`~lopt.envs.vector.NormalizeReward` (OPEN §3.4).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from lopt.envs.adapters import (
    AtariAdapter,
    BraxAdapter,
    CraftaxAdapter,
    GymnasiumAdapter,
    GymnaxAdapter,
    GymnaxContinuousAdapter,
    PlaygroundAdapter,
)
from lopt.envs.gridworld import GRID_TYPES, Gridworld
from lopt.envs.vector import NormalizeObservation, NormalizeReward, PoolReset, VecEnv
from lopt.envs.wrappers import ClipAction, ClipReward, EpisodeLog, FlattenObservation


class UnknownEnvironmentError(ValueError):
    """An environment name that is not in the registry."""


def _gymnax(
    gymnax_id: str, continuous: bool = False, **env_kwargs: Any
) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        import gymnax

        env, params = gymnax.make(gymnax_id, **env_kwargs)
        adapter = GymnaxContinuousAdapter if continuous else GymnaxAdapter
        return adapter(env), params

    return make


DEEPSEA_SIZES = (8, 16, 24, 32)


def _gridworld(grid_type: str) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        env = Gridworld(grid_type)
        return env, env.default_params()

    return make


def _brax(name: str) -> Callable[[], tuple[Any, Any]]:
    return lambda: (BraxAdapter(name), None)


def _playground(name: str) -> Callable[[], tuple[Any, Any]]:
    return lambda: (PlaygroundAdapter(name), None)


def _gymnasium(env_id: str) -> Callable[[int], Any]:
    return lambda num_envs: GymnasiumAdapter(env_id, num_envs)


def _craftax(name: str) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        env = CraftaxAdapter(name)
        return env, env.default_params()

    return make


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    make: Callable[[], tuple[Any, Any]] | None
    """builds ``(env, env_params)`` with the suite's adapter (None: a host game)"""
    aliases: tuple[str, ...] = ()
    description: str = ""
    normalize: bool = False
    """normalise observations and rewards over the batch (Brax, OPEN §3.4)"""
    pool_size: int = 0
    """reset finished environments from a pool of this many fresh states drawn
    each step (0: the environment resets itself)"""
    host_game: str = ""
    """an Atari game emulated on the host by ALE: not JAX, so not jittable
    (:class:`~lopt.envs.adapters.AtariAdapter`, :mod:`lopt.rl.host_backend`)"""
    continuous: bool = False
    """continuous actions (Box), known without building the environment"""
    host_make: Callable[[int], Any] | None = None
    """builds a host batch of ``num_envs`` environments that are not JAX
    (gymnasium's MuJoCo tasks; :class:`~lopt.envs.adapters.GymnasiumAdapter`)"""

    @property
    def host(self) -> bool:
        """Stepped on the host, not in JAX (Atari, gymnasium's MuJoCo)."""
        return bool(self.host_game) or self.host_make is not None


class HostEnvironmentError(ValueError):
    """A host (non-JAX) environment where a jittable one is needed."""


ATARI_GAMES = ("breakout", "pong", "space_invaders", "asterix", "freeway", "seaquest")
"""Atari 2600 games (ALE ROMs ship with ale-py), for evaluation on real Atari"""

BRAX_TASKS = ("ant", "halfcheetah", "hopper", "walker2d", "humanoid")
"""Brax tasks, positional backend: Ant is OPEN's (§5.2), the others evaluation
targets for continuous control"""

MUJOCO_TASKS = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
    "humanoid": "Humanoid-v5",
}
"""gymnasium's MuJoCo tasks (real MuJoCo, stepped on the host): lopt name ->
gymnasium id"""

DMC_TASKS = {
    "cheetah-run": "CheetahRun",
    "walker-walk": "WalkerWalk",
    "walker-run": "WalkerRun",
    "hopper-hop": "HopperHop",
    "cartpole-swingup": "CartpoleSwingup",
    "pendulum-swingup": "PendulumSwingup",
    "reacher-easy": "ReacherEasy",
    "finger-spin": "FingerSpin",
}
"""DeepMind Control Suite tasks of MuJoCo Playground (MJX, in JAX): lopt name ->
Playground name"""


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
    # Small continuous-control probes (SAC, TD3, PPO's Gaussian actor).
    "classic/pendulum": EnvEntry(
        _gymnax("Pendulum-v1", continuous=True),
        ("pendulum",),
        "Pendulum-v1 (gymnax), 200-step episodes, torque in [-2, 2]",
        continuous=True,
    ),
    "classic/mountaincar-continuous": EnvEntry(
        _gymnax("MountainCarContinuous-v0", continuous=True),
        ("mountaincar-continuous", "mountaincarcontinuous"),
        "MountainCarContinuous-v0 (gymnax), 999-step episodes",
        continuous=True,
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
    **{
        f"brax/{task}": EnvEntry(
            _brax(task),
            (task,),
            f"Brax {task}, positional backend, 1000-step episodes",
            normalize=True,
            continuous=True,
        )
        for task in BRAX_TASKS
    },
    **{
        f"mujoco/{task}": EnvEntry(
            None,
            (),
            f"{env_id} (gymnasium, real MuJoCo, stepped on the host)",
            continuous=True,
            host_make=_gymnasium(env_id),
        )
        for task, env_id in MUJOCO_TASKS.items()
    },
    **{
        f"dmc/{task}": EnvEntry(
            _playground(name),
            (),
            f"DeepMind Control {name} (MuJoCo Playground, MJX), 1000-step episodes",
            continuous=True,
        )
        for task, name in DMC_TASKS.items()
    },
    **{
        f"atari/{game}": EnvEntry(
            None,
            (f"atari-{game}",),
            f"Atari {game} (ale-py, host-side emulator)",
            host_game=game,
        )
        for game in ATARI_GAMES
    },
    # OPEN §5.4: zero-shot transfer target.
    "craftax/classic": EnvEntry(
        _craftax("Craftax-Classic-Symbolic-v1"),
        ("craftax-classic", "craftax_classic"),
        "Craftax-Classic, symbolic observations (craftax)",
        pool_size=16,
    ),
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


def is_host(name: str) -> bool:
    """Whether ``name`` runs on the host (ALE, gymnasium) rather than in JAX."""
    return REGISTRY[canonical_name(name)].host


def is_continuous(name: str) -> bool:
    """Whether ``name``'s actions are continuous (without building it)."""
    return REGISTRY[canonical_name(name)].continuous


def _single(entry: EnvEntry) -> tuple[Any, Any]:
    if entry.host:
        raise HostEnvironmentError(
            f"{entry.description} runs on the host, as a batch: build it with "
            "make_vec_env (one environment alone is not supported)"
        )
    env, params = entry.make()
    env = FlattenObservation(env)
    return (ClipAction(env) if env.continuous else env), params


def make_env(name: str) -> tuple[Any, Any]:
    """One wrapped environment and its default parameters, by name or alias.

    Without the batch wrappers of :func:`make_vec_env`: no observation or reward
    normalisation, and environments with a reset pool do not reset themselves.
    """
    env, params = _single(REGISTRY[canonical_name(name)])
    return EpisodeLog(env), params


def make_vec_env(
    name: str, num_envs: int, gamma: float = 0.99, normalize: bool | None = None
) -> tuple[Any, Any]:
    """``num_envs`` wrapped environments stepped as one, and their parameters.

    ``gamma`` is the discount of the return whose variance scales rewards, for
    environments that normalise them. ``normalize`` overrides the entry's choice
    (off-policy learners replay stored observations, so they take raw ones).
    """
    entry = REGISTRY[canonical_name(name)]
    if entry.host_game:
        return ClipReward(EpisodeLog(AtariAdapter(entry.host_game, num_envs))), None
    if entry.host_make is not None:
        return EpisodeLog(entry.host_make(num_envs)), None
    env, params = _single(entry)
    env = VecEnv(env, num_envs)
    if entry.pool_size:
        env = PoolReset(env, entry.pool_size)
    env = EpisodeLog(env)
    if entry.normalize if normalize is None else normalize:
        env = NormalizeReward(NormalizeObservation(env), gamma)
    return env, params
