"""The valid range of every number a user can type, checked before work starts.

One table, :data:`OPTION_RANGES`, gives the range of each numeric option of the
``lopt`` commands (train, eval, tune, meta-train), by option name: the same name
means the same thing in every command. :func:`check_options` checks a command's
options against it and names the flag and a valid value when one is out of range::

    check_options(args)  # SettingError: --sigma must be a number > 0 (got 0);
                         # pass e.g. --sigma 0.1

The configs check their own fields in ``__post_init__`` with the same
:class:`Range` objects (:func:`check`), so a setting given on the command line, in
a preset or from Python has one valid range. Below every lopt package: imports
nothing of lopt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

#: Seeds are unsigned 32-bit integers (``jax.random.key`` and the executor's keys).
SEED_LIMIT = 2**32


class SettingError(ValueError):
    """A number outside its valid range; the message names the setting and a fix."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A valid range: finite numbers between ``low`` and ``high`` (None: no
    bound), each bound included unless ``*_open``; whole numbers only with
    ``integer``, even ones with ``even``; ``example`` is a valid value to suggest."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    even: bool = False
    example: str = ""

    def describe(self) -> str:
        """``"a finite number > 0"``, ``"a finite number in (0, 1]"``, ``"a whole
        number >= 1"``..."""
        kind = "a finite number"
        if self.integer:
            kind = "an even whole number" if self.even else "a whole number"
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {_num(self.high)}"
        return kind

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.even and int(value) % 2:
            return False
        if self.low is not None and (
            value < self.low or (self.low_open and value == self.low)
        ):
            return False
        return self.high is None or not (
            value > self.high or (self.high_open and value == self.high)
        )

    def message(self, name: str, value: Any, flag: bool = False) -> str:
        """What is wrong with ``value`` for setting ``name`` and how to fix it."""
        text = f"{name} must be {self.describe()} (got {value})"
        if flag and self.example:
            text += f"; pass e.g. {name} {self.example}"
        return text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


FINITE = Range()
# Above 1 no optimizer here trains anything: the parameters run off to ~lr in a few
# updates while staying finite, so the run would end "fine" and useless.
LEARNING_RATE = Range(low=0, high=1, low_open=True, example="3e-4")
SIGMA = Range(low=0, low_open=True, example="0.1")
DECAY = Range(low=0, high=1, low_open=True, example="0.999")
"""a per-generation decay factor: 1 is no decay"""
FLOOR = Range(low=0, example="0")
"""a lower limit on a decaying value (0: none)"""
FRACTION = Range(low=0, high=1, example="0.5")
"""a share of something, 0 to 1"""
BETA = Range(low=0, high=1, high_open=True, example="0.9")
"""a moment's decay (Adam's and Lion's betas, RMSprop's decay)"""
COUNT = Range(low=1, integer=True, example="1")
NON_NEGATIVE = Range(low=0, integer=True, example="0")
POPULATION = Range(low=2, integer=True, even=True, example="16")
"""antithetic pairs: an even population"""
SEED = Range(low=0, high=SEED_LIMIT - 1, integer=True, example="0")

#: option name (the command-line dataclasses' field) -> its valid range.
OPTION_RANGES: dict[str, Range] = {
    # optimizers
    "lr": LEARNING_RATE,  # lopt train: the optimizer's; meta-train: ES's
    "lrs": LEARNING_RATE,
    "optim4rl_lr": LEARNING_RATE,
    "b1s": BETA,
    "b2s": BETA,
    "decays": BETA,
    # evolution strategies
    "sigma": SIGMA,
    "sigma_decay": DECAY,
    "lr_decay": DECAY,
    "lr_warmup": NON_NEGATIVE,
    "probes": COUNT,
    "probe_generations": NON_NEGATIVE,
    "population": POPULATION,
    "generations": COUNT,
    "rollouts": COUNT,
    "fitness_window": FRACTION,
    "save_every": COUNT,
    "eval_every": COUNT,
    # runs
    "seed": SEED,
    "seeds": COUNT,
    "total_timesteps": COUNT,
    "max_parallel": COUNT,
    "reps": Range(low=1, integer=True, example="2000"),
    # several processes (lopt meta-train)
    "num_processes": COUNT,
    "process_id": Range(low=0, integer=True, example="0"),
    "heartbeat_timeout": Range(low=1, integer=True, example="30"),
}


def check(name: str, value: Any, valid: Range) -> None:
    """Raises :class:`SettingError` unless ``value`` is in ``valid``."""
    if not valid.contains(value):
        raise SettingError(valid.message(name, value))


def check_seed_span(seed: int, count: int, name: str = "seed") -> None:
    """Seeds ``seed .. seed + count - 1`` must all be below :data:`SEED_LIMIT`."""
    check(name, seed, SEED)
    if seed + count > SEED_LIMIT:
        raise SettingError(
            f"{name} {seed} with {count} seeds runs past the last seed "
            f"{SEED_LIMIT - 1}; use a {name} of at most {SEED_LIMIT - count}"
        )


def flag(name: str) -> str:
    """``sigma_decay`` -> ``--sigma-decay``."""
    return "--" + name.replace("_", "-")


def check_options(options: Any) -> None:
    """Checks every numeric option of a command's options dataclass that has an
    entry in :data:`OPTION_RANGES` (None: not given, unchecked); sequences are
    checked value by value. Also that ``--seed`` plus ``--seeds`` stays a seed.

    Raises:
      SettingError: the first option out of range, named by its flag, with a
        valid example.
    """
    for field in dataclasses.fields(options):
        valid = OPTION_RANGES.get(field.name)
        value = getattr(options, field.name)
        if valid is None or value is None:
            continue
        many = isinstance(value, Iterable) and not isinstance(value, str)
        values = value if many else (value,)
        for v in values:
            if not valid.contains(v):
                raise SettingError(valid.message(flag(field.name), v, flag=True))
    seed, seeds = getattr(options, "seed", None), getattr(options, "seeds", None)
    if seed is not None and seeds is not None:
        check_seed_span(seed, seeds, flag("seed"))
