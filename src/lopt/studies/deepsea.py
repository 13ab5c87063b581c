"""deepsea: OPEN's learned noise as exploration (OPEN §5.5): OPEN with and
without learned noise, with shared or separate actor and critic meta-parameters,
meta-trained on one Deep Sea size and evaluated across sizes; the gain from
noise against size (the paper: it grows with size, and so does the learned noise).

Four variants, meta-trained alike: OPEN, OPEN without noise, OPEN with separate
actor and critic meta-parameters, and the same without noise; Adam (not tuned for
Deep Sea: a starting point) beside them. The paper's Deep Sea settings were not
retrievable; lopt meta-trains on ``bsuite/deepsea-16`` (``--envs`` picks the
training size: 8, 16, 24 or 32) with its Deep Sea PPO preset (1e5 frames) and
evaluates on sizes 8, 16, 24 and 32.

Scales:

- ``paper``: the paper's ES (population 64, 500 generations), 128 seeds.
- ``cpu``: population 16 and 30 generations per variant (lopt meta-train's cpu
  ES otherwise), 32 seeds per size. About an hour and a half on 2 idle CPU cores
  (README, Studies).
- ``smoke``: two generations of four members on two-update runs: seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lopt.analysis import plots
from lopt.analysis.stats import bootstrap_interval
from lopt.configs.presets import CPU_META, task_for
from lopt.envs.registry import DEEPSEA_SIZES
from lopt.meta.config import ESConfig
from lopt.optim.learned import make_config
from lopt.optim.network import OPENConfig
from lopt.studies import claims as c
from lopt.studies import common
from lopt.summary import iqm

NAME = "deepsea"
#: label -> (ablate, separate actor and critic)
VARIANTS = {
    "OPEN": ((), False),
    "no noise": (("noise",), False),
    "separate": ((), True),
    "separate, no noise": (("noise",), True),
}
#: The pairs whose difference is the gain from noise.
GAINS = {"shared": ("OPEN", "no noise"), "separate": ("separate", "separate, no noise")}
SOURCE = "§5.5, §8.2 Deep Sea"
#: The variants with learned noise.
NOISY = ("OPEN", "separate")
SEEDS = {"smoke": 2, "cpu": 32, "paper": 128}
CPU_GENERATIONS = 30


def _slug(label: str) -> str:
    return label.replace(", ", "-").replace(" ", "-")


def plan(options: common.Options) -> common.Plan:
    names = [f"deepsea-{n}" for n in DEEPSEA_SIZES]
    chosen = options.pick(names, default=("deepsea-16",))
    if len(chosen) != 1:
        raise common.StudyError("deepsea meta-trains on one size; pass one --envs")
    train_env = f"bsuite/{chosen[0]}"
    scale = options.scale
    plan = common.Plan(NAME, options, [], [])
    es = ESConfig() if scale == "paper" else CPU_META.es
    if scale == "cpu":
        es = dataclasses.replace(es, num_generations=CPU_GENERATIONS)
    base = dataclasses.replace(CPU_META, tasks=(task_for(train_env),), es=es)
    overrides = common.SMOKE if scale == "smoke" else ()
    specs = []
    for label, (ablate, separate) in VARIANTS.items():
        optimizer = make_config(
            "open", OPENConfig.small(), ablate=ablate, separate_actor_critic=separate
        )
        job = common.meta_job(
            f"meta-{_slug(label)}", base, optimizer, options, overrides
        )
        plan.jobs.append(job)
        specs.append((label, f"meta:{job.name}"))
    specs.append(("Adam", "adam"))
    seeds = options.eval_seeds(SEEDS[scale])
    jobs = []
    for size in DEEPSEA_SIZES:
        name = f"deepsea-{size}"
        env = f"bsuite/{name}"
        plan.jobs.append(
            common.EvalJob(name, env, tuple(specs), seeds, overrides=overrides)
        )
        jobs.append(name)
    labels = tuple(label for label, _ in specs)
    plan.parts.append(
        common.Part("sizes", "Deep Sea sizes", tuple(jobs), labels, "OPEN")
    )
    plan.notes.append(
        f"Every variant is meta-trained on {train_env} with the same ES settings "
        f"and seed and evaluated on sizes {', '.join(map(str, DEEPSEA_SIZES))}; "
        "Adam runs at the Deep Sea preset's starting point (not tuned)."
    )
    return plan


def _sizes(summary: dict) -> tuple[list[str], np.ndarray]:
    tasks = list(summary["final_returns"])
    return tasks, np.array([float(t.rsplit("-", 1)[1]) for t in tasks])


def _slope(x: np.ndarray):
    """The least-squares slope against ``x`` of a per-size statistic."""

    def slope(values: np.ndarray) -> float:
        return float(np.polyfit(x, values, 1)[0])

    return slope


def _gain_slope(x: np.ndarray):
    slope = _slope(x)

    def gain(noisy: np.ndarray, plain: np.ndarray) -> float:
        per_size = [iqm(noisy[:, i]) - iqm(plain[:, i]) for i in range(len(x))]
        return slope(np.array(per_size))

    return gain


def gain_grows(claim: c.Claim, x: np.ndarray, gains: list[dict]) -> c.Claim:
    """``claim`` (a positive slope of the gain against size) qualified by the gain
    itself: a slope that rises from a loss to no difference (noise hurts on small
    sizes, nothing solves the large ones) is no gain that grows, so unless some
    size's gain interval (``gains``, one per size ``x``) lies above 0 a holding
    slope is inconclusive, with why."""
    if claim.verdict != c.HOLDS or any(g["low"] > 0 for g in gains):
        return claim
    best = max(range(len(x)), key=lambda i: gains[i]["point"])
    why = (
        "no size shows a gain from noise (every gain's interval reaches 0 or below; "
        f"the largest, {c.format_estimate(gains[best])}, at size {x[best]:g}): the "
        "slope measures a loss shrinking, not a gain growing"
    )
    return dataclasses.replace(claim, verdict=c.INCONCLUSIVE, note=why)


def _noise(results: common.Results, tasks: list[str]) -> dict[str, np.ndarray]:
    """Mean learned-noise magnitude over training per run: label -> (seeds, sizes)."""
    means = common.run_means(results.curves["sizes"], "noise_magnitude")
    return {
        label: np.stack([means[label][t] for t in tasks], axis=1) for label in NOISY
    }


def claims(plan: common.Plan, results: common.Results) -> list[c.Claim]:
    """The gain from noise and the noise grow with size; separate actor and
    critic meta-parameters with noise beat every other variant on the sizes
    larger than the training size (§5.5)."""
    summary = results.parts["sizes"]
    reps, seed = plan.options.reps, plan.options.seed
    tasks, x = _sizes(summary)
    gains = _gains(plan, results)
    out = []
    for kind, (noisy, plain) in GAINS.items():
        scores = [c.final_scores(summary, name, tasks) for name in (noisy, plain)]
        slope = bootstrap_interval(_gain_slope(x), *scores, reps=reps, seed=seed)
        claim = c.exceeds(
            f"the IQM gain from learned noise grows with Deep Sea's size ({kind} "
            "meta-parameters)",
            SOURCE,
            f"slope of IQM({noisy}) - IQM({plain}) per unit of size",
            slope,
            0.0,
        )
        out.append(gain_grows(claim, x, gains[f"{noisy} - {plain}"]))
    noise = _noise(results, tasks)
    for label in NOISY:
        slope = bootstrap_interval(
            lambda v: _slope(x)(v.mean(axis=0)), noise[label], reps=reps, seed=seed
        )
        out.append(
            c.exceeds(
                f"the learned noise ({label}) grows with Deep Sea's size",
                SOURCE,
                "slope of the mean noise magnitude per unit of size",
                slope,
                0.0,
            )
        )
    trained = float(plan.jobs[0].config.tasks[0].config.env.rsplit("-", 1)[1])
    larger = [t for t, size in zip(tasks, x, strict=True) if size > trained]
    for other in ("OPEN", "no noise", "separate, no noise"):
        text = f"separate (with noise) beats {other} on sizes above the training size"
        if not larger:
            out.append(c.not_run(text, SOURCE, "better", "no size above it"))
            continue
        out.append(
            c.compare(
                summary,
                "separate",
                other,
                text,
                SOURCE,
                tasks=larger,
                reps=reps,
                seed=seed,
            )
        )
    return out


def _gains(plan: common.Plan, results: common.Results) -> dict[str, list[dict]]:
    """Per size, the IQM gain from noise with its interval: "noisy - plain" ->
    one estimate per size."""
    summary = results.parts["sizes"]
    reps, seed = plan.options.reps, plan.options.seed
    tasks, _ = _sizes(summary)
    gains = {}
    for noisy, plain in GAINS.values():
        a = c.final_scores(summary, noisy, tasks)
        b = c.final_scores(summary, plain, tasks)
        gains[f"{noisy} - {plain}"] = [
            bootstrap_interval(
                lambda u, v: iqm(u) - iqm(v),
                a[:, [i]],
                b[:, [i]],
                reps=reps,
                seed=seed,
            )
            for i in range(len(tasks))
        ]
    return gains


def _noise_per_size(
    plan: common.Plan, results: common.Results
) -> dict[str, list[dict]]:
    """Per size, the mean learned-noise magnitude with its interval: label -> one
    estimate per size."""
    reps, seed = plan.options.reps, plan.options.seed
    tasks, _ = _sizes(results.parts["sizes"])
    return {
        label: [
            bootstrap_interval(np.mean, v[:, [i]], reps=reps, seed=seed)
            for i in range(len(tasks))
        ]
        for label, v in _noise(results, tasks).items()
    }


def _per_size(
    plan: common.Plan, results: common.Results
) -> tuple[np.ndarray, dict, dict]:
    _, x = _sizes(results.parts["sizes"])
    return x, _gains(plan, results), _noise_per_size(plan, results)


def figures(plan: common.Plan, results: common.Results, out) -> list:
    x, gains, noise = _per_size(plan, results)
    paths = plots.plot_interval_lines(
        x,
        gains,
        out / "noise_gain_vs_size",
        xlabel="Deep Sea size",
        ylabel="IQM of final return, with noise minus without",
        title="the gain from learned noise",
    )
    paths += plots.plot_interval_lines(
        x,
        noise,
        out / "noise_vs_size",
        xlabel="Deep Sea size",
        ylabel="mean of sum |noise| / sum |actor params|",
        title="learned noise on the actor",
    )
    return paths


def tables(plan: common.Plan, results: common.Results) -> list:
    x, gains, noise = _per_size(plan, results)
    header = ["size", *(f"gain {k} [95% CI]" for k in gains)]
    header += [f"noise {k} [95% CI]" for k in noise]
    rows = [
        [
            f"{size:g}",
            *(c.format_estimate(v[i]) for v in gains.values()),
            *(c.format_estimate(v[i]) for v in noise.values()),
        ]
        for i, size in enumerate(x)
    ]
    return [("the gain from learned noise and the noise, per size", header, rows)]
