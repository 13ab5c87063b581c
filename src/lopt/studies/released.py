"""released: each of the paper's released optimizers against Adam, RMSprop and
Lion at the horizon and settings it was meta-trained for (OPEN §8.2).

Parts (``--envs``, any subset): ``breakout``, ``asterix``, ``freeway``,
``spaceinvaders`` (each game's optimizer on its game; one part, ``minatar``),
``ant`` (Brax: needs ``lopt[brax]``), ``gridworld`` (the gridworld optimizer on
all seven types) and ``multi`` (the multi-task optimizer on the four games:
Adam-normalised mean, IQM and optimality gap; it reuses the games' baseline runs
when they are in the same study).

Adam runs at the paper's tuned values (OPEN §6: the MinAtar, Ant and gridworld
presets hold them). RMSprop and Lion run at the presets' starting points unless
``--tuned`` files are given for them or ``--tune`` tunes them on separate seeds
(the default at paper scale); the report says which.

Scales:

- ``paper``: the paper's settings (MinAtar 1e7 frames, Ant 5e7 with 2048
  environments, the gridworld 3e7 with 1024), 16 seeds (64 on the gridworld, §7);
  RMSprop and Lion tuned on tuning seeds.
- ``cpu``: MinAtar at the paper's settings (the optimizers' horizon: 1e7 frames,
  1220 updates) against all three baselines, 4 seeds: about an hour per game on 2
  idle CPU cores (OPEN 25 minutes, each baseline 10). The gridworld and Ant keep
  the paper's number of updates (1464 and 2441) with fewer environments and
  minibatches (gridworld: 32 environments, 4 minibatches; Ant: 32 and 4), against
  Adam only, 4 seeds: the gridworld about 25 minutes, Ant about an hour
  (estimated). ``multi`` adds the large OPEN on each game, about 40 minutes per
  game. Measured on a machine shared with other jobs and extrapolated to an idle
  one: see the README's Studies section.
- ``smoke``: two updates of tiny agents per pair: minutes, the machinery only.
"""

from __future__ import annotations

from lopt.studies import claims as c
from lopt.studies import common, gridworld

NAME = "released"
GAMES = ("breakout", "asterix", "freeway", "spaceinvaders")
PARTS = (*GAMES, "ant", "gridworld", "multi")
BASELINES = ("adam", "rmsprop", "lion")
TITLES = {
    "breakout": "Breakout",
    "asterix": "Asterix",
    "freeway": "Freeway",
    "spaceinvaders": "SpaceInvaders",
}
#: Where the paper says OPEN wins (§8.2) and where it says it is on par.
WINS = ("freeway", "asterix", "breakout")
SEEDS = {"smoke": 2, "cpu": 4, "paper": 16}
GRID_SEEDS = {"smoke": 2, "cpu": 4, "paper": 64}

#: The paper's number of updates with fewer environments per run (cpu scale).
CPU_ANT = (
    ("num_envs", 32),
    ("num_minibatches", 4),
    ("total_timesteps", 2441 * 32 * 10),
)


def _overrides(scale: str, cpu: tuple = ()) -> tuple:
    return {"smoke": common.SMOKE, "cpu": cpu, "paper": ()}[scale]


def plan(options: common.Options) -> common.Plan:
    """The study's jobs and parts at ``options.scale``."""
    chosen = options.pick(PARTS)
    plan = common.Plan(NAME, options, [], [])
    scale = options.scale
    seeds = options.eval_seeds(SEEDS[scale])
    labels = ("OPEN", "Adam", "RMSprop", "Lion")
    for game in GAMES:
        if game not in chosen and "multi" not in chosen:
            continue
        optimizers = []
        if game in chosen:
            optimizers.append(("OPEN", f"open:{options.released(game)}"))
        if "multi" in chosen:
            optimizers.append(("OPEN (multi)", f"open:{options.released('multi')}"))
        overrides = _overrides(scale)
        optimizers += common.baselines(plan, game, BASELINES, overrides=overrides)
        plan.jobs.append(
            common.EvalJob(
                game, f"minatar/{game}", tuple(optimizers), seeds, overrides=overrides
            )
        )
    single = tuple(g for g in GAMES if g in chosen)
    if single:
        plan.parts.append(
            common.Part("minatar", "MinAtar, each game's optimizer", single, labels)
        )
    if "ant" in chosen:
        _ant(plan, seeds)
    if "gridworld" in chosen:
        grid_seeds = options.eval_seeds(GRID_SEEDS[scale])
        names = BASELINES if scale == "paper" else ("adam",)
        jobs = gridworld.type_jobs(plan, names, grid_seeds)
        grid_labels = ("OPEN", *(common.LABELS[n] for n in names))
        plan.parts.append(
            common.Part("gridworld", "gridworld, seven types", jobs, grid_labels)
        )
    if "multi" in chosen:
        multi = ("OPEN (multi)", "Adam", "RMSprop", "Lion")
        plan.parts.append(
            common.Part("multi", "MinAtar, the multi-task optimizer", GAMES, multi)
        )
    common.untuned_note(plan)
    return plan


def _ant(plan: common.Plan, seeds: tuple[int, ...]) -> None:
    """Ant's job and part, or a note when Brax is not installed."""
    why = common.missing_suite("brax/ant")
    if why:
        plan.notes.append(f"Ant skipped: {why}.")
        return
    scale = plan.options.scale
    names = BASELINES if scale == "paper" else ("adam",)
    overrides = _overrides(scale, CPU_ANT)
    optimizers = (
        ("OPEN", f"open:{plan.options.released('ant')}"),
        *common.baselines(plan, "ant", names, overrides=overrides),
    )
    plan.jobs.append(
        common.EvalJob("ant", "brax/ant", optimizers, seeds, overrides=overrides)
    )
    plan.parts.append(
        common.Part("ant", "Brax Ant", ("ant",), tuple(x for x, _ in optimizers))
    )
    if scale == "cpu":
        plan.notes.append(
            "Ant at cpu scale: 32 environments x 10 steps and 4 minibatches per "
            "update (the paper: 2048 and 32) for the paper's 2441 updates, against "
            "Adam only."
        )


def _untuned(plan: common.Plan, label: str, tasks) -> str:
    envs = plan.untuned.get(label, [])
    hit = [t for t in tasks if t in envs]
    return f"{label} untuned on {', '.join(hit)}" if hit else ""


def claims(plan: common.Plan, results: common.Results) -> list[c.Claim]:
    """The paper's claims (§8.2) that this run's parts can check."""
    out: list[c.Claim] = []
    reps, seed = plan.options.reps, plan.options.seed
    if "minatar" in results.parts:
        summary = results.parts["minatar"]
        for game in GAMES:
            task = f"minatar/{game}"
            if task not in summary["final_returns"]:
                continue
            for label in ("Adam", "RMSprop", "Lion"):
                win = game in WINS
                verb = "beats" if win else "is on par with"
                out.append(
                    c.compare(
                        summary,
                        "OPEN",
                        label,
                        f"OPEN {verb} {label} on {TITLES[game]}",
                        "§8.2 single-task",
                        tasks=[task],
                        par=not win,
                        note=_untuned(plan, label, [task]),
                        reps=reps,
                        seed=seed,
                    )
                )
    if "ant" in results.parts:
        summary = results.parts["ant"]
        for label in summary["final_returns"]["brax/ant"]:
            if label != "OPEN":
                out.append(
                    c.compare(
                        summary,
                        "OPEN",
                        label,
                        f"OPEN is on par with {label} on Ant",
                        "§8.2 single-task, §5.2",
                        par=True,
                        note=_untuned(plan, label, ["brax/ant"]),
                        reps=reps,
                        seed=seed,
                    )
                )
    elif any("Ant skipped" in n for n in plan.notes):
        why = next(n for n in plan.notes if "Ant skipped" in n)
        out.append(
            c.not_run("OPEN is on par with Adam on Ant", "§8.2, §5.2", "on_par", why)
        )
    if "gridworld" in results.parts:
        out += gridworld.beats_adam(plan, "gridworld", results.parts["gridworld"])
    if "multi" in results.parts:
        out += multi_claims(plan, results.parts["multi"])
    return out


def multi_claims(plan: common.Plan, summary: dict) -> list[c.Claim]:
    """OPEN (multi) against each baseline on the Adam-normalised mean, IQM and
    optimality gap, and its normalised mean above Adam's (1)."""
    name = "OPEN (multi)"
    normalised = summary["normalised"]
    text = f"{name} beats every baseline on the Adam-normalised mean, IQM and gap"
    if normalised is None:
        why = summary["normalised_skipped"] or "no normalised scores"
        return [c.not_run(text, "§8.2 multi-task", "separated", why)]
    out = []
    for label in ("Adam", "RMSprop", "Lion"):
        for aggregate in ("mean", "iqm", "optimality_gap"):
            mine, theirs = normalised[name][aggregate], normalised[label][aggregate]
            out.append(
                c.Claim(
                    f"{name} beats {label} on the Adam-normalised {aggregate}",
                    "§8.2 multi-task",
                    c.separated(mine, theirs, aggregate != "optimality_gap"),
                    "separated",
                    {name: mine, label: theirs},
                    _untuned(plan, label, list(summary["final_returns"])),
                )
            )
    mean = normalised[name]["mean"]
    text = f"{name}'s Adam-normalised return exceeds Adam's (1)"
    out.append(c.exceeds(text, "§8.2 multi-task", "normalised mean", mean, 1.0))
    return out
