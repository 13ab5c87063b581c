"""The inner-loop algorithms by name and by config type: PPO, DQN, IQN, PQN.

Every algorithm's config is a frozen dataclass with ``env``, ``total_timesteps``,
``num_updates``, ``frames_per_update`` and ``num_optimizer_steps``, and its
``make_train(config, optimizer)`` gives ``train(key, optimizer_params) ->
(final_state, metrics)`` with a per-update ``return``. This module dispatches on
the config's type, so callers (the runner, meta-training) need not know which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lopt.optim import tree_paths
from lopt.optim.family import Optimizer
from lopt.rl import dqn, iqn, ppo, pqn

#: name -> (config type, make_algorithm); the name is also ``TaskConfig``'s field.
ALGORITHMS: dict[str, tuple[type, Callable[[Any, Optimizer], Any]]] = {
    "ppo": (ppo.PPOConfig, ppo.make_ppo),
    "dqn": (dqn.DQNConfig, dqn.make_dqn),
    "iqn": (iqn.IQNConfig, iqn.make_iqn),
    "pqn": (pqn.PQNConfig, pqn.make_pqn),
}

VALUE_BASED = ("dqn", "iqn", "pqn")


class UnknownAlgorithmError(ValueError):
    """An algorithm name, or config type, that lopt does not know."""


def check_name(name: str) -> str:
    """``name`` if it names an algorithm, else an error listing the known ones."""
    if name not in ALGORITHMS:
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}"
        )
    return name


def algorithm_name(config: Any) -> str:
    """``"ppo"``, ``"dqn"``, ``"iqn"`` or ``"pqn"`` for a config of that type."""
    for name, (cls, _) in ALGORITHMS.items():
        if type(config) is cls:
            return name
    raise UnknownAlgorithmError(
        f"{type(config).__name__} is not an algorithm config; use one of "
        f"{', '.join(cls.__name__ for cls, _ in ALGORITHMS.values())}"
    )


def make_algorithm(config: Any, optimizer: Optimizer) -> Any:
    """The algorithm's pieces ``init``, ``run``, ``train`` and ``config``."""
    return ALGORITHMS[algorithm_name(config)][1](config, optimizer)


def make_train(config: Any, optimizer: Optimizer):
    """``train(key, optimizer_params) -> (final_state, metrics)`` for any config."""
    return make_algorithm(config, optimizer).train


def noise_mask(config: Any) -> Callable[[Any], Any]:
    """Which parameters OPEN's learned noise may touch, for this algorithm.

    PPO: the actor (OPEN's default). Value-based: the whole Q-network when the
    config's ``noise_on`` is set, else none (pass it as ``open_family``'s
    ``noise_mask``).
    """
    if algorithm_name(config) == "ppo":
        return tree_paths.actor_mask
    return tree_paths.prefix_mask(["params"] if config.noise_on else [])
