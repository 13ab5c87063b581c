"""An evaluation's statistics, figures and report, from its per-pair curves.

:func:`analyse` takes the curves of :func:`lopt.runs.evaluation.run_evaluation`
and writes into the evaluation's directory:

- ``summary.json``: final returns per environment, optimizer and seed; per
  environment the mean, median and IQM of final return with 95% stratified
  bootstrap intervals; across environments the same and the optimality gap of
  scores normalised by the reference optimizer (Adam by default); the
  probability of improvement of each optimizer over the reference, per
  environment and across them, with its interval;
- ``figures/``: learning curves, interval plots, dormant fraction, learned noise,
  cosine similarities of updates with the gradient and momenta, and update against
  gradient (PNG and SVG);
- ``report.md`` and ``report.html`` (self-contained: images embedded) with the
  tables, the figures, the command and the versions.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lopt.analysis import plots
from lopt.analysis.stats import (
    AGGREGATES,
    RUN_AGGREGATES,
    interval_estimates,
    normalise,
    probability_of_improvement,
    run_aggregate,
)
from lopt.atomic import atomic_write, write_json
from lopt.optim.features import MOMENTUM_DECAYS
from lopt.runs.evaluation import Curves, slug
from lopt.summary import diverged_at

COSINE_LABELS = ("gradient", *(f"momentum β={b:g}" for b in MOMENTUM_DECAYS))


def _by_env(curves: Sequence[Curves]) -> dict[str, dict[str, Curves]]:
    out: dict[str, dict[str, Curves]] = {}
    for c in curves:
        out.setdefault(c.env, {})[c.optimizer] = c
    return out


def _env_figures(env: str, pairs: dict[str, Curves], fig_dir: Path) -> list[Path]:
    name = slug(env)
    steps = {k: c.env_steps for k, c in pairs.items()}
    figures = plots.plot_learning_curves(
        steps,
        {k: c.metrics["return"] for k, c in pairs.items()},
        fig_dir / f"return_{name}",
        title=f"{env}: return",
        formats=("png", "svg"),
    )
    figures += plots.plot_learning_curves(
        steps,
        {k: c.metrics["dormant_fraction"] for k, c in pairs.items()},
        fig_dir / f"dormancy_{name}",
        title=f"{env}: dormant neurons (score ≤ 1e-7)",
        ylabel="dormant fraction of hidden neurons",
        formats=("png", "svg"),
    )
    noisy = {
        k: c.metrics["noise_magnitude"]
        for k, c in pairs.items()
        if np.all(np.isfinite(c.metrics["noise_magnitude"]))
    }
    if noisy:
        figures += plots.plot_learning_curves(
            steps,
            noisy,
            fig_dir / f"noise_{name}",
            title=f"{env}: learned noise on the actor",
            ylabel="sum |noise| / sum |actor params|",
            formats=("png", "svg"),
        )
    cosines = {
        k: np.concatenate(
            [
                c.metrics["cos_gradient"].mean(axis=1, keepdims=True),
                c.metrics["cos_momentum"].mean(axis=1),
            ],
            axis=1,
        )
        for k, c in pairs.items()
    }
    figures += plots.plot_cosines(
        cosines,
        COSINE_LABELS,
        fig_dir / f"cosine_{name}",
        title=f"{env}: updates against gradient and momenta (mean over training)",
    )
    figures += plots.plot_update_vs_gradient(
        {
            k: (c.metrics["sample_gradient"][0], c.metrics["sample_update"][0])
            for k, c in pairs.items()
        },
        fig_dir / f"update_vs_gradient_{name}",
        title=f"{env}: a sample of parameters, first seed",
    )
    return figures


def analyse(
    curves: Sequence[Curves],
    out: Path,
    *,
    reference: str | None = "adam",
    reps: int = 2000,
    seed: int = 0,
    command: Sequence[str] = (),
    versions: dict | None = None,
) -> dict[str, Any]:
    """Statistics, figures and report of an evaluation; returns the summary.

    Args:
      curves: every (environment, optimizer) pair, the same seeds for each.
      out: the evaluation's directory.
      reference: the optimizer that normalises scores across environments (its
        mean final return is 1 on each); None or absent: no normalised table.
      reps, seed: of the bootstrap.
    """
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    by_env = _by_env(curves)
    final = {
        env: {k: c.final_returns for k, c in pairs.items()}
        for env, pairs in by_env.items()
    }
    per_env = {
        env: interval_estimates(
            {k: v[:, None] for k, v in scores.items()},
            reps,
            seed,
            func=run_aggregate,
            names=RUN_AGGREGATES,
        )
        for env, scores in final.items()
    }
    figures: list[Path] = []
    for env, pairs in by_env.items():
        figures += plots.plot_intervals(
            {k: {a: e[a] for a in RUN_AGGREGATES} for k, e in per_env[env].items()},
            fig_dir / f"intervals_{slug(env)}",
            title=f"{env}: final return (95% stratified bootstrap CIs)",
        )
        figures += _env_figures(env, pairs, fig_dir)
    normalised, skipped = None, None
    names = list(next(iter(final.values())))
    if reference is None or reference not in names:
        skipped = f"the reference optimizer {reference!r} was not evaluated"
    else:
        try:
            normalised = interval_estimates(normalise(final, reference), reps, seed)
        except ValueError as err:  # e.g. negative returns (Acrobot)
            skipped = str(err)
    improvement = None
    if reference is not None and reference in names:
        improvement = improvement_over(final, reference, reps, seed)
    if normalised is not None:
        figures += plots.plot_intervals(
            normalised,
            fig_dir / "intervals_normalised",
            title=f"{len(final)} environment(s), scores / {reference}'s mean return",
        )
    summary = {
        "final_returns": {
            env: {k: v.tolist() for k, v in s.items()} for env, s in final.items()
        },
        "diverged": diverged_runs(curves),
        "per_env": per_env,
        "normalised": normalised,
        "reference": reference if normalised is not None else None,
        "normalised_skipped": skipped,
        "improvement": improvement,
        "num_seeds": len(curves[0].final_returns),
        "bootstrap": {"reps": reps, "seed": seed, "confidence": 0.95},
        "command": list(command),
        "versions": versions or {},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(out / "summary.json", summary)
    _write_report(summary, [f for f in figures if f.suffix == ".png"], out)
    return summary


def diverged_runs(curves: Sequence[Curves]) -> dict[str, dict[str, dict]]:
    """env -> optimizer -> ``{"seeds": [...], "at_update": [...]}`` for every pair
    with a run that diverged (non-finite parameters, losses or updates, or a
    non-finite return); seed positions count from 0, updates from 1."""
    out: dict[str, dict[str, dict]] = {}
    for c in curves:
        finite = c.metrics.get("finite", np.ones(c.metrics["return"].shape, bool))
        finite = np.logical_and(finite, np.isfinite(c.metrics["return"]))
        where = diverged_at(finite)
        if any(w is not None for w in where):
            out.setdefault(c.env, {})[c.optimizer] = {
                "seeds": [i for i, w in enumerate(where) if w is not None],
                "at_update": where,
            }
    return out


def improvement_over(
    final: dict[str, dict[str, np.ndarray]], reference: str, reps: int, seed: int
) -> dict[str, Any]:
    """P(X > ``reference``) with 95% intervals, per task and across the tasks
    that have every optimizer (see :func:`~lopt.analysis.stats.
    probability_of_improvement`).

    Args:
      final: task -> optimizer -> final returns, shape ``(num_seeds,)``.

    Returns:
      ``{"reference", "per_env": {task: {optimizer: estimate}}, "all": {optimizer:
      estimate} or None}`` (``all`` needs two tasks or more, all with the same
      optimizers and number of seeds).
    """
    per_env = {
        env: probability_of_improvement(
            {k: np.asarray(v)[:, None] for k, v in scores.items()},
            reference,
            reps,
            seed,
        )
        for env, scores in final.items()
        if reference in scores
    }
    across = None
    tasks = list(final.values())
    runs = len(tasks[0][reference])
    same = all(
        set(t) == set(tasks[0]) and all(len(v) == runs for v in t.values())
        for t in tasks
    )
    if len(tasks) > 1 and same:
        across = probability_of_improvement(
            {k: np.stack([t[k] for t in tasks], axis=1) for k in tasks[0]},
            reference,
            reps,
            seed,
        )
    return {"reference": reference, "per_env": per_env, "all": across}


def _cell(e: dict[str, float]) -> str:
    if e["point"] is None or not np.isfinite(e["point"]):
        return "diverged"
    return f"{e['point']:.3g} [{e['low']:.3g}, {e['high']:.3g}]"


def _diverged_cell(summary: dict, env: str, name: str) -> str:
    runs = summary.get("diverged", {}).get(env, {}).get(name)
    return f"{len(runs['seeds'])}/{summary['num_seeds']}" if runs else "0"


def _cell_or_dash(e: dict[str, float] | None) -> str:
    return "—" if e is None else _cell(e)


def tables(summary: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as (title, header, rows) of strings."""
    out = []
    for env, estimates in summary["per_env"].items():
        header = [
            "optimizer",
            *(f"{a} [95% CI]" for a in RUN_AGGREGATES),
            "diverged seeds",
        ]
        rows = [
            [
                name,
                *(_cell(e[a]) for a in RUN_AGGREGATES),
                _diverged_cell(summary, env, name),
            ]
            for name, e in estimates.items()
        ]
        out.append((f"{env}: final return", header, rows))
    if summary["normalised"]:
        header = ["optimizer", *(f"{a} [95% CI]" for a in AGGREGATES)]
        rows = [
            [name, *(_cell(e[a]) for a in AGGREGATES)]
            for name, e in summary["normalised"].items()
        ]
        title = f"all environments: final return / {summary['reference']}'s mean"
        out.append((title, header, rows))
    improvement = summary.get("improvement")
    if improvement and improvement["per_env"]:
        envs = list(improvement["per_env"])
        across = improvement["all"]
        header = ["optimizer", *envs, *(["all environments"] if across else [])]
        names = list(next(iter(improvement["per_env"].values())))
        rows = [
            [
                name,
                *(_cell_or_dash(improvement["per_env"][env].get(name)) for env in envs),
                *([_cell(across[name])] if across else []),
            ]
            for name in names
        ]
        title = (
            f"probability of improvement over {improvement['reference']}, "
            "P(X > reference) [95% CI]"
        )
        out.append((title, header, rows))
    return out


def notes(summary: dict) -> list[str]:
    """What the report leaves out, and why; which runs diverged, and where."""
    found = []
    for env, pairs in summary.get("diverged", {}).items():
        for name, runs in pairs.items():
            where = ", ".join(
                f"seed {i} at update {runs['at_update'][i]}" for i in runs["seeds"]
            )
            found.append(
                f"Diverged: {name} on {env}, {len(runs['seeds'])} of "
                f"{summary['num_seeds']} seeds (non-finite parameters, losses or "
                f"updates; counted from the first seed, 0): {where}."
            )
    if summary["normalised_skipped"]:
        found.append(f"No normalised table: {summary['normalised_skipped']}.")
    return found


def _write_report(summary: dict, figures: Sequence[Path], out: Path) -> None:
    command = " ".join(summary["command"]) or "(library call)"
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    intro = (
        f"{summary['num_seeds']} seeds per optimizer and environment; 95% stratified "
        f"bootstrap confidence intervals ({summary['bootstrap']['reps']} resamples, "
        "rliable). IQM: mean of the middle 50% of runs. Optimality gap: mean "
        "shortfall of normalised scores below 1 (lower is better). Probability of "
        "improvement: the chance that a run of an optimizer ends above a run of the "
        "reference (0.5: neither is better), averaged over environments."
    )
    write_document(
        out,
        "lopt evaluation",
        [
            ("code", f"Command: {command}"),
            ("text", f"Versions: {versions}. Date: {summary['date']}."),
            ("text", intro),
            *(("text", note) for note in notes(summary)),
        ],
        tables(summary),
        figures,
    )


Paragraph = tuple[str, str]
"""``("text", words)``, ``("code", words)`` (the part after the first ": " set as
code) or ``("link", "label|relative path")``."""


def write_document(
    out: Path,
    title: str,
    paragraphs: Sequence[Paragraph],
    table_list: Sequence[tuple[str, list[str], list[list[str]]]],
    figures: Sequence[Path] = (),
    stem: str = "report",
) -> None:
    """Writes ``<stem>.md`` and a self-contained ``<stem>.html`` (figures embedded)
    into ``out``: a title, paragraphs, tables (title, header, rows) and figures
    (PNG files under ``out``)."""
    out = Path(out)
    md = [f"# {title}", ""]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#111}",
        "table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #999;padding:.3em .6em;text-align:right}",
        "td:first-child,th:first-child{text-align:left}",
        "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}",
        "code{background:#f3f3f3;padding:.1em .3em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for kind, words in paragraphs:
        if kind == "code":
            label, _, code = words.partition(": ")
            md += [f"{label}: `{code}`", ""]
            parts += [f"<p>{html.escape(label)}: <code>{html.escape(code)}</code></p>"]
        elif kind == "link":
            label, _, target = words.partition("|")
            md += [f"[{label}]({target})", ""]
            link = f"<a href='{html.escape(target)}'>{html.escape(label)}</a>"
            parts += [f"<p>{link}</p>"]
        else:
            md += [words, ""]
            parts += [f"<p>{html.escape(words)}</p>"]
    for table_title, header, rows in table_list:
        md += [f"## {table_title}", "", "| " + " | ".join(header) + " |"]
        md += ["|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        parts += [f"<h2>{html.escape(table_title)}</h2><table><tr>"]
        parts += [f"<th>{html.escape(h)}</th>" for h in header] + ["</tr>"]
        for r in rows:
            parts += ["<tr>", *(f"<td>{html.escape(c)}</td>" for c in r), "</tr>"]
        parts += ["</table>"]
    if figures:
        md += ["## Figures", ""]
        parts += ["<h2>Figures</h2>"]
    for fig in figures:
        rel = fig.relative_to(out).as_posix()
        md += [f"![{fig.stem}]({rel})", ""]
        data = base64.b64encode(fig.read_bytes()).decode()
        parts += [f"<img alt='{fig.stem}' src='data:image/png;base64,{data}'>"]
    parts += ["</body></html>"]
    atomic_write(out / f"{stem}.md", lambda f: f.write("\n".join(md).encode()))
    atomic_write(out / f"{stem}.html", lambda f: f.write("\n".join(parts).encode()))
