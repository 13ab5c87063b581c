"""pqn: OPEN inside PQN on Asterix-MinAtar against Adam (OPEN §5.6): OPEN
meta-trained with PQN as its inner loop (``lopt meta-train --algo pqn``), then
both evaluated on held-out seeds; the paper: OPEN's IQM of final return is above
Adam's, and OPEN starts below Adam and overtakes it later.

Adam runs at the PQN preset's values (purejaxql's: lr 5e-4, annealed), which are
tuned for PQN on MinAtar at 1e7 frames; at cpu scale the budget differs, so the
report marks Adam untuned there unless ``--tune`` or ``--tuned`` is given.

Scales:

- ``paper``: PQN's MinAtar preset (1e7 frames, 128 environments), the paper's ES
  (population 64, 500 generations), 64 seeds.
- ``cpu``: 32 environments x 32 steps, 2 epochs of 8 minibatches, width 64, 1e5
  frames (97 updates); population 16, 30 generations; 32 seeds. About 40 minutes
  on 2 idle CPU cores (README, Studies).
- ``smoke``: two generations of four members on two-update runs: seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lopt.analysis.stats import probability_of_improvement
from lopt.configs.presets import CPU_META, task_for
from lopt.meta.config import ESConfig
from lopt.optim.network import OPENConfig
from lopt.studies import claims as c
from lopt.studies import common

NAME = "pqn"
ENV = "minatar/asterix"
SEEDS = {"smoke": 2, "cpu": 32, "paper": 64}
CPU_GENERATIONS = 30
CPU = (
    ("num_envs", 32),
    ("num_steps", 32),
    ("update_epochs", 2),
    ("num_minibatches", 8),
    ("hidden_size", 64),
    ("total_timesteps", 100_000),
)
PQN_SMOKE = (*common.SMOKE, ("hidden_size", 16))


def plan(options: common.Options) -> common.Plan:
    options.pick(("asterix",))
    scale = options.scale
    plan = common.Plan(NAME, options, [], [])
    preset = "default" if scale == "paper" else "small"
    overrides = {"smoke": PQN_SMOKE, "cpu": CPU, "paper": ()}[scale]
    if scale == "paper":
        es = ESConfig()
    else:
        es = dataclasses.replace(CPU_META.es, num_generations=CPU_GENERATIONS)
    base = dataclasses.replace(CPU_META, tasks=(task_for(ENV, preset, "pqn"),), es=es)
    job = common.meta_job("meta-open-pqn", base, OPENConfig.small(), options, overrides)
    plan.jobs.append(job)
    paper_tuned = ("adam",) if scale == "paper" else ()
    adam = common.baselines(
        plan,
        ENV,
        ("adam",),
        algo="pqn",
        preset=preset,
        overrides=overrides,
        paper_tuned=paper_tuned,
    )
    seeds = options.eval_seeds(SEEDS[scale])
    specs = (("OPEN", f"meta:{job.name}"), *adam)
    plan.jobs.append(
        common.EvalJob(
            "heldout", ENV, specs, seeds, algo="pqn", preset=preset, overrides=overrides
        )
    )
    plan.parts.append(
        common.Part("asterix", "PQN on Asterix", ("heldout",), ("OPEN", "Adam"))
    )
    common.untuned_note(plan)
    plan.notes.append(
        "OPEN is meta-trained from zeros with PQN as its inner loop on the same "
        f"settings; evaluated on seeds {seeds[0]}..{seeds[-1]}, which ES never "
        "trains on. OPEN's noise is off in PQN (lopt's value-based default)."
    )
    return plan


def claims(plan: common.Plan, results: common.Results) -> list[c.Claim]:
    summary = results.parts["asterix"]
    reps, seed = plan.options.reps, plan.options.seed
    untuned = "Adam untuned at this budget" if plan.untuned else ""
    final = c.poi(summary, "OPEN", "Adam", reps=reps, seed=seed)
    curves = {k.optimizer: k for k in results.curves["asterix"]}
    quarter = curves["OPEN"].metrics["return"].shape[1] // 4
    early = probability_of_improvement(
        {
            name: np.asarray(curves[name].metrics["return"])[:, [quarter]]
            for name in ("Adam", "OPEN")
        },
        "OPEN",
        reps,
        seed,
    )["Adam"]
    return [
        c.Claim(
            "OPEN beats Adam inside PQN on Asterix (final return)",
            "§5.6, §8.2 PQN",
            c.better(final),
            "better",
            {"P(OPEN > Adam)": final},
            untuned,
        ),
        c.Claim(
            "OPEN starts below Adam (a quarter into training)",
            "§5.6, §8.2 PQN",
            c.better(early),
            "better",
            {f"P(Adam > OPEN) at update {quarter + 1}": early},
            untuned,
        ),
    ]
