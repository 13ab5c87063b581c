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
        mean, half = mean_and_ci(values)
        style = LINE_STYLES[i % len(LINE_STYLES)]
        n = values.shape[0]
        line = ax.plot(env_steps, mean, style, lw=1.6, label=f"{label} (n={n})")[0]
        if n > 1:
            ax.fill_between(
                env_steps, mean - half, mean + half, color=line.get_color(), alpha=0.2
            )
    ax.set_xlabel("environment steps (frames)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="mean ± 95% CI over seeds", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    written = []
    for fmt in formats:
        out = Path(path).with_suffix(f".{fmt}")
        fig.savefig(out)
        written.append(out)
    plt.close(fig)
    return written


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
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out_dir / "fitness.png")
        fig.savefig(written[-1])
        plt.close(fig)
    evals = [r for r in records if "heldout" in r]
    if evals:
        envs = list(evals[0]["heldout"])
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
        for i, env in enumerate(envs):
            x = [r["generation"] for r in evals]
            runs = np.array([r["heldout"][env]["returns"] for r in evals])
            mean, half = mean_and_ci(runs.T)
            line = ax.plot(x, mean, LINE_STYLES[i % 4], marker="o", ms=3, label=env)[0]
            ax.fill_between(
                x, mean - half, mean + half, color=line.get_color(), alpha=0.2
            )
        ax.set_xlabel("generation")
        ax.set_ylabel("final return on held-out seeds")
        ax.set_title("current optimizer on held-out seeds (mean ± 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out_dir / "heldout.png")
        fig.savefig(written[-1])
        plt.close(fig)
    return written
