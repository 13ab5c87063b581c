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
    deepsea-8 (also -16, -24, -32)"""
    preset: str = "default"
    """PPO settings: default (the paper's for MinAtar) or small (MinAtar in seconds
    on a CPU, the inner task of lopt meta-train's cpu preset)"""
    optimizer: str = "adam"
    """adam, rmsprop, lion, sgd, or open:PATH (a learned optimizer's .npy file)"""
    algo: str = "ppo"
    """inner-loop algorithm: ppo, dqn, iqn or pqn (value-based: presets for
    cartpole, asterix and breakout)"""
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


def run_train(args: Train, command: list[str]) -> dict:
    from lopt.analysis.plots import plot_learning_curves
    from lopt.configs.presets import preset_for
    from lopt.optim.spec import from_spec
    from lopt.rl.algorithms import noise_mask
    from lopt.rl.runner import train_seeds
    from lopt.runs.records import env_steps, write_train_run
    from lopt.runs.rundir import prepare_run_dir

    if args.seeds < 1:
        _fail("--seeds must be at least 1")
    try:
        preset = preset_for(args.env, args.preset, args.algo)
        config = preset.config
        optimizer = from_spec(
            args.optimizer,
            preset.optimizers,
            noise_mask=noise_mask(config),
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
            metrics, _ = train_seeds(
                config, optimizer, seeds, on_progress=lambda n: bar.update(n - bar.n)
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

    preset: tyro.conf.Positional[str] = "cpu"
    """cpu (default: minutes on a laptop), breakout, asterix, freeway,
    spaceinvaders, multi-minatar, gridworld (the paper's settings, meant for GPUs)"""
    envs: tuple[str, ...] | None = None
    """tasks to meta-train on, each with its --algo preset (replaces the preset's)"""
    algo: str = "ppo"
    """inner-loop algorithm of --envs: ppo, dqn, iqn or pqn (its preset per env)"""
    ppo_preset: str = "default"
    """PPO preset variant of --envs: default or small"""
    total_timesteps: int | None = None
    """inner-loop environment steps per run, for every task"""
    learned: str = "open"
    """the learned optimizer to train"""
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

    if args.preset not in META_PRESETS:
        _fail(f"unknown preset {args.preset!r}; choose from {', '.join(META_PRESETS)}")
    if args.learned != "open":
        _fail(f"unknown learned optimizer {args.learned!r}; choose from open")
    config = META_PRESETS[args.preset]
    if args.ppo_preset != "default" and not args.envs:
        _fail("--ppo-preset applies to --envs")
    if args.algo != "ppo" and not args.envs:
        _fail(f"--algo {args.algo} needs --envs (the named presets meta-train PPO)")
    if args.envs:
        tasks = tuple(task_for(env, args.ppo_preset, args.algo) for env in args.envs)
        optimizer = OPENConfig.large() if len(tasks) > 1 else OPENConfig.small()
        config = dataclasses.replace(config, tasks=tasks, optimizer=optimizer)
    if args.total_timesteps is not None:
        config = dataclasses.replace(
            config,
            tasks=tuple(
                t.with_algo(
                    dataclasses.replace(t.algo, total_timesteps=args.total_timesteps)
                )
                for t in config.tasks
            ),
        )
    if args.cell is not None:
        config = dataclasses.replace(
            config, optimizer=dataclasses.replace(config.optimizer, cell=args.cell)
        )
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
            out = args.out or _default_out("meta-train", args.preset)
            prepare_run_dir(out, args.overwrite)
    except ValueError as err:
        _fail(str(err))

    es = config.es
    envs = ", ".join(f"{t.algo_name} on {t.algo.env}" for t in config.tasks)
    print(
        f"lopt meta-train: {args.learned} ({config.optimizer.cell}, "
        f"{config.optimizer.num_meta_params} meta-parameters) on {envs} with "
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
        f"(use it with lopt train --optimizer open:{summary['optimizer']})"
    )
    return summary


@dataclasses.dataclass
class Eval:
    """Compare optimizers over seeds and environments: statistics, plots, report."""

    env: str = "cartpole"
    """environment(s), comma-separated, e.g. breakout,asterix"""
    optimizers: str = "adam,rmsprop,lion"
    """comma-separated: adam, rmsprop, lion, sgd, open:PATH"""
    seeds: int = 4
    """seeds per optimizer and environment (the same seeds for all; vmapped)"""
    seed: int = 0
    """first seed"""
    preset: str = "default"
    """PPO settings: default or small"""
    total_timesteps: int | None = None
    """environment steps per run (default: the preset's)"""
    sweep: str | None = None
    """run each environment once per value of a PPO setting, e.g.
    hidden_size=16,64,256 (agent width) or total_timesteps=5e4,1e5 (length)"""
    reference: str = "adam"
    """optimizer whose mean return normalises scores across environments"""
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
        sweep = parse_sweep(args.sweep) if args.sweep else None
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
    summary = analyse(
        curves,
        out,
        reference=args.reference,
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


COMMANDS = {
    "train": (Train, run_train),
    "meta-train": (MetaTrain, run_meta_train),
    "eval": (Eval, run_eval),
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
