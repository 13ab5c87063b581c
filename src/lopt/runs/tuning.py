"""Grid search over a hand-crafted optimizer's hyperparameters (OPEN §6).

The paper tunes Adam, RMSprop and Lion per environment over the learning rate,
the betas (Adam, Lion) or the decay (RMSprop) and whether the learning rate is
annealed linearly to 0. :func:`grid_settings` enumerates such a grid,
:func:`run_tuning` trains every setting on the same seeds (all settings and seeds
of one ``anneal`` value vmapped in one jitted call, in groups of at most
``max_parallel`` runs), and :func:`best_setting` picks the winner, which
:mod:`lopt.configs.tuned` writes as a preset.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from lopt.atomic import atomic_write, write_json
from lopt.configs.presets import preset_for
from lopt.configs.tuned import TunedSettings, write_tuned
from lopt.envs.registry import is_host
from lopt.optim.handcrafted import HANDCRAFTED, HYPERPARAM_RANGES
from lopt.rl.algorithm import AlgorithmConfig
from lopt.rl.executor import Executor, chunk_size, seed_keys
from lopt.runs.records import env_steps, versions
from lopt.summary import diverged_at, summarise

#: Hyperparameters searched per optimizer, besides ``anneal``, in grid order.
GRID_AXES = {
    "adam": ("learning_rate", "b1", "b2"),
    "rmsprop": ("learning_rate", "decay"),
    "lion": ("learning_rate", "b1", "b2"),
}

#: Default values per axis (Lion's learning rates are 10x smaller, as its paper
#: advises; OPEN's grids were not published).
DEFAULT_GRIDS = {
    "adam": {
        "learning_rate": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        "b1": (0.9,),
        "b2": (0.99, 0.999),
    },
    "rmsprop": {"learning_rate": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "decay": (0.9, 0.99)},
    "lion": {
        "learning_rate": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
        "b1": (0.9,),
        "b2": (0.99,),
    },
}

ANNEAL_CHOICES = {"both": (False, True), "on": (True,), "off": (False,)}


class TuningError(ValueError):
    """A grid or tuning run that cannot be done as asked."""


@dataclasses.dataclass(frozen=True)
class Grid:
    """The values tried per hyperparameter; every combination is one setting."""

    optimizer: str
    values: dict[str, tuple[float, ...]]
    """axis name (see :data:`GRID_AXES`) -> values, in the order given"""
    anneal: tuple[bool, ...] = (False, True)

    @property
    def axes(self) -> tuple[str, ...]:
        return GRID_AXES[self.optimizer]


def make_grid(
    optimizer: str, anneal: str = "both", **values: Sequence[float] | None
) -> Grid:
    """A grid for ``optimizer``; axes not given (or ``None``) take
    :data:`DEFAULT_GRIDS`' values.

    Raises:
      TuningError: an optimizer other than adam, rmsprop and lion, an axis it does
        not have, an empty or non-positive axis, or an unknown ``anneal``.
    """
    if optimizer not in GRID_AXES:
        raise TuningError(
            f"lopt tune searches {', '.join(GRID_AXES)}; got {optimizer!r}"
        )
    if anneal not in ANNEAL_CHOICES:
        raise TuningError(
            f"--anneal is one of {', '.join(ANNEAL_CHOICES)}; got {anneal!r}"
        )
    axes = GRID_AXES[optimizer]
    given = {k: v for k, v in values.items() if v is not None}
    extra = sorted(set(given) - set(axes))
    if extra:
        raise TuningError(
            f"{optimizer} has no {', '.join(extra)} to tune; its grid axes are "
            f"{', '.join(axes)}"
        )
    grid = {
        k: tuple(float(x) for x in given.get(k, DEFAULT_GRIDS[optimizer][k]))
        for k in axes
    }
    for name, axis in grid.items():
        if not axis:
            raise TuningError(f"the {name} axis is empty")
        valid = HYPERPARAM_RANGES[name]
        bad = [x for x in axis if not valid.contains(x)]
        if bad:
            raise TuningError(
                f"each {name} must be {valid.describe()}; got "
                + ", ".join(map(str, bad))
            )
    return Grid(optimizer, grid, ANNEAL_CHOICES[anneal])


def grid_settings(grid: Grid) -> list[dict[str, Any]]:
    """Every setting, ``anneal`` outermost, then the axes in :data:`GRID_AXES`
    order (the learning rate varies slowest), e.g. ``{"learning_rate": 1e-3,
    "b1": 0.9, "b2": 0.99, "anneal": True}``."""
    settings = []
    for anneal in grid.anneal:
        for values in itertools.product(*(grid.values[a] for a in grid.axes)):
            settings.append(
                {**dict(zip(grid.axes, values, strict=True)), "anneal": anneal}
            )
    return settings


def best_setting(
    final_returns: np.ndarray,
    mean_returns: np.ndarray | None = None,
    diverged: np.ndarray | None = None,
) -> int:
    """Index of the best setting: the highest mean final return over seeds.

    A setting that diverged on any seed (non-finite parameters, losses or
    updates, or a non-finite return) is never chosen. Equal means are separated
    by the mean return over the whole run (faster learning wins; CartPole caps
    many settings at 500), then by grid order.

    Args:
      final_returns: shape ``(num_settings, num_seeds)``.
      mean_returns: shape ``(num_settings, num_seeds)``: each run's return
        averaged over its updates (optional tie-break).
      diverged: bool, shape ``(num_settings, num_seeds)``: runs that diverged.

    Raises:
      TuningError: every setting diverged.
    """
    final = np.asarray(final_returns, np.float64)
    finite = np.all(np.isfinite(final), axis=1)
    if diverged is not None:
        finite &= ~np.any(diverged, axis=1)
    if not finite.any():
        raise TuningError(
            "every setting diverged on at least one seed; try smaller learning rates"
        )
    score = np.where(finite, final.mean(axis=1) if final.size else -np.inf, -np.inf)
    tie = np.zeros(len(final))
    if mean_returns is not None:
        tie = np.nan_to_num(
            np.asarray(mean_returns, np.float64).mean(axis=1), nan=-np.inf
        )
    candidates = np.flatnonzero(score == score.max())
    return int(candidates[np.argmax(tie[candidates])])


@dataclasses.dataclass(frozen=True)
class TunePlan:
    """A checked tuning job: what :func:`run_tuning` will train."""

    env: str
    algo: str
    preset: str
    config: AlgorithmConfig
    grid: Grid
    settings: tuple[dict[str, Any], ...]
    seeds: tuple[int, ...]
    max_parallel: int

    @property
    def settings_per_call(self) -> int:
        return max(1, self.max_parallel // len(self.seeds))

    @property
    def num_calls(self) -> int:
        """Jitted training calls (each runs ``num_updates`` updates in chunks)."""
        per_anneal = len(self.settings) // len(self.grid.anneal)
        return len(self.grid.anneal) * math.ceil(per_anneal / self.settings_per_call)

    @property
    def total_updates(self) -> int:
        return self.num_calls * self.config.num_updates


def plan_tuning(
    env: str,
    grid: Grid,
    seeds: Sequence[int],
    *,
    algo: str = "ppo",
    preset: str = "default",
    total_timesteps: int | None = None,
    max_parallel: int = 64,
) -> TunePlan:
    """Checks a tuning job before anything trains.

    Raises:
      TuningError, or another ValueError: an unknown environment or preset, fewer
        than one seed, a non-positive ``max_parallel``.
    """
    if len(seeds) < 1:
        raise TuningError("tuning needs at least one seed")
    if max_parallel < 1:
        raise TuningError(f"max_parallel must be at least 1, got {max_parallel}")
    config = preset_for(env, preset, algo).config
    if is_host(config.env):
        raise TuningError(
            f"{config.env} runs on the host (ALE), one run at a time: a grid cannot "
            "be vmapped over it; compare settings with lopt train instead"
        )
    if total_timesteps is not None:
        config = dataclasses.replace(config, total_timesteps=total_timesteps)
    return TunePlan(
        env=config.env,
        algo=algo,
        preset=preset,
        config=config,
        grid=grid,
        settings=tuple(grid_settings(grid)),
        seeds=tuple(seeds),
        max_parallel=max_parallel,
    )


def _train_group(
    config: AlgorithmConfig,
    optimizer_name: str,
    anneal: bool,
    params: dict[str, np.ndarray],
    seeds: Sequence[int],
    on_progress: Callable[[int], None] | None,
    executors: dict,
) -> dict[str, np.ndarray]:
    """:data:`TUNING_METRICS` per update of every (setting, seed): each of shape
    (settings, seeds, T)."""
    if anneal not in executors:
        optimizer = HANDCRAFTED[optimizer_name](anneal=anneal)
        executors[anneal] = Executor(
            config,
            optimizer,
            members=True,
            chunk=chunk_size(config.num_updates),
            keep_state=False,
        )
    executor = executors[anneal]
    size = len(next(iter(params.values())))
    batch = {
        k: jnp.asarray(params[k], jnp.float32)
        if k in params
        else jnp.full((size,), v, jnp.float32)
        for k, v in executor.optimizer.params.items()
    }
    done = [0]

    def progress(updates: int) -> None:
        if on_progress is not None:
            on_progress(updates - done[0])
        done[0] = updates

    metrics, _ = executor(seed_keys(seeds), batch, on_progress=progress)
    return {k: np.asarray(metrics[k]) for k in TUNING_METRICS}


#: What tuning keeps of each run, per update: its return, and whether it was
#: still finite (:func:`lopt.rl.algorithm.finite_update`).
TUNING_METRICS = ("return", "finite")


def run_tuning(
    plan: TunePlan, on_progress: Callable[[int], None] | None = None
) -> dict[str, np.ndarray]:
    """Trains every setting of ``plan`` on every seed.

    Settings of one ``anneal`` value run vmapped, ``plan.settings_per_call`` at a
    time; the last group is padded with copies of its last setting so that every
    call has the same shape (one compilation per ``anneal`` value).

    Args:
      on_progress: called with the number of updates just done (per call chunk);
        they add up to ``plan.total_updates``.

    Returns:
      :data:`TUNING_METRICS` after each update, each of shape ``(num_settings,
      num_seeds, num_updates)``, settings in :func:`grid_settings` order.
    """
    executors: dict = {}
    out = []
    axes = plan.grid.axes
    group = plan.settings_per_call
    for anneal in plan.grid.anneal:
        mine = [s for s in plan.settings if s["anneal"] == anneal]
        for start in range(0, len(mine), group):
            part = mine[start : start + group]
            padded = part + [part[-1]] * (min(group, len(mine)) - len(part))
            params = {a: np.array([s[a] for s in padded], np.float32) for a in axes}
            metrics = _train_group(
                plan.config,
                plan.grid.optimizer,
                anneal,
                params,
                plan.seeds,
                on_progress,
                executors,
            )
            out.append({k: v[: len(part)] for k, v in metrics.items()})
    return {k: np.concatenate([o[k] for o in out], axis=0) for k in TUNING_METRICS}


def setting_label(setting: dict[str, Any], axes: Sequence[str]) -> str:
    """``b1=0.9 b2=0.99 anneal=on``: a setting without its learning rate."""
    parts = [f"{a}={setting[a]:g}" for a in axes if a != "learning_rate"]
    return " ".join([*parts, f"anneal={'on' if setting['anneal'] else 'off'}"])


def write_tuning(
    out: Path,
    plan: TunePlan,
    metrics: dict[str, np.ndarray],
    wall_time: float,
    command: Sequence[str],
) -> dict:
    """Writes ``results.csv`` (setting, its values, seed, final return, the update
    where the run diverged), ``curves.npz`` (``returns`` and ``finite`` of shape
    (settings, seeds, updates), ``env_steps``), ``summary.json`` (every
    setting's statistics and whether it diverged, and the best) and, unless
    every setting diverged, ``tuned.json`` (the best setting as a preset,
    :mod:`lopt.configs.tuned`). Returns the summary (``best`` None when every
    setting diverged).
    """
    out = Path(out)
    axes = plan.grid.axes
    returns = metrics["return"]
    final = returns[:, :, -1]
    flat = diverged_at(metrics["finite"])  # settings x seeds, in C order
    num_seeds = len(plan.seeds)
    where = [flat[i : i + num_seeds] for i in range(0, len(flat), num_seeds)]
    diverged = np.array([[w is not None for w in row] for row in where], bool)
    diverged = diverged.reshape(final.shape) | ~np.isfinite(final)
    rows = [
        [
            str(i),
            *(f"{s[a]:g}" for a in axes),
            str(s["anneal"]).lower(),
            str(seed),
            f"{final[i, j]:.6g}",
            "" if where[i][j] is None else str(where[i][j]),
        ]
        for i, s in enumerate(plan.settings)
        for j, seed in enumerate(plan.seeds)
    ]
    header = ["setting", *axes, "anneal", "seed", "final_return", "diverged_at_update"]
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    atomic_write(out / "results.csv", lambda f: f.write(text.encode()))
    atomic_write(
        out / "curves.npz",
        lambda f: np.savez(
            f,
            returns=returns,
            finite=metrics["finite"],
            env_steps=env_steps(plan.config),
            seeds=np.asarray(plan.seeds),
        ),
    )
    per_setting = []
    for i, s in enumerate(plan.settings):
        finite = bool(np.all(np.isfinite(final[i])))
        stats = (
            summarise(final[i])
            if finite
            else {"mean": None, "num_seeds": len(plan.seeds)}
        )
        per_setting.append(
            {
                "setting": i,
                **s,
                **stats,
                "diverged": bool(diverged[i].any()),
                "diverged_seeds": [
                    seed for j, seed in enumerate(plan.seeds) if diverged[i, j]
                ],
                "diverged_at_update": where[i],
            }
        )
    try:
        best = best_setting(final, returns.mean(axis=-1), diverged)
    except TuningError:
        best = None
    summary = {
        "command": list(command),
        "env": plan.env,
        "algo": plan.algo,
        "preset": plan.preset,
        "optimizer": plan.grid.optimizer,
        "grid": {**plan.grid.values, "anneal": list(plan.grid.anneal)},
        "seeds": list(plan.seeds),
        "total_timesteps": plan.config.num_frames,
        plan.algo: dataclasses.asdict(plan.config),
        "best": None if best is None else per_setting[best],
        "settings": per_setting,
        "wall_time_s": wall_time,
        "versions": versions(),
    }
    if best is not None:
        write_tuned(
            out / "tuned.json",
            TunedSettings(
                env=plan.env,
                optimizer=plan.grid.optimizer,
                hyperparams=dict(plan.settings[best]),
                baseline_return=float(final[best].mean()),
                preset=plan.preset,
                num_seeds=len(plan.seeds),
                total_timesteps=summary["total_timesteps"],
                algo=plan.algo,
            ),
        )
    write_json(out / "summary.json", summary)
    return summary
