"""Tuned hand-crafted optimizer settings: the preset file ``lopt tune`` writes.

A ``tuned.json`` names an algorithm, an environment, a preset variant, an
optimizer (adam, rmsprop or lion), the best hyperparameters a grid search found
and their mean final return over seeds. ``lopt train --tuned FILE`` (and ``lopt
eval``) train with those hyperparameters, and meta-training uses the mean return
as the task's fitness normaliser (``baseline_return``; the paper normalises by
tuned Adam's return)::

    {"format": "lopt-tuned/1", "algo": "ppo", "env": "minatar/breakout",
     "preset": "small", "optimizer": "adam", "hyperparams": {"learning_rate":
     0.01, "b1": 0.9, "b2": 0.99, "anneal": true}, "baseline_return": 12.3,
     "num_seeds": 4, "total_timesteps": 50000}

Files written before the ``algo`` field existed were PPO's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lopt import validation
from lopt.atomic import write_json
from lopt.envs.registry import canonical_name
from lopt.optim.handcrafted import HYPERPARAM_RANGES
from lopt.rl.registry import algorithm_name

FORMAT = "lopt-tuned/1"

#: tuned.json files shipped with lopt (``lopt tune`` outputs, tuned on seeds
#: 2,000,000 and up): the baselines that meta-training compares its optimizer with.
BUILTIN_DIR = Path(__file__).parent / "baselines"

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
    algo: str = "ppo"

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
        try:
            for key, value in self.hyperparams.items():
                if key != "anneal":
                    validation.check(key, value, HYPERPARAM_RANGES[key])
            validation.check("baseline_return", self.baseline_return, validation.FINITE)
        except validation.SettingError as err:
            raise TunedFileError(f"{err}; tune again with lopt tune") from err


def write_tuned(path: Path, settings: TunedSettings) -> None:
    write_json(Path(path), {"format": FORMAT, **dataclasses.asdict(settings)})


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
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TunedFileError(f"{path}: not JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TunedFileError(
            f'{path}: not a tuned-settings file (no "format": "{FORMAT}"); '
            "write one with lopt tune"
        )
    fields = {f.name for f in dataclasses.fields(TunedSettings)}
    try:
        settings = TunedSettings(**{k: v for k, v in data.items() if k in fields})
    except (TypeError, TunedFileError) as err:
        raise TunedFileError(f"{path}: {err}") from err
    return dataclasses.replace(settings, env=canonical_name(settings.env))


def check_tuned(
    settings: TunedSettings, config: Any, variant: str | None, source: Any = None
) -> None:
    """Raises :class:`TunedFileError` unless ``settings`` were tuned with
    ``config``'s algorithm on its environment, with the preset ``variant`` (None:
    any; the caller compares the budgets)."""
    source = source or "the tuned settings"
    algo = algorithm_name(config)
    if canonical_name(config.env) != settings.env:
        raise TunedFileError(
            f"{source} was tuned on {settings.env}, not {canonical_name(config.env)}"
        )
    if settings.algo != algo:
        raise TunedFileError(
            f"{source} holds settings tuned for {settings.algo}, not {algo}; "
            f"tune with lopt tune --algo {algo}"
        )
    if variant is not None and settings.preset != variant:
        raise TunedFileError(
            f"{source} was tuned on the {settings.preset} preset; pass --preset "
            f"{settings.preset}"
        )


def same_budget(settings: TunedSettings, config: Any) -> bool:
    """Whether ``settings`` were tuned at ``config``'s budget: the frames its runs
    take (what ``lopt tune`` records: whole updates) or the budget asked for."""
    return settings.total_timesteps in (config.num_frames, config.total_timesteps)


def budget_mismatch(settings: TunedSettings, config: Any) -> str | None:
    """The warning for using ``settings`` in a run of another budget than they
    were tuned at (their best hyperparameters there need not be the best here),
    or None (same budget, or a file that does not record it)."""
    if not settings.total_timesteps or same_budget(settings, config):
        return None
    return (
        f"{settings.optimizer} was tuned at {settings.total_timesteps:,} frames; this "
        f"run takes {config.num_frames:,}: for a fair baseline tune at this budget "
        f"(lopt tune --total-timesteps {config.total_timesteps}) or pass "
        "--total-timesteps "
        f"{settings.total_timesteps}"
    )


def builtin_tuned(config: Any, variant: str | None) -> Path | None:
    """The shipped tuned file (:data:`BUILTIN_DIR`) for ``config``'s algorithm,
    environment and budget on the preset ``variant``, or None."""
    for path in sorted(BUILTIN_DIR.glob("*.json")):
        settings = read_tuned(path)
        if (
            settings.env == canonical_name(config.env)
            and settings.algo == algorithm_name(config)
            and settings.preset == variant
            and same_budget(settings, config)
        ):
            return path
    return None
