"""ablations: full OPEN and each ablated variant, meta-trained on the same task
with the same ES budget, evaluated on held-out seeds: IQM of final return and
mean dormancy per variant (OPEN §8.6 and the paper's figure of IQM against
dormancy).

Variants: full OPEN; OPEN without ``training_prop``, ``batch_prop``,
``layer_prop``, ``dormancy`` (each input removed from the network) or the
learned noise; and No-Features (parameter, gradient and momenta only, no noise).
Tuned Adam runs beside them for scale. The paper's ablation environment could
not be determined (OPEN_SPEC §8.6); lopt meta-trains on SpaceInvaders-MinAtar
(``--envs`` picks another game).

Scales:

- ``paper``: the game at the paper's PPO settings (1e7 frames) and ES (population
  64, 500 generations); 64 held-out seeds. Meant for GPUs.
- ``cpu``: lopt meta-train's cpu preset for each variant (the game's ``small``
  PPO preset cut to 24,576 frames; population 16, 40 generations), 64 held-out
  seeds evaluated at that budget. 54 minutes measured on 2 idle CPU cores at the
  preset's earlier 5e4 frames (README, Studies).
- ``smoke``: two generations of four members on two-update runs: seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lopt.analysis import plots
from lopt.analysis.stats import bootstrap_interval, probability_of_improvement
from lopt.configs.presets import META_PRESETS
from lopt.optim.learned import make_config
from lopt.optim.network import OPENConfig
from lopt.studies import claims as c
from lopt.studies import common
from lopt.summary import iqm

NAME = "ablations"
GAMES = ("spaceinvaders", "breakout", "asterix")
#: label -> (learned optimizer, what is removed)
VARIANTS = {
    "OPEN": ("open", ()),
    "no training_prop": ("open", ("training_prop",)),
    "no batch_prop": ("open", ("batch_prop",)),
    "no layer_prop": ("open", ("layer_prop",)),
    "no dormancy": ("open", ("dormancy",)),
    "no noise": ("open", ("noise",)),
    "No-Features": ("no-features", ()),
}
SEEDS = {"smoke": 2, "cpu": 64, "paper": 64}
#: ES generations at cpu scale (the cpu preset's; about 7 minutes a variant).
CPU_GENERATIONS = 40


def _slug(label: str) -> str:
    return label.lower().replace(" ", "-")


def plan(options: common.Options) -> common.Plan:
    games = options.pick(GAMES, default=("spaceinvaders",))
    if len(games) != 1:
        raise common.StudyError("ablations meta-train on one game; pass one --envs")
    game = games[0]
    scale = options.scale
    plan = common.Plan(NAME, options, [], [])
    if scale == "paper":
        base, variant = META_PRESETS[game], "default"
    else:
        cpu = META_PRESETS["cpu"]
        task = dataclasses.replace(
            cpu.tasks[0],
            config=dataclasses.replace(cpu.tasks[0].config, env=f"minatar/{game}"),
        )
        base = dataclasses.replace(cpu, tasks=(task,))
        if scale == "cpu":
            es = dataclasses.replace(base.es, num_generations=CPU_GENERATIONS)
            base = dataclasses.replace(base, es=es)
        variant = "small"
    # Evaluated at the budget the variants were meta-trained at (the cpu preset's
    # differs from the small preset's).
    frames = (("total_timesteps", base.tasks[0].config.total_timesteps),)
    overrides = common.SMOKE if scale == "smoke" else ()
    specs = []
    for label, (learned, ablate) in VARIANTS.items():
        optimizer = make_config(learned, OPENConfig.small(), ablate=ablate)
        job = common.meta_job(
            f"meta-{_slug(label)}", base, optimizer, options, overrides
        )
        plan.jobs.append(job)
        specs.append((label, f"meta:{job.name}"))
    specs.append(("Adam", "adam"))
    seeds = options.eval_seeds(SEEDS[scale])
    plan.jobs.append(
        common.EvalJob(
            "heldout",
            f"minatar/{game}",
            tuple(specs),
            seeds,
            preset=variant,
            overrides=frames + overrides,
        )
    )
    labels = tuple(label for label, _ in specs)
    plan.parts.append(
        common.Part(
            "variants", f"{game}: OPEN's ablations", ("heldout",), labels, "OPEN"
        )
    )
    plan.notes.append(
        f"Every variant is meta-trained from zeros on minatar/{game} with the same "
        "ES settings and seed; evaluated on seeds "
        f"{seeds[0]}..{seeds[-1]}, which ES never trains on."
    )
    return plan


def _dormancy(results: common.Results) -> dict[str, np.ndarray]:
    """Mean dormant fraction over training per run: label -> ``(seeds,)``."""
    means = common.run_means(results.curves["variants"], "dormant_fraction")
    return {label: next(iter(tasks.values())) for label, tasks in means.items()}


def claims(plan: common.Plan, results: common.Results) -> list[c.Claim]:
    """Full OPEN beats each ablation; each ablation has more dormancy (§8.2)."""
    summary = results.parts["variants"]
    reps, seed = plan.options.reps, plan.options.seed
    dormancy = _dormancy(results)
    more = probability_of_improvement(
        {k: v[:, None] for k, v in dormancy.items()}, "OPEN", reps, seed
    )
    out = []
    for label in VARIANTS:
        if label == "OPEN":
            continue
        out.append(
            c.compare(
                summary,
                "OPEN",
                label,
                f"full OPEN beats {label}",
                "§8.2 ablations",
                reps=reps,
                seed=seed,
            )
        )
    for label in VARIANTS:
        if label == "OPEN":
            continue
        out.append(
            c.Claim(
                f"{label} shows more dormancy than full OPEN",
                "§8.2 ablations",
                c.better(more[label]),
                "better",
                {
                    f"P(dormancy of {label} > OPEN's)": more[label],
                    "mean dormancy": float(dormancy[label].mean()),
                    "OPEN's": float(dormancy["OPEN"].mean()),
                },
            )
        )
    return out


def _points(plan: common.Plan, results: common.Results) -> dict[str, tuple[dict, dict]]:
    summary = results.parts["variants"]
    task = next(iter(summary["per_env"]))
    dormancy = _dormancy(results)
    reps, seed = plan.options.reps, plan.options.seed
    return {
        label: (
            bootstrap_interval(np.mean, dormancy[label][:, None], reps=reps, seed=seed),
            summary["per_env"][task][label]["iqm"],
        )
        for label in summary["per_env"][task]
    }


def figures(plan: common.Plan, results: common.Results, out) -> list:
    """IQM of final return against mean dormancy, one point per variant."""
    paths = plots.plot_xy_intervals(
        _points(plan, results),
        out / "iqm_vs_dormancy",
        xlabel="mean dormant fraction over training",
        ylabel="IQM of final return",
        title="OPEN's ablations on held-out seeds",
    )
    return paths


def tables(plan: common.Plan, results: common.Results) -> list:
    """Per variant: IQM of final return, mean dormancy, meta-parameters and the
    held-out return at the end of meta-training."""
    rows = []
    for label, (dormancy, score) in _points(plan, results).items():
        job = f"meta-{_slug(label)}"
        meta = results.meta.get(job)
        size = plan.job(job).config.optimizer.num_meta_params if meta else "-"
        heldout = (
            f"{iqm(np.asarray(next(iter(meta['heldout'].values()))['returns'])):.3g}"
            if meta
            else "-"
        )
        rows.append(
            [
                label,
                c.format_estimate(score),
                c.format_estimate(dormancy),
                str(size),
                heldout,
            ]
        )
    header = [
        "variant",
        "IQM final return [95% CI]",
        "mean dormancy [95% CI]",
        "meta-parameters",
        "IQM at the end of meta-training (its held-out seeds)",
    ]
    return [("variants: return and dormancy", header, rows)]
