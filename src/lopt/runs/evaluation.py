"""Every optimizer on every environment over the same seeds, with diagnostics.

:func:`run_evaluation` trains an algorithm (PPO by default) for each
(environment, optimizer) pair over ``seeds`` (vmapped, through the executor), with
:mod:`lopt.optim.diagnostics` switched on, and writes one
``curves/<env>/<optimizer>.npz`` per pair: ``env_steps`` ``(T,)``, ``seeds`` and
every per-update metric ``(num_seeds, T, ...)``. The statistics and figures are
made from these files (:mod:`lopt.analysis`), never during training.

Besides the specs :func:`lopt.optim.spec.from_spec` takes, an optimizer may be
``tuned:PATH``: a ``tuned.json`` from ``lopt tune``, which must have been tuned
with the same algorithm, environment and preset variant; it is named after its
optimizer and settings, e.g. ``adam(lr=0.01,b1=0.9,b2=0.99,anneal)``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lopt.atomic import atomic_write, write_json
from lopt.configs.presets import Preset, preset_for
from lopt.configs.tuned import (
    TunedSettings,
    budget_mismatch,
    check_tuned,
    read_tuned,
)
from lopt.envs.registry import canonical_name
from lopt.optim.card import horizon_mismatch, read_card
from lopt.optim.optimizer import Optimizer
from lopt.optim.spec import OptimizerSpecError, from_spec
from lopt.rl.algorithm import AlgorithmConfig
from lopt.rl.executor import Executor, chunk_size, seed_keys
from lopt.rl.registry import config_type
from lopt.runs.records import env_steps, versions


@dataclasses.dataclass(frozen=True)
class Curves:
    """One (environment, optimizer) pair's per-update metrics over seeds."""

    env: str
    optimizer: str
    env_steps: np.ndarray  # shape=(T,)
    metrics: dict[str, np.ndarray]  # name -> (num_seeds, T, ...)

    @property
    def final_returns(self) -> np.ndarray:
        """shape ``(num_seeds,)``: the return at the last update (OPEN §3.3)."""
        return self.metrics["return"][:, -1]


def horizon_warning(optimizer: Any, config: AlgorithmConfig) -> str | None:
    """The warning for a learned optimizer file meta-trained at another horizon
    (its card, :mod:`lopt.optim.card`) than ``config``'s optimizer steps, or for a
    ``tuned:PATH`` optimizer tuned at another budget than ``config``'s."""
    if "tuned" in optimizer.description:
        return budget_mismatch(TunedSettings(**optimizer.description["tuned"]), config)
    spec = optimizer.description.get("spec", "")
    kind, _, path = spec.partition(":")
    if not optimizer.learned or kind == "velo" or not path:
        return None
    return horizon_mismatch(
        read_card(path), config.num_optimizer_steps, name=Path(path).name
    )


def replace_checked(config: AlgorithmConfig, field: str, value: Any) -> AlgorithmConfig:
    """``config`` with one setting changed, its checks rerun (a ValueError names it)."""
    try:
        return dataclasses.replace(config, **{field: value})
    except ValueError as err:
        raise ValueError(f"{field}={value}: {err}") from err


def replace_settings(
    config: AlgorithmConfig, changes: dict[str, Any]
) -> AlgorithmConfig:
    """``config`` with several settings changed at once, its checks rerun on the
    result (a ValueError names the changes)."""
    if not changes:
        return config
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as err:
        named = ", ".join(f"{k}={v}" for k, v in changes.items())
        raise ValueError(f"{named}: {err}") from err


def slug(name: str) -> str:
    """A file-name-safe form of an environment or optimizer name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def curves_path(out: Path, env: str, optimizer: str) -> Path:
    return Path(out) / "curves" / slug(env) / f"{slug(optimizer)}.npz"


def parse_sweep(text: str, algo: str = "ppo") -> tuple[str, tuple]:
    """``"hidden_size=16,64,256"`` -> ``("hidden_size", (16, 64, 256))``: a
    setting of ``algo``'s config and its values (typed like its default)."""
    field, sep, values = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(config_type(algo))}
    field = field.strip().replace("-", "_")
    if not sep or field not in fields or field in ("env", "diagnostics"):
        settable = sorted(set(fields) - {"env", "diagnostics"})
        raise ValueError(
            f"bad sweep {text!r}: write SETTING=V1,V2,... with SETTING one of "
            f"{', '.join(settable)}"
        )
    default = fields[field].default
    kind = float if default is None else type(default)
    try:
        # Integers may be written 5e4; a fraction given for one is refused.
        parsed = tuple(_typed(kind, v) for v in values.split(","))
    except ValueError as err:
        raise ValueError(f"bad value in sweep {text!r}: {err}") from err
    return field, parsed


def _typed(kind: type, text: str) -> Any:
    if kind is int:
        number = float(text)
        if not number.is_integer():
            raise ValueError(f"{text} is not a whole number")
        return int(number)
    return kind(text.strip())


TUNED_PREFIX = "tuned:"


def tuned_name(optimizer: str, hyperparams: dict[str, Any]) -> str:
    """``adam(lr=0.01,b1=0.9,b2=0.99,anneal)``: a tuned optimizer's name."""
    parts = []
    for key, value in hyperparams.items():
        if key == "anneal":
            parts.append("anneal" if value else "no-anneal")
        else:
            parts.append(f"{'lr' if key == 'learning_rate' else key}={value:g}")
    return f"{optimizer}({','.join(parts)})"


def resolve_reference(reference: str, specs: list[str], names: list[str]) -> str:
    """The evaluated optimizer's name that ``--reference`` means.

    Args:
      reference: the name or the ``--optimizers`` entry given (``adam``,
        ``tuned:runs/tune/x/tuned.json``).
      specs: the ``--optimizers`` entries, in order.
      names: the evaluated optimizers' names, one per entry of ``specs``.

    Returns:
      ``names[i]`` when ``reference`` is ``specs[i]``; the one name of the family
      ``reference`` (``adam(lr=0.01,...)`` for ``adam``) when ``reference`` itself
      was not evaluated but exactly one of its family was, so that comparing a
      learned optimizer with a tuned Adam needs no ``--reference``; else
      ``reference`` unchanged (the report then says it was not evaluated).
    """
    if reference in specs:
        return names[specs.index(reference)]
    if reference in names:
        return reference
    family = [n for n in names if n.split("(")[0] == reference]
    return family[0] if len(family) == 1 else reference


def eval_optimizer(
    spec: str, preset: Preset, variant: str, config: AlgorithmConfig
) -> Optimizer:
    """The optimizer ``spec`` names on one environment's ``preset`` (of preset
    ``variant``), with diagnostics of the learned noise on; ``tuned:PATH`` reads a
    tuned.json and checks it was tuned for this algorithm, environment and
    variant.

    Raises:
      ValueError (its subclasses): an unknown spec, a bad or mismatched file.
    """
    if not spec.strip().lower().startswith(TUNED_PREFIX):
        return from_spec(
            spec, preset.optimizers, track_noise=True, noise_mask=config.noise_mask()
        )
    path = spec.strip()[len(TUNED_PREFIX) :]
    if not path:
        raise OptimizerSpecError("tuned:PATH needs the path of a tuned.json")
    settings = read_tuned(path)
    check_tuned(settings, config, variant, path)
    optimizer = from_spec(
        settings.optimizer, {settings.optimizer: settings.hyperparams}
    )
    name = tuned_name(settings.optimizer, settings.hyperparams)
    return dataclasses.replace(
        optimizer,
        name=name,
        description={
            **optimizer.description,
            "name": name,
            "spec": f"{TUNED_PREFIX}{Path(path).resolve()}",
            "tuned": dataclasses.asdict(settings),
        },
    )


def run_evaluation(
    envs: Sequence[str],
    optimizer_specs: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    *,
    algo: str = "ppo",
    preset: str = "default",
    total_timesteps: int | None = None,
    overrides: dict[str, Any] | None = None,
    sweep: tuple[str, Sequence[Any]] | None = None,
    on_pair: Callable[[str, str, int], Callable[[int], None] | None] | None = None,
    on_metrics: Callable[[str, str, int, dict], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    command: Sequence[str] = (),
) -> list[Curves]:
    """Trains every optimizer on every environment; writes and returns the curves.

    Args:
      envs: environment names or aliases.
      optimizer_specs: as ``lopt train --optimizer`` takes them, or
        ``tuned:PATH``; hand-crafted ones use each environment's preset
        hyperparameters.
      seeds: the same seeds for every pair.
      out: the evaluation's directory.
      algo: the inner-loop algorithm (``ppo``, ``dqn``, ``iqn``, ``pqn``).
      preset: preset variant (``default``, ``small``, ``zero-shot``, ...).
      total_timesteps: environment steps per run (default: the preset's).
      overrides: other settings of the algorithm changed on every environment,
        e.g. ``{"num_envs": 64}``.
      sweep: ``(setting, values)``: each environment is run once per value of a
        setting of the algorithm (agent width ``hidden_size``, training length
        ``total_timesteps``, ...) and each becomes a task named
        ``env[setting=value]``.
      on_pair: called with (env, optimizer name, num_updates) before each pair;
        may return a progress callback taking the updates done.
      on_metrics: called with (env, optimizer name, updates done, metrics) after
        each chunk of updates (experiment tracking).
      on_warning: called with the text of each warning (a learned optimizer
        meta-trained at another horizon than the run's), before training.
      command: recorded in ``config.json``.

    Raises:
      ValueError (its subclasses): an unknown environment or optimizer, a bad
      optimizer file; all are checked before anything trains.
    """
    pairs = []
    for env in envs:
        env_preset = preset_for(env, preset, algo)
        config = dataclasses.replace(env_preset.config, diagnostics=True)
        if total_timesteps is not None:
            config = dataclasses.replace(config, total_timesteps=total_timesteps)
        config = replace_settings(config, dict(overrides or {}))
        name = canonical_name(env)
        variants = [(name, config)]
        if sweep is not None:
            field, values = sweep
            variants = [
                (f"{name}[{field}={v}]", replace_checked(config, field, v))
                for v in values
            ]
        optimizers = [
            eval_optimizer(spec, env_preset, preset, config) for spec in optimizer_specs
        ]
        for task, task_config in variants:
            pairs += [(task, task_config, optimizer) for optimizer in optimizers]
    names = [o.name for _, _, o in pairs[: len(optimizer_specs)]]
    shared = sorted({n for n in names if names.count(n) > 1})
    if shared:
        raise ValueError(
            f"two optimizers share the name {', '.join(shared)}: copy one of their "
            "files to another name (tables and curves are keyed by name)"
        )
    write_json(
        Path(out) / "config.json",
        {
            "command": list(command),
            "seeds": list(seeds),
            "runs": [
                {
                    "env": env,
                    algo: dataclasses.asdict(config),
                    "optimizer": optimizer.description,
                }
                for env, config, optimizer in pairs
            ],
            "versions": versions(),
        },
    )

    for env, config, optimizer in pairs:
        warning = horizon_warning(optimizer, config)
        if warning and on_warning is not None:
            on_warning(f"{env}: {warning}")
    results = []
    for env, config, optimizer in pairs:
        progress = on_pair(env, optimizer.name, config.num_updates) if on_pair else None
        executor = Executor(config, optimizer, chunk=chunk_size(config.num_updates))
        metrics, _ = executor(
            seed_keys(seeds),
            on_progress=progress,
            on_metrics=functools.partial(on_metrics, env, optimizer.name)
            if on_metrics
            else None,
        )
        curves = Curves(env, optimizer.name, env_steps(config), metrics)
        atomic_write(
            curves_path(out, env, optimizer.name),
            lambda f, c=curves: np.savez(
                f, env_steps=c.env_steps, seeds=np.asarray(seeds), **c.metrics
            ),
        )
        results.append(curves)
    return results


def read_curves(out: Path, env: str, optimizer: str) -> Curves:
    """One pair's curves as :func:`run_evaluation` wrote them into ``out``."""
    with np.load(curves_path(out, env, optimizer)) as data:
        metrics = {k: data[k] for k in data.files if k not in ("env_steps", "seeds")}
        return Curves(env, optimizer, data["env_steps"], metrics)
