"""Tuned hand-crafted optimizer settings: the preset file ``lopt tune`` writes.

A ``tuned.json`` names an environment, an optimizer (adam, rmsprop or lion), the
best hyperparameters a grid search found and their mean final return over seeds.
``lopt train --tuned FILE`` trains with those hyperparameters, and meta-training
uses the mean return as the task's fitness normaliser (``baseline_return``; the
paper normalises by tuned Adam's return)::

    {"format": "lopt-tuned/1", "env": "minatar/breakout", "preset": "small",
     "optimizer": "adam", "hyperparams": {"learning_rate": 0.01, "b1": 0.9,
     "b2": 0.99, "anneal": true}, "baseline_return": 12.3, "num_seeds": 4,
     "total_timesteps": 50000}
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lopt.atomic import atomic_write
from lopt.envs.registry import canonical_name

if TYPE_CHECKING:
    from lopt.configs.presets import Preset

FORMAT = "lopt-tuned/1"

#: The hyperparameters a tuned file may set, per optimizer.
TUNABLE = {
    "adam": ("learning_rate", "b1", "b2", "anneal"),
    "rmsprop": ("learning_rate", "decay", "anneal"),
    "lion": ("learning_rate", "b1", "b2", "anneal"),
}


class TunedFileError(ValueError):
    """A tuned-settings file that cannot be used, with what was wrong."""


@dataclasses.dataclass(frozen=True)
class TunedSettings:
    """The best setting of a grid search on one environment."""

    env: str
    """canonical environment name, e.g. ``minatar/breakout``"""
    optimizer: str
    hyperparams: dict[str, Any]
    """e.g. ``{"learning_rate": 0.01, "b1": 0.9, "b2": 0.99, "anneal": True}``"""
    baseline_return: float
    """mean final return of this setting over the tuning seeds"""
    preset: str = "default"
    num_seeds: int = 0
    total_timesteps: int = 0

    def __post_init__(self):
        if self.optimizer not in TUNABLE:
            raise TunedFileError(
                f"tuned optimizer {self.optimizer!r} is not one of {', '.join(TUNABLE)}"
            )
        unknown = set(self.hyperparams) - set(TUNABLE[self.optimizer])
        if unknown or "learning_rate" not in self.hyperparams:
            raise TunedFileError(
                f"{self.optimizer} takes {', '.join(TUNABLE[self.optimizer])} "
                f"(learning_rate required); got {', '.join(self.hyperparams)}"
            )


def write_tuned(path: Path, settings: TunedSettings) -> None:
    text = json.dumps({"format": FORMAT, **dataclasses.asdict(settings)}, indent=2)
    atomic_write(Path(path), lambda f: f.write((text + "\n").encode()))


def read_tuned(path: str | Path) -> TunedSettings:
    """Reads a ``tuned.json``.

    Raises:
      TunedFileError: a missing, unreadable or malformed file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise TunedFileError(f"{path}: cannot read it ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise TunedFileError(f"{path}: not JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TunedFileError(
            f'{path}: not a tuned-settings file (no "format": "{FORMAT}"); '
            "write one with lopt tune"
        )
    fields = {f.name for f in dataclasses.fields(TunedSettings)}
    try:
        settings = TunedSettings(**{k: v for k, v in data.items() if k in fields})
    except TypeError as err:
        raise TunedFileError(f"{path}: {err}") from err
    return dataclasses.replace(settings, env=canonical_name(settings.env))


def check_env(settings: TunedSettings, env: str, source: str | Path) -> None:
    """Raises :class:`TunedFileError` unless ``settings`` were tuned on ``env``."""
    if canonical_name(env) != settings.env:
        raise TunedFileError(
            f"{source} was tuned on {settings.env}, not {canonical_name(env)}"
        )


def apply_tuned(preset: Preset, settings: TunedSettings) -> Preset:
    """``preset`` with the tuned optimizer's hyperparameters and baseline return."""
    check_env(settings, preset.config.env, "the tuned settings")
    optimizers = {k: dict(v) for k, v in preset.optimizers.items()}
    optimizers[settings.optimizer] = dict(settings.hyperparams)
    return dataclasses.replace(
        preset,
        optimizers=MappingProxyType(optimizers),
        baseline_return=settings.baseline_return,
    )
