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


def _formats(path: Path, formats: Sequence[str]) -> list[Path]:
    """``path`` with each format's suffix."""
    return [Path(path).with_suffix(f".{fmt}") for fmt in formats]


def _save(fig, paths: Sequence[Path], tidy: bool = True) -> list[Path]:
    """Grid and tight layout (unless ``tidy`` is False: a figure with its own
    layout and a colour bar), write to every path, close."""
    if tidy:
        for ax in fig.axes:
            ax.grid(alpha=0.3)
        fig.tight_layout()
    for path in paths:
        fig.savefig(path)
    _pyplot().close(fig)
    return list(paths)


def plot_learning_curves(
    env_steps: np.ndarray | Mapping[str, np.ndarray],
    curves: Mapping[str, np.ndarray],
    path: Path,
    *,
    title: str = "",
    ylabel: str = "return of the last completed episode",
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Mean and 95% confidence band over seeds of one curve per label.

    Args:
      env_steps: shape ``(T,)``: environment steps at each point; or label ->
        its own steps (curves of different lengths, e.g. two agents' settings).
      curves: label -> array of shape ``(num_seeds, T)``.
      path: output path without suffix, or with one (replaced by each format).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i, (label, values) in enumerate(curves.items()):
        values = np.asarray(values)
        style = LINE_STYLES[i % len(LINE_STYLES)]
        steps = env_steps[label] if isinstance(env_steps, Mapping) else env_steps
        _mean_band(ax, steps, values, style, f"{label} (n={len(values)})", lw=1.6)
    ax.set_xlabel("environment steps (frames)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(title="mean ± 95% CI over seeds", fontsize=8, title_fontsize=8)
    return _save(fig, _formats(path, formats))


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
            # null: a non-finite return (a diverged run), written as JSON null
            runs = np.array([r["heldout"][env]["returns"] for r in evals], float).T
            style = LINE_STYLES[i % len(LINE_STYLES)]
            _mean_band(ax, x, runs, style, env, marker="o", ms=3)
        ax.set_xlabel("generation")
        ax.set_ylabel("final return on held-out seeds")
        ax.set_title("current optimizer on held-out seeds (mean ± 95% CI)")
        ax.legend(fontsize=8)
        written += _save(fig, [out_dir / "heldout.png"])
    return written


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")


def plot_intervals(
    estimates: Mapping[str, Mapping[str, Mapping[str, float]]],
    path: Path,
    *,
    title: str = "",
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Point estimates and 95% intervals, one panel per aggregate (rliable style).

    Args:
      estimates: optimizer -> aggregate -> ``{"point", "low", "high"}``, as
        :func:`lopt.analysis.stats.interval_estimates` returns.
      path: output path; its suffix is replaced by each format.
    """
    plt = _pyplot()
    names = list(estimates)
    aggregates = list(next(iter(estimates.values())))
    fig, axes = plt.subplots(
        1, len(aggregates), figsize=(3.0 * len(aggregates), 0.5 * len(names) + 1.4)
    )
    for ax, agg in zip(np.atleast_1d(axes), aggregates, strict=True):
        for i, name in enumerate(names):
            e = estimates[name][agg]
            ax.plot([e["low"], e["high"]], [i, i], color="0.3", lw=4, alpha=0.5)
            ax.plot(e["point"], i, MARKERS[i % len(MARKERS)], color="black", ms=6)
        ax.set_yticks(range(len(names)), names if ax is np.atleast_1d(axes)[0] else [])
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_title(
            agg.replace("_", " ") + (" (lower is better)" if "gap" in agg else "")
        )
        ax.set_xlabel("score")
    if title:
        fig.suptitle(title)
    return _save(fig, _formats(path, formats))


def plot_cosines(
    cosines: Mapping[str, np.ndarray],
    labels: Sequence[str],
    path: Path,
    *,
    title: str = "",
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Grouped bars: each optimizer's mean cosine similarity of its updates with
    the gradient and each momentum (± s.e. over seeds).

    Args:
      cosines: optimizer -> shape ``(num_seeds, len(labels))``: per seed, the
        similarity averaged over training.
      labels: what each column is compared with.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.8), dpi=120)
    width = 0.8 / max(1, len(cosines))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(cosines.items()):
        values = np.asarray(values)
        mean = values.mean(axis=0)
        err = (
            values.std(axis=0, ddof=1) / np.sqrt(len(values))
            if len(values) > 1
            else None
        )
        ax.bar(
            x + (i - (len(cosines) - 1) / 2) * width,
            mean,
            width,
            yerr=err,
            label=name,
            color=str(0.25 + 0.5 * i / max(1, len(cosines) - 1)),
            edgecolor="black",
            hatch=HATCHES[i % len(HATCHES)],
            capsize=2,
        )
    ax.set_xticks(x, labels, rotation=20)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylabel("cosine similarity with the update")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # room for the legend
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", ncols=min(3, len(cosines)))
    return _save(fig, _formats(path, formats))


def plot_update_vs_gradient(
    samples: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    *,
    title: str = "",
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Update against gradient for a sample of parameters, shaded by time.

    Args:
      samples: optimizer -> ``(gradients, updates)``, each of shape
        ``(T, sample_size)`` (one seed; row t is update t).
    """
    plt = _pyplot()
    from matplotlib.colors import LinearSegmentedColormap

    # Light grey (early) to black (late): visible on white at every time.
    cmap = LinearSegmentedColormap.from_list("time", ["0.75", "0.0"])
    fig, axes = plt.subplots(
        1,
        len(samples),
        figsize=(3.6 * len(samples) + 1.0, 3.6),
        dpi=120,
        squeeze=False,
        layout="constrained",
    )
    for ax, (name, (grads, updates)) in zip(axes[0], samples.items(), strict=True):
        t = np.broadcast_to(np.linspace(0, 1, len(grads))[:, None], np.shape(grads))
        points = ax.scatter(
            np.ravel(grads),
            np.ravel(updates),
            c=t.ravel(),
            cmap=cmap,
            vmin=0,
            vmax=1,
            s=4,
            edgecolors="none",
        )
        ax.axhline(0, color="black", lw=0.5)
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(name)
        ax.set_xlabel("gradient (clipped)")
        ax.set_ylabel("update")
        ax.ticklabel_format(style="sci", scilimits=(-2, 2))
    fig.colorbar(points, ax=axes[0].tolist(), label="training proportion")
    if title:
        fig.suptitle(title)
    return _save(fig, _formats(path, formats), tidy=False)


def plot_tuning(
    learning_rates: Sequence[float],
    lines: Mapping[str, np.ndarray],
    path: Path,
    *,
    best: tuple[float, float] | None = None,
    title: str = "",
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Final return against learning rate (log axis), one line per other setting.

    Args:
      learning_rates: shape ``(L,)``, increasing.
      lines: label (e.g. ``b1=0.9 b2=0.99 anneal=on``) -> final returns of shape
        ``(L, num_seeds)``; NaN (a diverged run) leaves a gap.
      best: ``(learning_rate, mean return)`` of the chosen setting, marked.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    x = np.asarray(learning_rates, np.float64)
    for i, (label, values) in enumerate(lines.items()):
        values = np.asarray(values, np.float64)
        style = LINE_STYLES[i % len(LINE_STYLES)]
        marker = MARKERS[i % len(MARKERS)]
        _mean_band(ax, x, values.T, style, label, marker=marker, ms=4, lw=1.4)
    if best is not None:
        ax.plot(*best, "k*", ms=14, mfc="none", label="best (mean final return)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final return (mean ± 95% CI over seeds)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, _formats(path, formats))


def _errors(estimates: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Matplotlib's error-bar offsets, shape ``(2, n)``, from interval estimates."""
    return np.array(
        [
            [e["point"] - e["low"] for e in estimates],
            [e["high"] - e["point"] for e in estimates],
        ]
    )


def _finish(fig, ax, labels: tuple[str, str, str], paths: list[Path]) -> list[Path]:
    """Axis labels, title and a legend of point estimates, then save."""
    xlabel, ylabel, title = labels
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, title="point and 95% CI", title_fontsize=8)
    return _save(fig, paths)


def plot_xy_intervals(
    points: Mapping[str, tuple[Mapping[str, float], Mapping[str, float]]],
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """One point per label with its 95% intervals on both axes (e.g. OPEN's
    ablation figure: IQM of final return against mean dormancy).

    Args:
      points: label -> ``(x, y)``, each ``{"point", "low", "high"}``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for i, (label, (x, y)) in enumerate(points.items()):
        ax.errorbar(
            [x["point"]],
            [y["point"]],
            xerr=_errors([x]),
            yerr=_errors([y]),
            fmt=MARKERS[i % len(MARKERS)],
            color=str(0.55 * i / max(1, len(points) - 1)),
            capsize=3,
            label=label,
        )
    return _finish(fig, ax, (xlabel, ylabel, title), _formats(path, formats))


def plot_interval_lines(
    x: Sequence[float],
    lines: Mapping[str, Sequence[Mapping[str, float]]],
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Estimates with 95% intervals against ``x``, one line per label (e.g. the
    gain from learned noise against Deep Sea's size).

    Args:
      lines: label -> one ``{"point", "low", "high"}`` per value of ``x``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i, (label, estimates) in enumerate(lines.items()):
        ax.errorbar(
            x,
            [e["point"] for e in estimates],
            yerr=_errors(estimates),
            fmt=MARKERS[i % len(MARKERS)] + LINE_STYLES[i % len(LINE_STYLES)],
            color="black",
            capsize=3,
            label=label,
        )
    ax.axhline(0.0, color="0.6", lw=0.8)
    return _finish(fig, ax, (xlabel, ylabel, title), _formats(path, formats))
