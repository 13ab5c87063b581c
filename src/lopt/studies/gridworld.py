"""gridworld: how the released gridworld optimizer generalises (OPEN §5.3, §8.2):
in distribution (``rand_all``), out of support (the six other types), and across
agent widths and training lengths, against Adam at the paper's tuned values
(lr 1e-4, b1 = b2 = 0.99, annealed); scores normalised by Adam.

Parts (``--envs``, any subset): ``types`` (all seven types), ``width``
(``rand_all`` once per agent width, ``lopt eval --sweep hidden_size=...``) and
``length`` (``rand_all`` once per training length, ``--sweep
total_timesteps=...``). The paper's widths and lengths were not retrievable
(OPEN_SPEC §5.3 mentions widths 8-128 with low confidence); lopt uses widths 8 to
128 and lengths from a quarter of the meta-training horizon to twice it.

Scales:

- ``paper``: the paper's PPO (1024 environments, 3e7 frames, width 16), 64 seeds.
- ``cpu``: 32 environments per run for the paper's 1464 updates (9.4e5 frames),
  4 seeds; widths 8, 32 and 64 and lengths 0.25, 0.5 and 2 of the horizon on
  ``rand_all``. About 40 minutes on 2 idle CPU cores (README, Studies).
- ``smoke``: two updates of tiny agents: seconds.
"""

from __future__ import annotations

from lopt.envs.gridworld import GRID_TYPES
from lopt.studies import claims as c
from lopt.studies import common

NAME = "gridworld"
PARTS = ("types", "width", "length")
SEEDS = {"smoke": 2, "cpu": 4, "paper": 64}
#: The meta-training horizon: the paper's gridworld PPO runs 1464 updates.
UPDATES = 1464
#: Environments per run at each scale (the paper's 1024; fewer on a CPU).
NUM_ENVS = {"smoke": 4, "cpu": 32, "paper": 1024}
WIDTHS = {"smoke": (8, 32), "cpu": (8, 32, 64), "paper": (8, 32, 64, 128)}
#: Training lengths as fractions of the horizon.
LENGTHS = {"smoke": (0.5,), "cpu": (0.25, 0.5, 2.0), "paper": (0.25, 0.5, 2.0)}
SMOKE_UPDATES = 2
CPU_MINIBATCHES = 4
TITLES = {"width": "rand_all across agent widths", "length": "rand_all across lengths"}


def settings(scale: str) -> tuple[tuple[str, object], ...]:
    """The gridworld PPO's changes from the paper's preset at ``scale``."""
    if scale == "paper":
        return ()
    num_envs = NUM_ENVS[scale]
    updates = SMOKE_UPDATES if scale == "smoke" else UPDATES
    out = (("num_envs", num_envs), ("total_timesteps", updates * num_envs * 20))
    if scale == "smoke":
        return (*out, ("num_minibatches", 2), ("update_epochs", 1))
    # 4 minibatches of 160 samples (the paper: 16 of 1280): OPEN's cost is per
    # optimizer step, so fewer, larger minibatches make the horizon affordable.
    return (*out, ("num_minibatches", CPU_MINIBATCHES))


def frames(scale: str) -> int:
    """Frames per run at ``scale`` (the paper's 3e7 at paper scale)."""
    return dict(settings(scale)).get("total_timesteps", 30_000_000)


def type_jobs(
    plan: common.Plan, optimizers: tuple[str, ...], seeds: tuple[int, ...]
) -> tuple[str, ...]:
    """One evaluation job per gridworld type: the released optimizer as "OPEN"
    against ``optimizers`` (hand-crafted names); returns the job names."""
    overrides = settings(plan.options.scale)
    names = []
    for grid in GRID_TYPES:
        env = f"gridworld/{grid}"
        specs = (
            ("OPEN", f"open:{plan.options.released('gridworld')}"),
            *common.baselines(plan, env, optimizers, overrides=overrides),
        )
        name = f"gridworld-{grid}"
        plan.jobs.append(common.EvalJob(name, env, specs, seeds, overrides=overrides))
        names.append(name)
    if plan.options.scale == "cpu":
        plan.notes.append(
            f"gridworld at cpu scale: {NUM_ENVS['cpu']} environments per run and "
            f"{CPU_MINIBATCHES} minibatches per epoch (the paper: 1024 and 16) for "
            f"the paper's {UPDATES} updates of 20 steps ({frames('cpu'):,} frames)."
        )
    return tuple(names)


def plan(options: common.Options) -> common.Plan:
    chosen = options.pick(PARTS)
    plan = common.Plan(NAME, options, [], [])
    scale = options.scale
    seeds = options.eval_seeds(SEEDS[scale])
    labels = ("OPEN", "Adam")
    if "types" in chosen:
        jobs = type_jobs(plan, ("adam",), seeds)
        plan.parts.append(common.Part("types", "gridworld types", jobs, labels))
    overrides = settings(scale)
    specs = (
        ("OPEN", f"open:{options.released('gridworld')}"),
        *common.baselines(plan, "gridworld/rand_all", ("adam",), overrides=overrides),
    )
    base = frames(scale)
    sweeps = {
        "width": ("hidden_size", WIDTHS[scale]),
        "length": ("total_timesteps", tuple(int(f * base) for f in LENGTHS[scale])),
    }
    for part in ("width", "length"):
        if part in chosen:
            name = f"rand_all-{part}"
            plan.jobs.append(
                common.EvalJob(
                    name,
                    "gridworld/rand_all",
                    specs,
                    seeds,
                    overrides=overrides,
                    sweep=sweeps[part],
                )
            )
            plan.parts.append(common.Part(part, TITLES[part], (name,), labels))
    common.untuned_note(plan)
    return plan


def beats_adam(plan: common.Plan, part: str, summary: dict) -> list[c.Claim]:
    """OPEN beats Adam on each task of a part (§8.2 gridworld), and its
    Adam-normalised IQM over the part's tasks exceeds 1."""
    reps, seed = plan.options.reps, plan.options.seed
    out = []
    for task in summary["final_returns"]:
        if part in ("types", "gridworld"):
            where = "in distribution" if task.endswith("rand_all") else "out of support"
        else:
            where = TITLES[part]
        out.append(
            c.compare(
                summary,
                "OPEN",
                "Adam",
                f"OPEN beats Adam on {task} ({where})",
                "§8.2 gridworld",
                tasks=[task],
                reps=reps,
                seed=seed,
            )
        )
    normalised = summary["normalised"]
    if normalised is not None and len(summary["final_returns"]) > 1:
        iqm = normalised["OPEN"]["iqm"]
        text = f"OPEN's Adam-normalised IQM over the {part} part exceeds Adam's (1)"
        out.append(c.exceeds(text, "§8.2 gridworld", "normalised IQM", iqm, 1.0))
    return out


def claims(plan: common.Plan, results: common.Results) -> list[c.Claim]:
    """OPEN beats Adam on every type, width and length (§8.2 gridworld)."""
    return [
        claim
        for part in plan.parts
        for claim in beats_adam(plan, part.name, results.parts[part.name])
    ]
