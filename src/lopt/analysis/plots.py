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
