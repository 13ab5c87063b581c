"""What a training run leaves in its directory.

``config.json`` (everything needed to rerun it), ``returns.csv`` (return per update
and seed), ``metrics.npz`` (every per-update metric, shape ``(seeds, updates)``)
and ``summary.json`` (final returns per seed and their statistics, whether the
run finished, which seeds diverged and where).
"""

from __future__ import annotations

import dataclasses
import io
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lopt import __version__
from lopt.atomic import atomic_write, write_json
from lopt.optim.optimizer import Optimizer
from lopt.rl.registry import algorithm_name
from lopt.summary import diverged_at, summarise


def versions() -> dict[str, str]:
    """Versions of lopt, Python and the libraries that shape the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    import jax

    found = {"lopt": __version__, "python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "gymnax", "evosax", "rliable"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found["platform"] = jax.default_backend()
    return found


def env_steps(config: Any) -> np.ndarray:
    """Environment steps done by the end of each update, shape ``(num_updates,)``."""
    return config.frames_per_update * np.arange(1, config.num_updates + 1)


def write_train_run(
    out: Path,
    config: Any,
    optimizer: Optimizer,
    seeds: Sequence[int],
    metrics: dict[str, np.ndarray],
    wall_time: float,
    command: Sequence[str],
    stopped_by: str | None = None,
) -> dict:
    """Writes a training run's records and returns its summary.

    ``metrics`` may cover fewer updates than ``config`` plans (a run stopped by
    ``stopped_by``, e.g. ``"SIGINT"``): the updates done are written, and the
    summary's ``status`` is ``partial`` with ``updates_done`` of
    ``updates_planned``. Seeds whose parameters, losses or updates stopped being
    finite are listed in ``diverged_seeds``, with the update where it happened
    (``diverged_at_update``, one entry per seed, null for a finite run).
    """
    out = Path(out)
    write_json(
        out / "config.json",
        {
            "command": list(command),
            # the settings under the algorithm's name: "ppo", "dqn", "iqn", "pqn"
            algorithm_name(config): dataclasses.asdict(config),
            "optimizer": optimizer.description,
            "seeds": list(seeds),
            "versions": versions(),
        },
    )
    returns = np.asarray(metrics["return"]) if metrics else np.zeros((len(seeds), 0))
    done = returns.shape[1]
    status = {
        "status": "finished" if done == config.num_updates else "partial",
        "updates_done": done,
        "updates_planned": config.num_updates,
        **({"stopped_by": stopped_by} if stopped_by else {}),
    }
    summary = {
        "env": config.env,
        "optimizer": optimizer.name,
        "total_timesteps": config.num_frames,
        "seeds": list(seeds),
        **status,
    }
    if not done:  # stopped before the first chunk of updates ended
        write_json(out / "summary.json", {**summary, "wall_time_s": wall_time})
        return summary
    steps = env_steps(config)[:done]
    header = "update,env_steps," + ",".join(f"seed_{s}" for s in seeds)
    rows = np.column_stack([np.arange(1, done + 1), steps, returns.T])
    buffer = io.StringIO()
    np.savetxt(buffer, rows, delimiter=",", header=header, comments="", fmt="%.6g")
    atomic_write(out / "returns.csv", lambda f: f.write(buffer.getvalue().encode()))
    atomic_write(
        out / "metrics.npz",
        lambda f: np.savez(f, env_steps=steps, seeds=np.asarray(seeds), **metrics),
    )
    final = returns[:, -1]
    where = diverged_at(metrics["finite"])
    summary.update(
        {
            "final_returns": [float(x) for x in final],
            **summarise(final),
            "diverged_seeds": [s for s, w in zip(seeds, where, strict=True) if w],
            "diverged_at_update": where,
            "final_dormant_fraction": float(
                np.mean(metrics["dormant_fraction"][:, -1])
            ),
            "wall_time_s": wall_time,
            "env_steps_per_second": len(seeds) * steps[-1] / wall_time,
        }
    )
    write_json(out / "summary.json", summary)
    return summary
