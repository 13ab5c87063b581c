"""The ``lopt`` command: ``lopt train``, ``lopt meta-train``, ...

Each subcommand is a dataclass of documented options (tyro) and a function that
runs it. Library modules never import this one.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import tyro

from lopt import __version__
from lopt.optim.network import OPENConfig


def _fail(message: str) -> None:
    print(f"lopt: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _default_out(kind: str, *parts: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "-".join(p.replace("/", "_").replace(":", "_") for p in parts)
    return Path("runs") / kind / f"{name}-{stamp}"


@dataclasses.dataclass
class Train:
    """Train agents (PPO by default) with one optimizer over several seeds."""

    env: str = "cartpole"
    """environment name or alias: cartpole, acrobot, breakout, asterix, freeway,
    spaceinvaders, gridworld/rand_all (and the six other gridworld types),
    deepsea-8 (also -16, -24, -32), ant (and brax/halfcheetah, hopper, walker2d,
    humanoid), craftax-classic, atari/breakout (and pong, space_invaders, ...)"""
    preset: str = "default"
    """the algorithm's settings: default (PPO on MinAtar: the paper's), small
    (MinAtar in seconds on a CPU, the inner task of lopt meta-train's cpu preset;
    every suite has one), zero-shot and small-zero-shot (Craftax with the
    gridworld's settings)"""
    optimizer: str | None = None
    """adam, rmsprop, lion, sgd, or a learned optimizer's file: open:PATH (OPEN and
    its ablations), optim4rl:PATH, learned:PATH (any lopt file) or velo:PATH (VeLO's
    weights); default adam, or the --tuned file's optimizer"""
    tuned: Path | None = None
    """a tuned.json from lopt tune: its hyperparameters for its optimizer"""
    algo: str = "ppo"
    """inner-loop algorithm: ppo, dqn, iqn or pqn (value-based: discrete actions)"""
    lr: float | None = None
    """learning rate of a hand-crafted optimizer (default: the preset's tuned one)"""
    seeds: int = 4
    """number of seeds, trained in parallel (vmapped)"""
    seed: int = 0
    """first seed; the run uses seed, seed + 1, ..."""
    total_timesteps: int | None = None
    """environment steps per seed (default: the preset's)"""
    out: Path | None = None
    """run directory (default: runs/train/<env>-<optimizer>-<time>)"""
    overwrite: bool = False
    """write into an existing non-empty --out"""
    progress: bool = True
    """show a progress bar"""


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="update", disable=not enabled)


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(f"{r[c]}") for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print(
            "  ".join(
                f"{row[c]}".rjust(w) for c, w in zip(columns, widths, strict=True)
            )
        )


def _with_tuned(preset, variant: str, path: Path, spec: str | None):
    """``preset`` (of ``variant``) with a tuned.json's settings, and the optimizer
    to train."""
    from lopt.configs.presets import apply_tuned
    from lopt.configs.tuned import check_tuned, read_tuned

    tuned = read_tuned(path)
    check_tuned(tuned, preset.config, variant, path)
    if spec is not None and spec.strip().lower() != tuned.optimizer:
        raise ValueError(
            f"{path} holds {tuned.optimizer}'s settings; --optimizer is {spec}"
        )
    return apply_tuned(preset, tuned, variant), tuned.optimizer


def run_train(args: Train, command: list[str]) -> dict:
    from lopt.analysis.plots import plot_learning_curves
    from lopt.configs.presets import preset_for
    from lopt.optim.spec import from_spec
    from lopt.rl.executor import Executor, chunk_size, seed_keys
    from lopt.runs.records import env_steps, write_train_run
    from lopt.runs.rundir import prepare_run_dir

    if args.seeds < 1:
        _fail("--seeds must be at least 1")
    try:
        preset = preset_for(args.env, args.preset, args.algo)
        spec = args.optimizer or "adam"
        if args.tuned is not None:
            preset, spec = _with_tuned(preset, args.preset, args.tuned, args.optimizer)
        config = preset.config
        optimizer = from_spec(
            spec,
            preset.optimizers,
            noise_mask=config.noise_mask(),
            learning_rate=args.lr,
        )
        if args.total_timesteps is not None:
            config = dataclasses.replace(config, total_timesteps=args.total_timesteps)
        out = args.out or _default_out("train", args.env, optimizer.name)
        prepare_run_dir(out, args.overwrite)
    except ValueError as err:  # every lopt input error is a ValueError
        _fail(str(err))

    seeds = list(range(args.seed, args.seed + args.seeds))
    print(
        f"lopt train: {config.env} with {optimizer.name}, {len(seeds)} seeds x "
        f"{config.num_updates * config.frames_per_update:,} steps -> {out}"
    )
    start = time.perf_counter()
    with _progress_bar(config.num_updates, "training", args.progress) as bar:
        try:
            executor = Executor(config, optimizer, chunk=chunk_size(config.num_updates))
            metrics, _ = executor(
                seed_keys(seeds), on_progress=lambda n: bar.update(n - bar.n)
            )
        except ValueError as err:  # e.g. an environment's missing data file
            bar.close()
            _fail(str(err))
    wall = time.perf_counter() - start
    summary = write_train_run(out, config, optimizer, seeds, metrics, wall, command)
    plot_learning_curves(
        env_steps(config),
        {optimizer.name: metrics["return"]},
        out / "learning_curve.png",
        title=f"{config.env}: {args.algo.upper()} with {optimizer.name}",
    )
    _print_table(
        [
            {
                "optimizer": optimizer.name,
                "seeds": len(seeds),
                **{k: f"{summary[k]:.2f}" for k in ("mean", "iqm", "min", "max")},
            }
        ],
        ["optimizer", "seeds", "mean", "iqm", "min", "max"],
    )
    print(f"final return per seed: {[round(x, 2) for x in summary['final_returns']]}")
    print(
        f"{wall:.1f} s ({summary['env_steps_per_second']:,.0f} env steps/s); "
        f"results in {out}"
    )
    return summary


@dataclasses.dataclass
class MetaTrain:
    """Meta-train a learned optimizer with evolution strategies."""

    name: tyro.conf.Positional[str] = "cpu"
    """the meta-training preset: cpu (default: minutes on a laptop), breakout,
    asterix, freeway, spaceinvaders, multi-minatar, gridworld (the paper's
    settings, meant for GPUs)"""
    envs: tuple[str, ...] | None = None
    """tasks to meta-train on, each with its --algo --preset settings (replaces
    the meta-training preset's tasks)"""
    algo: str = "ppo"
    """inner-loop algorithm of --envs: ppo, dqn, iqn or pqn"""
    preset: str = "default"
    """the algorithm's preset variant for --envs: default, small, zero-shot or
    small-zero-shot"""
    tuned: tuple[Path, ...] | None = None
    """tuned.json files from lopt tune: each sets its environment's fitness
    normaliser (baseline return) to its best setting's mean return"""
    total_timesteps: int | None = None
    """inner-loop environment steps per run, for every task"""
    learned: str = "open"
    """the learned optimizer to train: open, no-features (OPEN's network reading
    only parameter, gradient and momenta, no noise) or optim4rl (Lan et al. 2024)"""
    ablate: str | None = None
    """OPEN ablation: comma-separated parts to remove, from training_prop,
    batch_prop, layer_prop, dormancy, noise"""
    separate_actor_critic: bool = False
    """separate meta-parameters for the actor's and the critic's leaves (OPEN's Deep
    Sea study)"""
    optim4rl_lr: float | None = None
    """learning rate of an Optim4RL optimizer (default 1e-3)"""
    strategy: str | None = None
    """open-es (the paper's) or ga (keep the best, mutate copies)"""
    cell: str | None = None
    """recurrent cell of the new optimizer: gru (the paper's) or lstm"""
    population: int | None = None
    generations: int | None = None
    rollouts: int | None = None
    """inner runs per member per generation (seeds shared by all members)"""
    sigma: float | None = None
    sigma_decay: float | None = None
    lr: float | None = None
    lr_decay: float | None = None
    save_every: int | None = None
    eval_every: int | None = None
    seed: int | None = None
    init_from: str | None = None
    """start the ES mean from this optimizer file instead of zeros"""
    out: Path | None = None
    """run directory (default: runs/meta-train/<preset>-<time>)"""
    resume: Path | None = None
    """continue the run in this directory from its newest checkpoint"""
    overwrite: bool = False
    progress: bool = True


def _meta_config(args: MetaTrain):
    from lopt.configs.presets import META_PRESETS, task_for

    if args.name not in META_PRESETS:
        _fail(
            f"unknown meta-training preset {args.name!r}; choose from "
            f"{', '.join(META_PRESETS)}"
        )
    config = META_PRESETS[args.name]
    if args.preset != "default" and not args.envs:
        _fail("--preset applies to --envs (the named presets fix their tasks)")
    if args.algo != "ppo" and not args.envs:
        _fail(f"--algo {args.algo} needs --envs (the named presets meta-train PPO)")
    if args.envs:
        tasks = tuple(task_for(env, args.preset, args.algo) for env in args.envs)
        optimizer = OPENConfig.large() if len(tasks) > 1 else OPENConfig.small()
        config = dataclasses.replace(config, tasks=tasks, optimizer=optimizer)
    if args.tuned:
        config = dataclasses.replace(
            config, tasks=_tuned_tasks(config.tasks, args.tuned)
        )
    if args.total_timesteps is not None:
        config = dataclasses.replace(
            config,
            tasks=tuple(
                dataclasses.replace(
                    t,
                    config=dataclasses.replace(
                        t.config, total_timesteps=args.total_timesteps
                    ),
                )
                for t in config.tasks
            ),
        )
    if args.cell is not None:
        config = dataclasses.replace(
            config, optimizer=dataclasses.replace(config.optimizer, cell=args.cell)
        )
    config = dataclasses.replace(config, optimizer=_learned_config(args, config))
    es_changes = {
        "strategy": args.strategy,
        "population_size": args.population,
        "num_generations": args.generations,
        "num_rollouts": args.rollouts,
        "sigma": args.sigma,
        "sigma_decay": args.sigma_decay,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
    }
    es = dataclasses.replace(
        config.es, **{k: v for k, v in es_changes.items() if v is not None}
    )
    run_changes = {
        "save_every": args.save_every,
        "eval_every": args.eval_every,
        "seed": args.seed,
        "init_from": args.init_from,
    }
    config = dataclasses.replace(
        config, es=es, **{k: v for k, v in run_changes.items() if v is not None}
    )
    return config


def _learned_config(args: MetaTrain, config):
    """The learned optimizer that ``--learned``, ``--ablate`` and the other options
    describe, with the preset's OPEN architecture as the base."""
    from lopt.optim.learned import make_config

    ablate = [a.strip() for a in (args.ablate or "").split(",") if a.strip()]
    learned = make_config(
        args.learned,
        config.optimizer,
        ablate=ablate,
        separate_actor_critic=args.separate_actor_critic,
    )
    if args.learned == "optim4rl":
        if args.cell is not None:
            raise ValueError("--cell applies to open and no-features, not optim4rl")
        if args.optim4rl_lr is not None:
            learned = dataclasses.replace(learned, learning_rate=args.optim4rl_lr)
    elif args.optim4rl_lr is not None:
        raise ValueError(f"--optim4rl-lr applies to optim4rl, not {args.learned}")
    return learned


def _tuned_tasks(tasks, paths):
    """``tasks`` with each tuned file's mean return as its task's baseline."""
    from lopt.configs.tuned import check_tuned, read_tuned

    baselines = {}
    envs = [t.config.env for t in tasks]
    for path in paths:
        tuned = read_tuned(path)
        if tuned.env not in envs:
            _fail(
                f"{path} was tuned on {tuned.env}, which is not a task of this "
                f"run ({', '.join(envs)})"
            )
        task = tasks[envs.index(tuned.env)]
        check_tuned(tuned, task.config, None, path)
        if tuned.total_timesteps != task.config.total_timesteps:
            _fail(
                f"{path} holds {tuned.algo}'s return at {tuned.total_timesteps:,} "
                f"frames; the task runs {task.config.total_timesteps:,}: tune at "
                "the task's settings for a fair normaliser"
            )
        baselines[tuned.env] = tuned.baseline_return
    return tuple(
        dataclasses.replace(
            t, baseline_return=baselines.get(t.config.env, t.baseline_return)
        )
        for t in tasks
    )


def run_meta_train(args: MetaTrain, command: list[str]) -> dict:
    from tqdm.auto import tqdm

    from lopt.analysis.plots import plot_meta_training
    from lopt.meta.checkpoint import resume_generation
    from lopt.meta.loop import meta_train, read_config, read_metrics
    from lopt.runs.records import versions
    from lopt.runs.rundir import prepare_run_dir

    try:
        if args.resume is not None:
            if not (args.resume / "config.json").exists():
                _fail(f"{args.resume} is not a meta-training run (no config.json)")
            config = read_config(args.resume)
            if args.generations is not None:
                config = dataclasses.replace(
                    config,
                    es=dataclasses.replace(config.es, num_generations=args.generations),
                )
            out = args.resume
        else:
            config = _meta_config(args)
            out = args.out or _default_out("meta-train", args.name)
            prepare_run_dir(out, args.overwrite)
    except ValueError as err:
        _fail(str(err))

    es = config.es
    envs = ", ".join(f"{t.algo} on {t.config.env}" for t in config.tasks)
    cell = getattr(config.optimizer, "cell", None)  # OPEN and its variants
    print(
        f"lopt meta-train: {config.optimizer.variant} ("
        + (f"{cell}, " if cell else "")
        + f"{config.optimizer.num_meta_params} meta-parameters) on {envs} with "
        f"{es.strategy}, population {es.population_size}, {es.num_generations} "
        f"generations -> {out}"
    )
    start = resume_generation(out) if args.resume else 0
    bar = tqdm(
        total=es.num_generations,
        initial=start,
        desc="meta-training",
        unit="gen",
        disable=not args.progress,
    )

    def on_generation(record: dict) -> None:
        postfix = {}
        if "fitness" in record:
            bar.update(1)
            postfix["fitness"] = f"{record['fitness']['combined']['mean']:.3g}"
            postfix["best"] = f"{record['fitness']['combined']['max']:.3g}"
        if "heldout" in record:
            means = [v["mean"] for v in record["heldout"].values()]
            postfix["held-out"] = "/".join(f"{m:.3g}" for m in means)
        bar.set_postfix(postfix)

    try:
        summary = meta_train(
            config,
            out,
            resume=args.resume is not None,
            command=command,
            versions=versions(),
            on_generation=on_generation,
        )
    except ValueError as err:  # a population that does not split, a bad checkpoint
        bar.close()
        _fail(str(err))
    bar.close()
    plot_meta_training(read_metrics(out), out)
    rows = []
    for env, result in summary["heldout"].items():
        initial = (summary["initial_heldout"] or {}).get(env, {})
        rows.append(
            {
                "env": env,
                "start mean": f"{initial.get('mean', float('nan')):.2f}",
                "final mean": f"{result['mean']:.2f}",
                "final iqm": f"{result['iqm']:.2f}",
            }
        )
    print(f"held-out return ({config.num_eval_seeds} seeds):")
    _print_table(rows, ["env", "start mean", "final mean", "final iqm"])
    print(
        f"{summary['wall_time_s']:.0f} s; optimizer: {summary['optimizer']} "
        f"(use it with lopt train --optimizer learned:{summary['optimizer']})"
    )
    return summary


@dataclasses.dataclass
class Eval:
    """Compare optimizers over seeds and environments: statistics, plots, report."""

    env: str = "cartpole"
    """environment(s), comma-separated, e.g. breakout,asterix"""
    algo: str = "ppo"
    """inner-loop algorithm: ppo, dqn, iqn or pqn"""
    optimizers: str = "adam,rmsprop,lion"
    """comma-separated: adam, rmsprop, lion, sgd, open:PATH, optim4rl:PATH,
    learned:PATH, velo:PATH, or tuned:PATH (a tuned.json from lopt tune, tuned
    with the same --algo, environment and --preset)"""
    seeds: int = 4
    """seeds per optimizer and environment (the same seeds for all; vmapped)"""
    seed: int = 0
    """first seed"""
    preset: str = "default"
    """the algorithm's settings: default, small, zero-shot or small-zero-shot"""
    total_timesteps: int | None = None
    """environment steps per run (default: the preset's)"""
    sweep: str | None = None
    """run each environment once per value of one of the algorithm's settings, e.g.
    hidden_size=16,64,256 (agent width) or total_timesteps=5e4,1e5 (length)"""
    reference: str = "adam"
    """optimizer (its name, or its entry in --optimizers) whose mean return
    normalises scores across environments and over which the probability of
    improvement is given"""
    reps: int = 2000
    """bootstrap resamples for the confidence intervals"""
    out: Path | None = None
    """evaluation directory (default: runs/eval/<envs>-<time>)"""
    overwrite: bool = False
    """write into an existing non-empty --out"""
    progress: bool = True
    """show a progress bar per (environment, optimizer)"""


def run_eval(args: Eval, command: list[str]) -> dict:
    from lopt.analysis.report import analyse, notes, tables
    from lopt.runs.evaluation import parse_sweep, run_evaluation
    from lopt.runs.records import versions
    from lopt.runs.rundir import prepare_run_dir

    envs = [e.strip() for e in args.env.split(",") if e.strip()]
    specs = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    if args.seeds < 2:
        _fail("--seeds must be at least 2 for confidence intervals")
    if not envs or not specs:
        _fail("give at least one --env and one --optimizers entry")
    out = args.out or _default_out("eval", *envs)
    seeds = list(range(args.seed, args.seed + args.seeds))
    bars = []

    def on_pair(env: str, name: str, num_updates: int):
        bar = _progress_bar(num_updates, f"{env} {name}", args.progress)
        bars.append(bar)
        return lambda n: bar.update(n - bar.n)

    try:
        sweep = parse_sweep(args.sweep, args.algo) if args.sweep else None
        prepare_run_dir(out, args.overwrite)
        print(
            f"lopt eval: {', '.join(specs)} on {', '.join(envs)}, {len(seeds)} seeds "
            f"-> {out}"
        )
        curves = run_evaluation(
            envs,
            specs,
            seeds,
            out,
            algo=args.algo,
            preset=args.preset,
            total_timesteps=args.total_timesteps,
            sweep=sweep,
            on_pair=on_pair,
            command=command,
        )
    except ValueError as err:
        _fail(str(err))
    finally:
        for bar in bars:
            bar.close()
    reference = args.reference
    if reference in specs:  # e.g. --reference tuned:PATH: that optimizer's name
        reference = curves[specs.index(reference)].optimizer
    summary = analyse(
        curves,
        out,
        reference=reference,
        reps=args.reps,
        seed=args.seed,
        command=command,
        versions=versions(),
    )
    for note in notes(summary):
        print(note)
    for title, header, rows in tables(summary):
        print(f"\n{title}")
        _print_table([dict(zip(header, r, strict=True)) for r in rows], header)
    print(f"\nreport: {out / 'report.html'} (and report.md, summary.json, figures/)")
    return summary


@dataclasses.dataclass
class Tune:
    """Grid-search a hand-crafted optimizer (all settings and seeds vmapped)."""

    env: str = "cartpole"
    """environment name or alias, as lopt train takes it"""
    algo: str = "ppo"
    """inner-loop algorithm: ppo, dqn, iqn or pqn"""
    optimizer: str = "adam"
    """adam, rmsprop or lion"""
    lrs: tuple[float, ...] | None = None
    """learning rates (default: 1e-4 to 1e-2 in steps of about 3; Lion's 10x
    smaller)"""
    b1s: tuple[float, ...] | None = None
    """adam and lion's b1 values (default: 0.9)"""
    b2s: tuple[float, ...] | None = None
    """adam and lion's b2 values (default: adam 0.99 0.999, lion 0.99)"""
    decays: tuple[float, ...] | None = None
    """rmsprop's decay values (default: 0.9 0.99)"""
    anneal: str = "both"
    """learning-rate annealing to 0: both (try on and off), on or off"""
    seeds: int = 4
    """seeds per setting (the same for every setting)"""
    seed: int = 0
    """first seed"""
    preset: str = "default"
    """the algorithm's settings: default, small, zero-shot or small-zero-shot"""
    total_timesteps: int | None = None
    """environment steps per run (default: the preset's)"""
    max_parallel: int = 64
    """most runs (settings x seeds) trained at once in one jitted call"""
    out: Path | None = None
    """tuning directory (default: runs/tune/<env>-<optimizer>-<time>)"""
    overwrite: bool = False
    """write into an existing non-empty --out"""
    progress: bool = True
    """show a progress bar"""


def run_tune(args: Tune, command: list[str]) -> dict:
    import numpy as np

    from lopt.analysis.plots import plot_tuning
    from lopt.runs.rundir import prepare_run_dir
    from lopt.runs.tuning import (
        make_grid,
        plan_tuning,
        run_tuning,
        setting_label,
        write_tuning,
    )

    try:
        grid = make_grid(
            args.optimizer.strip().lower(),
            args.anneal,
            learning_rate=args.lrs,
            b1=args.b1s,
            b2=args.b2s,
            decay=args.decays,
        )
        plan = plan_tuning(
            args.env,
            grid,
            list(range(args.seed, args.seed + args.seeds)),
            algo=args.algo,
            preset=args.preset,
            total_timesteps=args.total_timesteps,
            max_parallel=args.max_parallel,
        )
        out = args.out or _default_out("tune", args.env, grid.optimizer)
        prepare_run_dir(out, args.overwrite)
    except ValueError as err:
        _fail(str(err))

    config = plan.config
    print(
        f"lopt tune: {grid.optimizer} on {plan.env}, {len(plan.settings)} settings x "
        f"{len(plan.seeds)} seeds x {config.num_updates * config.frames_per_update:,} "
        f"steps, {plan.num_calls} vmapped call(s) -> {out}"
    )
    start = time.perf_counter()
    with _progress_bar(plan.total_updates, "tuning", args.progress) as bar:
        returns = run_tuning(plan, on_progress=bar.update)
    wall = time.perf_counter() - start
    try:
        summary = write_tuning(out, plan, returns, wall, command)
    except ValueError as err:  # every setting diverged
        _fail(str(err))

    # One line per setting of the other axes, final return against learning rate.
    lrs = grid.values["learning_rate"]
    final = returns[:, :, -1]
    lines: dict[str, list] = {}
    for i, setting in enumerate(plan.settings):
        lines.setdefault(setting_label(setting, grid.axes), []).append(final[i])
    best = summary["best"]
    plot_tuning(
        lrs,
        {k: np.stack(v) for k, v in lines.items()},
        out / "final_return_vs_lr.png",
        best=(best["learning_rate"], best["mean"]),
        title=f"{plan.env}: {grid.optimizer}, {len(plan.seeds)} seeds per point",
    )
    ranked = sorted(
        (s for s in summary["settings"] if s["mean"] is not None),
        key=lambda s: -s["mean"],
    )
    _print_table(
        [
            {
                "lr": f"{s['learning_rate']:g}",
                "setting": setting_label(s, grid.axes),
                **{k: f"{s[k]:.2f}" for k in ("mean", "iqm", "min", "max")},
            }
            for s in ranked[:5]
        ],
        ["lr", "setting", "mean", "iqm", "min", "max"],
    )
    diverged = sum(s["diverged"] for s in summary["settings"])
    if diverged:
        print(f"{diverged} setting(s) diverged (non-finite return)")
    print(
        f"best: lr {best['learning_rate']:g} {setting_label(best, grid.axes)}, mean "
        f"final return {best['mean']:.2f}; {wall:.0f} s; results in {out}\n"
        f"use it: lopt train --algo {args.algo} --env {args.env} --preset "
        f"{args.preset} "
        f"--tuned {out / 'tuned.json'}"
    )
    return summary


@dataclasses.dataclass
class Study:
    """Run one of the paper's experiments and check its claims: released,
    ablations, deepsea, gridworld, craftax, pqn or overhead."""

    name: tyro.conf.Positional[str]
    """the study: released, ablations, deepsea, gridworld, craftax, pqn, overhead"""
    scale: str = "cpu"
    """smoke (seconds: checks the machinery, no claim is meaningful), cpu (the
    largest budget that finishes on 2 CPU cores in the time the study's docs
    state) or paper (the paper's settings, meant for GPUs)"""
    envs: str | None = None
    """comma-separated subset of the study's environments or parts, e.g.
    released: breakout,asterix,freeway,spaceinvaders,ant,gridworld,multi"""
    seeds: int | None = None
    """evaluation seeds (default: the scale's)"""
    seed: int = 0
    """first evaluation seed"""
    tuned: tuple[Path, ...] | None = None
    """tuned.json files (lopt tune) for the hand-crafted baselines, each used on
    the environment, algorithm and preset it was tuned for"""
    tune: str = "auto"
    """tune the baselines without a tuned file or the paper's values on tuning
    seeds: auto (at paper scale), yes or no"""
    generations: int | None = None
    """ES generations of every meta-training job (default: the scale's)"""
    population: int | None = None
    """ES population of every meta-training job (default: the scale's)"""
    pretrained: Path | None = None
    """folder of the paper's released optimizers (default: $LOPT_PRETRAINED or
    ../shared/pretrained beside the checkout)"""
    reps: int = 2000
    """bootstrap resamples for the confidence intervals"""
    dry_run: bool = False
    """print the plan (jobs, seeds, environment steps) after checking it; run
    nothing"""
    out: Path | None = None
    """study directory (default: runs/study/<name>-<scale>-<time>)"""
    overwrite: bool = False
    """write into an existing non-empty --out"""
    resume: bool = False
    """continue the study in --out: finished jobs are read back, an interrupted
    meta-training resumes from its checkpoint"""
    progress: bool = True
    """show progress bars"""


def run_study(args: Study, command: list[str]) -> dict | None:
    from lopt.runs.rundir import prepare_run_dir
    from lopt.studies import make_plan
    from lopt.studies import run_study as run
    from lopt.studies.claims import format_numbers
    from lopt.studies.common import Options

    tune = {"auto": None, "yes": True, "no": False}
    if args.tune not in tune:
        _fail(f"--tune is auto, yes or no; got {args.tune!r}")
    try:
        options = Options(
            scale=args.scale,
            envs=tuple(e.strip() for e in args.envs.split(",") if e.strip())
            if args.envs
            else None,
            seeds=args.seeds,
            seed=args.seed,
            tuned=tuple(args.tuned or ()),
            tune=tune[args.tune],
            generations=args.generations,
            population=args.population,
            reps=args.reps,
            pretrained=args.pretrained,
        )
        plan = make_plan(args.name, options)
    except ValueError as err:
        _fail(str(err))
    lines = plan.describe()
    if args.dry_run:
        print("\n".join(lines))
        print("dry run: the plan is valid; nothing was run")
        return None
    if args.resume and (args.out is None or not args.out.is_dir()):
        _fail("--resume needs the --out directory of the study to continue")
    out = args.out or _default_out("study", args.name, args.scale)
    try:
        if not args.resume:
            prepare_run_dir(out, args.overwrite)
    except ValueError as err:
        _fail(str(err))
    print("\n".join(lines))
    print(f"-> {out}")
    start = time.perf_counter()
    try:
        record = run(
            args.name,
            options,
            out,
            resume=args.resume,
            progress=args.progress,
            command=command,
        )
    except ValueError as err:  # e.g. a study directory planned differently
        _fail(str(err))
    rows = [
        {
            "verdict": claim["verdict"],
            "claim": claim["text"],
            "numbers": format_numbers(claim["numbers"]),
        }
        for claim in record["claims"]
    ]
    if rows:
        print()
        _print_table(rows, ["verdict", "claim", "numbers"])
    for rule in record["rules"].values():
        print(f"rule: {rule}")
    for note in record["notes"]:
        print(f"note: {note}")
    print(
        f"{time.perf_counter() - start:.0f} s; report: {out / 'report.html'} "
        "(and report.md, claims.json, one folder per part)"
    )
    return record


COMMANDS = {
    "train": (Train, run_train),
    "tune": (Tune, run_tune),
    "meta-train": (MetaTrain, run_meta_train),
    "eval": (Eval, run_eval),
    "study": (Study, run_study),
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lopt`` command."""
    args = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in COMMANDS.items()},
        args=argv,
        description=f"lopt {__version__}: learned optimization for RL in JAX",
    )
    # What config.json and reports record: the command as the user typed it.
    command = ["lopt", *(sys.argv[1:] if argv is None else argv)]
    for cls, run in COMMANDS.values():
        if isinstance(args, cls):
            run(args, command)


if __name__ == "__main__":
    main()
