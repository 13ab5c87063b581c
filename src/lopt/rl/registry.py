"""The inner-loop algorithms by name and by config type: PPO, DQN, IQN, PQN,
Rainbow, SAC and TD3.

Every algorithm's config is a frozen :class:`~lopt.rl.algorithm.AlgorithmConfig`
and its builder gives an :class:`~lopt.rl.algorithm.Algorithm`; this module picks
the builder from the config's type, so callers (the executor, meta-training, the
commands) need not know which algorithm runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lopt.envs.registry import canonical_name, is_continuous
from lopt.optim.optimizer import Optimizer
from lopt.rl.algorithm import Algorithm, AlgorithmConfig
from lopt.rl.dqn import DQNConfig, make_dqn
from lopt.rl.iqn import IQNConfig, make_iqn
from lopt.rl.ppo import PPOConfig, make_ppo
from lopt.rl.pqn import PQNConfig, make_pqn
from lopt.rl.rainbow import RainbowConfig, make_rainbow
from lopt.rl.sac import SACConfig, make_sac
from lopt.rl.td3 import TD3Config, make_td3

#: name -> (config type, builder ``(config, optimizer, env=None) -> Algorithm``).
ALGORITHMS: dict[str, tuple[type[AlgorithmConfig], Callable[..., Algorithm]]] = {
    "ppo": (PPOConfig, make_ppo),
    "dqn": (DQNConfig, make_dqn),
    "iqn": (IQNConfig, make_iqn),
    "pqn": (PQNConfig, make_pqn),
    "rainbow": (RainbowConfig, make_rainbow),
    "sac": (SACConfig, make_sac),
    "td3": (TD3Config, make_td3),
}

#: The algorithms that choose among discrete actions only, or act in continuous
#: ones only (the others, PPO, take both).
DISCRETE_ONLY = frozenset({"dqn", "iqn", "pqn", "rainbow"})
CONTINUOUS_ONLY = frozenset({"sac", "td3"})


class UnknownAlgorithmError(ValueError):
    """An algorithm name, or config type, that lopt does not know."""


def check_name(name: str) -> str:
    """``name`` if it names an algorithm, else an error listing the known ones."""
    if name not in ALGORITHMS:
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}"
        )
    return name


def action_mismatch(name: str, env: str) -> str | None:
    """Why algorithm ``name`` cannot act in ``env``'s action space, or None."""
    env = canonical_name(env)
    continuous = is_continuous(env)
    if name in DISCRETE_ONLY and continuous:
        return f"{name} chooses among discrete actions and {env}'s are continuous"
    if name in CONTINUOUS_ONLY and not continuous:
        return f"{name} acts in continuous action spaces and {env}'s are discrete"
    return None


def config_type(name: str) -> type[AlgorithmConfig]:
    """The config class of the algorithm ``name``."""
    return ALGORITHMS[check_name(name)][0]


def algorithm_name(config: Any) -> str:
    """The name (``"ppo"``, ``"dqn"``, ...) of the algorithm whose config type
    ``config`` is."""
    for name, (cls, _) in ALGORITHMS.items():
        if type(config) is cls:
            return name
    raise UnknownAlgorithmError(
        f"{type(config).__name__} is not an algorithm config; use one of "
        f"{', '.join(cls.__name__ for cls, _ in ALGORITHMS.values())}"
    )


def make_algorithm(
    config: AlgorithmConfig, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """The algorithm ``config`` describes, with ``optimizer``; ``env`` is
    ``(batch of environments, params)`` (default: built from ``config``)."""
    return ALGORITHMS[algorithm_name(config)][1](config, optimizer, env)
