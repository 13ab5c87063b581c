"""Experiment tracking: a run's config, metrics and figures to Weights & Biases
and TensorBoard (``--log wandb``, ``--log tensorboard``, both allowed).

Inner runs log once per chunk of updates, when the chunk's metrics have left the
device anyway (as the progress bar updates), so tracking never slows the jitted
loop: per update, each scalar metric's mean over seeds (``return``, the losses,
``dormant_fraction``, ``update_magnitude``, ...) and the return of every seed,
against environment steps. Meta-training logs per generation: fitness per task,
held-out return, sigma, the ES learning rate, throughput. Figures are logged when
the command has written them.

TensorBoard event files go to ``<run dir>/tensorboard`` (tensorboardX, no
TensorFlow needed); W&B runs to ``<run dir>/wandb``, online when wandb has an API
key, else offline (``wandb sync`` uploads them later; ``WANDB_MODE`` decides when
set). Both are extras: ``pip install -e '.[tensorboard]'`` / ``'.[wandb]'``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRACKERS = ("wandb", "tensorboard")
EXTRAS = {"wandb": ("wandb", "wandb"), "tensorboard": ("tensorboardX", "tensorboard")}


class TrackingError(ValueError):
    """A tracker that does not exist or cannot be started."""


def _import(kind: str):
    module, extra = EXTRAS[kind]
    try:
        return __import__(module)
    except ImportError as err:
        raise TrackingError(
            f"--log {kind} needs {module}: pip install -e '.[{extra}]'"
        ) from err


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The ``--log`` values, checked (and their packages importable) before any
    work starts."""
    unknown = [k for k in kinds if k not in TRACKERS]
    if unknown:
        raise TrackingError(
            f"unknown --log {', '.join(unknown)}; choose from {', '.join(TRACKERS)}"
        )
    for kind in kinds:
        _import(kind)
    return tuple(dict.fromkeys(kinds))


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite-or-not float scalars of one record, nested keys joined by
    ``/`` (``{"fitness": {"mean": 1}}`` -> ``{"fitness/mean": 1.0}``)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out.update({f"{key}/{k}": v for k, v in scalars(value).items()})
        elif isinstance(value, bool) or value is None:
            continue
        elif np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number):
            out[key] = float(value)
    return out


def per_update(
    metrics: Mapping[str, np.ndarray], seeds: Sequence[int]
) -> list[dict[str, float]]:
    """One record per update from a chunk of metrics of shape ``(seeds,
    updates, ...)``: each scalar metric's mean over seeds, and each seed's
    return."""
    records = []
    updates = np.asarray(metrics["return"]).shape[1]
    for t in range(updates):
        record = {}
        for name, values in metrics.items():
            values = np.asarray(values)
            if values.ndim == 2:
                record[f"{name}/mean"] = float(np.mean(values[:, t]))
        for i, seed in enumerate(seeds):
            record[f"return/seed_{seed}"] = float(metrics["return"][i, t])
        records.append(record)
    return records


class Tracker:
    """Where a run's records go; this base sends them nowhere."""

    def config(self, config: Mapping[str, Any]) -> None:
        """The run's settings, once, at the start."""

    def log(self, records: Mapping[str, float], step: int, axis: str) -> None:
        """Scalars at ``step`` of the x-axis named ``axis`` (e.g. ``env_steps``,
        ``generation``)."""

    def figures(self, paths: Sequence[Path]) -> None:
        """PNG figures the command wrote."""

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path):
        tensorboardx = _import("tensorboard")
        self.writer = tensorboardx.SummaryWriter(
            logdir=str(Path(run_dir) / "tensorboard")
        )

    def config(self, config):
        text = json.dumps(config, indent=2, default=str)
        self.writer.add_text("config", f"```\n{text}\n```", 0)

    def log(self, records, step, axis):
        for name, value in records.items():
            self.writer.add_scalar(name, value, global_step=int(step))

    def figures(self, paths):
        import matplotlib.image

        for path in paths:
            image = matplotlib.image.imread(path)[..., :3]
            self.writer.add_image(Path(path).stem, image, 0, dataformats="HWC")

    def close(self):
        self.writer.close()


class WandbTracker(Tracker):
    def __init__(self, run_dir: Path, name: str):
        wandb = _import("wandb")
        mode = os.environ.get("WANDB_MODE")
        if mode is None and not (os.environ.get("WANDB_API_KEY") or _netrc_has_wandb()):
            mode = "offline"
            print(
                "lopt: wandb has no API key here: logging offline to "
                f"{Path(run_dir) / 'wandb'} (upload later with wandb sync)"
            )
        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "lopt"),
            name=name,
            dir=str(run_dir),
            mode=mode,
            reinit="finish_previous",
        )
        self.axes: set[str] = set()

    def config(self, config):
        self.run.config.update(dict(config), allow_val_change=True)

    def log(self, records, step, axis):
        # W&B's own step must only grow, and eval logs one (env, optimizer) pair
        # after another: each group of metrics gets its x-axis as a metric.
        if axis not in self.axes:
            group = axis.rsplit("/", 1)[0] + "/" if "/" in axis else ""
            self.run.define_metric(axis)
            self.run.define_metric(f"{group}*", step_metric=axis)
            self.axes.add(axis)
        self.run.log({**records, axis: step})

    def figures(self, paths):
        self.run.log({Path(p).stem: self.wandb.Image(str(p)) for p in paths})

    def close(self):
        self.run.finish()


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class Trackers(Tracker):
    """Every tracker ``--log`` asked for, as one."""

    def __init__(self, trackers: Sequence[Tracker]):
        self.trackers = list(trackers)

    def config(self, config):
        for t in self.trackers:
            t.config(config)

    def log(self, records, step, axis):
        if records:
            for t in self.trackers:
                t.log(records, step, axis)

    def figures(self, paths):
        paths = [p for p in paths if Path(p).exists()]
        for t in self.trackers:
            t.figures(paths)

    def close(self):
        for t in self.trackers:
            t.close()

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_trackers(kinds: Sequence[str], run_dir: Path, name: str) -> Trackers:
    """The trackers of ``--log`` for the run in ``run_dir`` (none: a no-op)."""
    made = []
    for kind in check_kinds(kinds):
        made.append(
            TensorBoardTracker(run_dir)
            if kind == "tensorboard"
            else WandbTracker(run_dir, name)
        )
    return Trackers(made)
