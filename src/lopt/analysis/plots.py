"""Figures from run results; never imported by training code.

Every figure is readable in greyscale (line styles differ, not only colours), with
labelled axes and units, and is saved as PNG (and SVG where asked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lopt.analysis.stats import mean_and_ci

LINE_STYLES = ("-", "--", "-.", ":")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_band(ax, x, runs: np.ndarray, style: str, label: str, **kwargs) -> None:
    """The mean of ``runs`` (shape ``(n, len(x))``) and its 95% band (n > 1)."""
    mean, half = mean_and_ci(runs)
    line = ax.plot(x, mean, style, label=label, **kwargs)[0]
    if runs.shape[0] > 1:
        ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)


def _save(fig, paths: Sequence[Path]) -> list[Path]:
    """Grid, layout, write to every path, close: the last steps of every figure."""
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    for path in paths:
        fig.savefig(path)
    _pyplot().close(fig)
    return list(paths)


def plot_learning_curves(
    env_steps: np.ndarray,
    curves: Mapping[str, np.ndarray],
    path: Path,
    *,
    title: str = "",
    ylabel: str = "return of the last completed episode",
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Mean and 95% confidence band over seeds of one curve per label.

    Args:
      env_steps: shape ``(T,)``: environment steps at each point.
      curves: label -> array of shape ``(num_seeds, T)``.
      path: output path without suffix, or with one (replaced by each format).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i, (label, values) in enumerate(curves.items()):
        values = np.asarray(values)
        style = LINE_STYLES[i % len(LINE_STYLES)]
        _mean_band(ax, env_steps, values, style, f"{label} (n={len(values)})", lw=1.6)
    ax.set_xlabel("environment steps (frames)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(title="mean ± 95% CI over seeds", fontsize=8, title_fontsize=8)
    return _save(fig, [Path(path).with_suffix(f".{fmt}") for fmt in formats])


def plot_meta_training(records: Sequence[dict], out_dir: Path) -> list[Path]:
    """``fitness.png`` (mean and best raw fitness per task over generations) and
    ``heldout.png`` (held-out return of the current optimizer) from metrics.jsonl."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    written = []
    gens = [r for r in records if "fitness" in r]
    if gens:
        envs = [k for k in gens[0]["fitness"] if k != "combined"]
        fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), dpi=120)
        for ax, env in zip(np.atleast_1d(axes), envs, strict=True):
            x = [r["generation"] for r in gens]
            for stat, style in (("mean", "-"), ("max", "--"), ("min", ":")):
                y = [r["fitness"][env][stat] for r in gens]
                y = [np.nan if v is None else v for v in y]
                ax.plot(x, y, style, label=f"{stat} over population")
            ax.set_title(env)
            ax.set_xlabel("generation")
            ax.set_ylabel("final return (raw fitness)")
            ax.legend(fontsize=8)
        written += _save(fig, [out_dir / "fitness.png"])
    evals = [r for r in records if "heldout" in r]
    if evals:
        envs = list(evals[0]["heldout"])
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
        for i, env in enumerate(envs):
            x = [r["generation"] for r in evals]
            runs = np.array([r["heldout"][env]["returns"] for r in evals]).T
            style = LINE_STYLES[i % len(LINE_STYLES)]
            _mean_band(ax, x, runs, style, env, marker="o", ms=3)
        ax.set_xlabel("generation")
        ax.set_ylabel("final return on held-out seeds")
        ax.set_title("current optimizer on held-out seeds (mean ± 95% CI)")
        ax.legend(fontsize=8)
        written += _save(fig, [out_dir / "heldout.png"])
    return written
