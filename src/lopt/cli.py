"""The ``lopt`` command: ``lopt train``, ``lopt meta-train``, ...

Each subcommand is a dataclass of documented options (tyro) and a function that
runs it. Library modules never import this one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import tyro

from lopt import __version__
from lopt.atomic import write_json
from lopt.optim.network import OPENConfig
from lopt.runs.rundir import release_run_dir
from lopt.validation import check_options, flag

#: Exit codes: 2 a bad invocation (one ``lopt: error:`` line), 3 a run that ended
#: but diverged (every seed, setting or the ES mean), 128 + N a run stopped by
#: signal N (130: Ctrl-C, 143: SIGTERM) after keeping what was done.
EXIT_ERROR, EXIT_DIVERGED = 2, 3


def _fail(message: str) -> None:
    print(f"lopt: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


def _warn(message: str) -> None:
    print(f"lopt: warning: {message}", file=sys.stderr)


class _Stop:
    """Set by the first SIGINT or SIGTERM: the run stops at its next boundary
    (a chunk of updates, a generation); ``stop()`` asks whether to."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def exit(self, message: str) -> None:
        """Ends the command after a stop: ``message``, exit code 128 + signal."""
        print(f"lopt: stopped by {self.name}: {message}", file=sys.stderr)
        raise SystemExit(128 + self.signum)


@contextlib.contextmanager
def _stoppable(what: str):
    """While inside, SIGINT and SIGTERM set the yielded :class:`_Stop` (and say
    ``what`` happens next); a second signal stops at once (KeyboardInterrupt)."""
    stop = _Stop()

    def handler(signum, frame):
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum
        print(
            f"\nlopt: {signal.Signals(signum).name} received: {what} (send it again "
            "to stop at once, losing it)",
            file=sys.stderr,
            flush=True,
        )

    # A signal the process was started ignoring (a script's background job
    # ignores SIGINT) stays ignored.
    previous = {
        s: signal.signal(s, handler)
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not signal.SIG_IGN
    }
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _number(x) -> str:
    """A statistic for a table: ``nan`` or None (a diverged run) as such."""
    return "diverged" if x is None or x != x else f"{x:.2f}"


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
    humanoid), craftax-classic, atari/breakout (and pong, space_invaders, ...),
    pendulum, mountaincar-continuous, mujoco/halfcheetah (and hopper, walker2d, ant,
    humanoid: real MuJoCo), dmc/cheetah-run (and walker-walk, ...: Playground)"""
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
    """inner-loop algorithm: ppo, dqn, iqn, pqn or rainbow (discrete actions), sac
    or td3 (continuous actions)"""
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
    log: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """experiment tracking, repeatable: --log wandb, --log tensorboard"""


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


def _open_trackers(kinds, out: Path, name: str, config: dict):
    """The --log trackers for the run in ``out``, with its settings logged."""
    from lopt.runs.tracking import open_trackers

    trackers = open_trackers(kinds, out, name)
    trackers.config(config)
    return trackers


def _log_updates(trackers, metrics: dict, seeds, done: int, prefix: str = ""):
    """``on_metrics`` of the executor: each update of the chunk that ends at
    update ``done``, against the update's number."""
    from lopt.runs.tracking import per_update

    records = per_update(metrics, seeds)
    for update, record in enumerate(records, start=done - len(records) + 1):
        trackers.log(
            {prefix + k: v for k, v in record.items()}, update, f"{prefix}update"
        )


def _horizon_warning(optimizer, config) -> None:
    """Warns once when a learned optimizer's file was meta-trained at another
    horizon (its card) than this run's number of optimizer steps."""
    from lopt.runs.evaluation import horizon_warning

    warning = horizon_warning(optimizer, config)
    if warning:
        _warn(warning)


def _with_tuned(preset, variant: str, path: Path, spec: str | None):
    """``preset`` (of ``variant``) with a tuned.json's settings, and the settings
    (their ``optimizer`` is the one to train)."""
    from lopt.configs.presets import apply_tuned
    from lopt.configs.tuned import check_tuned, read_tuned

    tuned = read_tuned(path)
    check_tuned(tuned, preset.config, variant, path)
    if spec is not None and spec.strip().lower() != tuned.optimizer:
        raise ValueError(
            f"{path} holds {tuned.optimizer}'s settings; --optimizer is {spec}"
        )
    return apply_tuned(preset, tuned, variant), tuned


def run_train(args: Train, command: list[str]) -> dict:
    from lopt.analysis.plots import plot_learning_curves
    from lopt.configs.presets import preset_for
    from lopt.optim.spec import from_spec
    from lopt.rl.executor import Executor, chunk_size, seed_keys
    from lopt.runs.records import env_steps, write_train_run
    from lopt.runs.rundir import prepare_run_dir
    from lopt.runs.tracking import check_kinds

    try:
        preset = preset_for(args.env, args.preset, args.algo)
        spec, tuned = args.optimizer or "adam", None
        if args.tuned is not None:
            preset, tuned = _with_tuned(preset, args.preset, args.tuned, args.optimizer)
            spec = tuned.optimizer
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
        check_kinds(args.log)
        prepare_run_dir(out, args.overwrite)
    except ValueError as err:  # every lopt input error is a ValueError
        _fail(str(err))

    seeds = list(range(args.seed, args.seed + args.seeds))
    _horizon_warning(optimizer, config)
    if tuned is not None:
        from lopt.configs.tuned import budget_mismatch

        warning = budget_mismatch(tuned, config)
        if warning:
            _warn(f"{args.tuned}: {warning}")
    trackers = _open_trackers(
        args.log,
        out,
        out.name,
        {
            "command": command,
            args.algo: dataclasses.asdict(config),
            "optimizer": optimizer.description,
            "seeds": seeds,
        },
    )
    print(
        f"lopt train: {config.env} with {optimizer.name}, {len(seeds)} seeds x "
        f"{config.num_frames:,} steps -> {out}"
    )
    start = time.perf_counter()
    stopping = "stopping after the current chunk of updates, keeping those done"
    with (
        _progress_bar(config.num_updates, "training", args.progress) as bar,
        _stoppable(stopping) as stop,
    ):
        try:
            executor = Executor(config, optimizer, chunk=chunk_size(config.num_updates))
            metrics, _ = executor(
                seed_keys(seeds),
                on_progress=lambda n: bar.update(n - bar.n),
                on_metrics=lambda done, m: _log_updates(trackers, m, seeds, done),
                stop=stop,
            )
        except ValueError as err:  # e.g. an environment's missing data file
            bar.close()
            _fail(str(err))
    wall = time.perf_counter() - start
    summary = write_train_run(
        out, config, optimizer, seeds, metrics, wall, command, stopped_by=stop.name
    )
    done = summary["updates_done"]
    if done:
        plot_learning_curves(
            env_steps(config)[:done],
            {optimizer.name: metrics["return"]},
            out / "learning_curve.png",
            title=f"{config.env}: {args.algo.upper()} with {optimizer.name}",
        )
        trackers.figures([out / "learning_curve.png"])
        _report_train(summary, optimizer.name, wall, out)
    trackers.close()
    if done < config.num_updates:  # stopped by a signal
        stop.exit(
            f"{done} of {config.num_updates} updates done, written to {out} as a "
            'partial run (summary.json: "status": "partial")'
        )
    diverged = summary["diverged_seeds"]
    if diverged and len(diverged) == len(seeds):
        _warn(
            "every seed diverged; lower the learning rate (--lr) or choose another "
            "optimizer"
        )
        raise SystemExit(EXIT_DIVERGED)
    return summary


def _report_train(summary: dict, name: str, wall: float, out: Path) -> None:
    """Prints a training run's table, its final returns and its diverged seeds."""
    _print_table(
        [
            {
                "optimizer": name,
                "seeds": len(summary["seeds"]),
                **{k: _number(summary[k]) for k in ("mean", "iqm", "min", "max")},
            }
        ],
        ["optimizer", "seeds", "mean", "iqm", "min", "max"],
    )
    print(f"final return per seed: {[round(x, 2) for x in summary['final_returns']]}")
    print(
        f"{wall:.1f} s ({summary['env_steps_per_second']:,.0f} env steps/s); "
        f"results in {out}"
    )
    where = [
        f"seed {seed} at update {update}"
        for seed, update in zip(
            summary["seeds"], summary["diverged_at_update"], strict=True
        )
        if update
    ]
    if where:
        _warn(
            f"{len(where)} of {len(summary['seeds'])} seeds diverged (non-finite "
            f"parameters, losses or updates): {', '.join(where)}"
        )


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
    """inner-loop algorithm of --envs: ppo, dqn, iqn, pqn, rainbow, sac or td3"""
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
    fitness_window: float | None = None
    """the fraction of each inner run's last updates whose mean return is its
    fitness; 0: the final return alone (the paper's)"""
    antithetic_tasks: bool | None = None
    """each antithetic pair gets its own inner-run seeds and fitness is pairwise
    (OPEN §4.3; the gridworld's default); otherwise every member shares them"""
    sigma: float | None = None
    sigma_decay: float | None = None
    lr: float | None = None
    lr_decay: float | None = None
    lr_warmup: int | None = None
    """generations over which ES's learning rate rises linearly to --lr"""
    probes: int | None = None
    """independent ES runs (seeds --seed, --seed + 1000, ...) started side by side;
    after --probe-generations the one best on the held-out seeds continues (1:
    none; --probe-generations equal to --generations: the best is the result)"""
    probe_generations: int | None = None
    """generations each probe runs before the best continues"""
    save_every: int | None = None
    eval_every: int | None = None
    seed: int | None = None
    init_from: str | None = None
    """where the ES mean starts: zeros (the paper's start), signum:LR (OPEN stepping
    -LR * sign(momentum)) or an optimizer file (default: the cpu preset's
    signum:3e-3 on its own task; zeros with --envs, the other presets, or a
    learned optimizer the signum start does not fit)"""
    out: Path | None = None
    """run directory (default: runs/meta-train/<preset>-<time>)"""
    resume: Path | None = None
    """continue the run in this directory from its newest checkpoint"""
    overwrite: bool = False
    progress: bool = True
    log: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """experiment tracking, repeatable: --log wandb, --log tensorboard"""
    coordinator: str | None = None
    """HOST:PORT of process 0, to meta-train as several cooperating processes (one
    per host or GPU, the same command on each but --process-id)"""
    num_processes: int | None = None
    """number of cooperating processes (with --coordinator)"""
    process_id: int | None = None
    """this process's index, 0 to num-processes - 1; process 0 writes the run"""
    distributed: bool = False
    """join a multi-process run, taking what --coordinator, --num-processes and
    --process-id leave unset from the cluster (SLURM, Open MPI, ...)"""
    heartbeat_timeout: int = 30
    """seconds a process may go silent before the others count it as dead and stop"""


def _join_processes(args: MetaTrain):
    """Joins the multi-process run the options ask for; None on one process."""
    from lopt import distributed

    given = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in given):
        return None
    try:
        return distributed.initialize(
            *given, heartbeat_timeout_s=args.heartbeat_timeout
        )
    except distributed.DistributedError as err:
        _fail(str(err))


def _meta_setup(args: MetaTrain):
    """``(config, run directory)``: a resumed run's (its settings checked against
    the options given), or a new one prepared (an old run set aside with
    ``--overwrite``)."""
    from lopt.runs.rundir import prepare_run_dir, set_aside

    try:
        if args.resume is not None:
            config = _resume_config(args)
            return config, prepare_run_dir(args.resume, False, resume=True)
        config = _meta_config(args)
        out = args.out or _default_out("meta-train", args.name)
        prepare_run_dir(out, args.overwrite)
        moved = set_aside(out) if args.overwrite else None
        if moved is not None:
            print(f"lopt meta-train: the old run's files moved to {moved}")
        _keep_tuned(args.tuned or (), out)
        return config, out
    except ValueError as err:
        _fail(str(err))


#: Where a meta-training run keeps copies of its --tuned files, one per task.
TUNED_DIR = "tuned"


def _keep_tuned(paths, out: Path) -> None:
    """Copies the tuned files into the run (``out/tuned/<env>.json``), so that a
    resumed run, which takes no --tuned, ends with the same comparison."""
    import shutil

    from lopt.configs.tuned import read_tuned
    from lopt.runs.evaluation import slug

    if paths:
        (out / TUNED_DIR).mkdir(exist_ok=True)
    for path in paths:
        shutil.copyfile(path, out / TUNED_DIR / f"{slug(read_tuned(path).env)}.json")


def _shared_meta_setup(args: MetaTrain):
    """:func:`_meta_setup` on process 0, sent to the others (which may not see its
    files: the run directory, --tuned, --resume)."""
    import json

    from lopt import distributed
    from lopt.meta.config import MetaTrainConfig
    from lopt.serialise import from_dict, to_dict

    if not distributed.is_writer():
        shared = json.loads(distributed.broadcast_bytes(None))
        if "error" in shared:
            _fail(shared["error"])
        return from_dict(MetaTrainConfig, shared["config"]), Path(shared["out"])
    shared = {"error": "process 0 could not set up the run; see its output"}
    try:
        config, out = _meta_setup(args)
        shared = {"config": to_dict(config), "out": str(out)}
    finally:  # also when _meta_setup fails, so that the others stop too
        distributed.broadcast_bytes(json.dumps(shared).encode())
    return config, out


def _each_task(config, change):
    """``config`` with ``change`` (TaskConfig -> TaskConfig) applied to every task."""
    return dataclasses.replace(config, tasks=tuple(change(t) for t in config.tasks))


def _meta_config(args: MetaTrain):
    from lopt.configs.presets import META_PRESETS, task_for
    from lopt.optim.signum_start import signum_error

    if args.name not in META_PRESETS:
        _fail(
            f"unknown meta-training preset {args.name!r}; choose from "
            f"{', '.join(META_PRESETS)}"
        )
    # The preset's start is set back at the end, if it fits what the options give.
    preset_start = META_PRESETS[args.name].init_from
    config = dataclasses.replace(META_PRESETS[args.name], init_from=None)
    if args.preset != "default" and not args.envs:
        _fail("--preset applies to --envs (the named presets fix their tasks)")
    if args.algo != "ppo" and not args.envs:
        _fail(f"--algo {args.algo} needs --envs (the named presets meta-train PPO)")
    if args.envs:
        tasks = tuple(task_for(env, args.preset, args.algo) for env in args.envs)
        optimizer = OPENConfig.large() if len(tasks) > 1 else OPENConfig.small()
        config = dataclasses.replace(config, tasks=tasks, optimizer=optimizer)
    if args.total_timesteps is not None:
        config = _each_task(
            config,
            lambda t: dataclasses.replace(
                t,
                config=dataclasses.replace(
                    t.config, total_timesteps=args.total_timesteps
                ),
            ),
        )
    if args.antithetic_tasks is not None:
        config = _each_task(
            config,
            lambda t: dataclasses.replace(t, antithetic_tasks=args.antithetic_tasks),
        )
    # After --total-timesteps: a tuned file's budget is checked against the run's.
    if args.tuned:
        config = dataclasses.replace(
            config, tasks=_tuned_tasks(config.tasks, args.tuned)
        )
    if args.cell is not None:
        config = dataclasses.replace(
            config, optimizer=dataclasses.replace(config.optimizer, cell=args.cell)
        )
    config = dataclasses.replace(config, optimizer=_learned_config(args, config))
    # The preset's signum start is for its own task (--envs: zeros, as the paper)
    # and for OPEN with a GRU cell and momentum features.
    if preset_start is not None and args.init_from is None and not args.envs:
        unfit = signum_error(config.optimizer)
        if unfit is None:
            config = dataclasses.replace(config, init_from=preset_start)
        else:
            print(f"lopt: ES starts from zeros: {unfit}", file=sys.stderr)
    return _with_es_options(config, args)


#: MetaTrain option -> the setting of MetaTrainConfig it sets ("es." for ESConfig's).
ES_OPTIONS = {
    "strategy": "es.strategy",
    "population": "es.population_size",
    "generations": "es.num_generations",
    "rollouts": "es.num_rollouts",
    "fitness_window": "es.fitness_window",
    "sigma": "es.sigma",
    "sigma_decay": "es.sigma_decay",
    "lr": "es.lr",
    "lr_decay": "es.lr_decay",
    "lr_warmup": "es.lr_warmup",
    "probes": "es.probes",
    "probe_generations": "es.probe_generations",
    "save_every": "save_every",
    "eval_every": "eval_every",
    "seed": "seed",
    "init_from": "init_from",
}


def _with_es_options(config, args: MetaTrain):
    """``config`` with the ES and run options that ``args`` gives (not None)."""
    given = {
        setting: getattr(args, option)
        for option, setting in ES_OPTIONS.items()
        if getattr(args, option) is not None
    }
    if given.get("init_from") == "zeros":
        given["init_from"] = None
    es = dataclasses.replace(
        config.es, **{k[3:]: v for k, v in given.items() if k.startswith("es.")}
    )
    return dataclasses.replace(
        config, es=es, **{k: v for k, v in given.items() if not k.startswith("es.")}
    )


def _resume_config(args: MetaTrain):
    """The resumed run's own configuration, with ``--generations`` if given.

    Options that would change the run are refused, each named: those that pick
    its tasks or optimizer, and ES or run settings that differ from its own."""
    from lopt.meta.loop import read_config
    from lopt.serialise import changes

    config = read_config(args.resume)
    # How this run is launched and watched may change; what it computes may not.
    launch = {"log", "coordinator", "num_processes", "process_id", "distributed"}
    allowed = {"resume", "progress", "generations", "heartbeat_timeout", *launch}
    allowed |= set(ES_OPTIONS)
    fixed = [
        f"the preset {args.name}" if f.name == "name" else flag(f.name)
        for f in dataclasses.fields(args)
        if f.name not in allowed and getattr(args, f.name) != f.default
    ]
    if fixed:
        _fail(
            f"--resume continues {args.resume} with the settings it was started "
            f"with; leave out {', '.join(fixed)} (or start a new run with --out)"
        )
    resumed = _with_es_options(config, args)
    options = {setting: option for option, setting in ES_OPTIONS.items()}
    different = [
        f"{flag(options.get(path, path))} {new} (the run has {old})"
        for path, old, new in changes(config, resumed)
        if path != "es.num_generations"
    ]
    if different:
        _fail(
            f"--resume continues {args.resume} with the settings it was started "
            f"with; these differ: {', '.join(different)}. Leave them out (only "
            "--generations may change), or start a new run with --out"
        )
    return resumed


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
    from lopt.configs.tuned import check_tuned, read_tuned, same_budget

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
        if not same_budget(tuned, task.config):
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
    from lopt import distributed

    # First: joining must come before any JAX computation, and importing evosax
    # (lopt.meta) computes.
    processes = _join_processes(args)

    from tqdm.auto import tqdm

    from lopt.analysis.plots import plot_meta_training
    from lopt.meta.loop import (
        MetaTrainingDivergedError,
        generations_done,
        meta_train,
        read_metrics,
        total_generations,
    )
    from lopt.runs.records import versions
    from lopt.runs.tracking import check_kinds, scalars
    from lopt.serialise import to_dict

    try:
        check_kinds(args.log)
    except ValueError as err:
        _fail(str(err))

    config, out = _shared_meta_setup(args) if processes else _meta_setup(args)
    writer = distributed.is_writer()
    if processes:
        print(
            f"lopt meta-train: {processes.describe()}; process 0 writes {out}; if "
            f"a process dies, the others stop within {args.heartbeat_timeout} s "
            "(then resume with --resume)"
        )
    if not writer:
        args = dataclasses.replace(args, progress=False)

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
    start = generations_done(out, config) if args.resume and writer else 0
    trackers = _open_trackers(
        args.log if writer else (),
        out,
        out.name,
        {"command": command, **to_dict(config)},
    )
    if es.probes > 1:
        print(
            f"{es.probes} probes (ES seeds {', '.join(map(str, config.probe_seeds))}) "
            f"run {es.probe_generations} generation"
            f"{'s' if es.probe_generations > 1 else ''} each; the best on the held-out "
            + (
                "seeds is the result"
                if es.probe_generations == es.num_generations
                else "seeds continues"
            )
        )
    bar = tqdm(
        total=total_generations(config),
        initial=start,
        desc="meta-training",
        unit="gen",
        disable=not args.progress,
    )

    def on_generation(record: dict) -> None:
        postfix = {}
        if "fitness" in record:
            bar.update(1)
            combined = record["fitness"]["combined"]
            for name, key in (("fitness", "mean"), ("best", "max")):
                value = combined[key]  # None: no member's fitness was finite
                postfix[name] = "nan" if value is None else f"{value:.3g}"
        if "heldout" in record:
            means = [v["mean"] for v in record["heldout"].values()]
            postfix["held-out"] = "/".join(f"{m:.3g}" for m in means)
        if "probe_seed" in record:
            postfix["probe"] = record["probe_seed"]
        bar.set_postfix(postfix)
        # Trackers follow the run's own generations (a probe's restart from 0
        # would step back).
        if "probe_seed" not in record:
            trackers.log(scalars(record), record["generation"], "generation")

    stopping = "stopping at the end of this generation, with a checkpoint there"
    try:
        with _stoppable(stopping) as stop:
            summary = meta_train(
                config,
                out,
                resume=args.resume is not None,
                command=command,
                versions=versions(),
                on_generation=on_generation,
                stop=stop,
                notify=_warn,
            )
    except MetaTrainingDivergedError as err:
        bar.close()
        plot_meta_training(read_metrics(out), out)
        trackers.close()
        _warn(str(err))
        raise SystemExit(EXIT_DIVERGED) from None
    except ValueError as err:  # a population that does not split, a bad checkpoint
        bar.close()
        _fail(str(err))
    except distributed.CollectiveError as err:
        bar.close()
        distributed.abort(
            f"lopt: error: {err}\nlopt: the run stops; resume it from its newest "
            f"checkpoint with: lopt meta-train --resume {out} (any number of "
            "processes)"
        )
    bar.close()
    if not writer:
        return summary
    plot_meta_training(read_metrics(out), out)
    trackers.figures([out / "fitness.png", out / "heldout.png"])
    trackers.close()
    if summary.get("interrupted"):
        where = summary["checkpoint"] or "none yet (it starts again from generation 0)"
        probe = summary.get("probe_seed")
        of = (
            f"{es.num_generations}"
            if probe is None
            else f"probe {probe}'s {es.probe_generations}"
        )
        stop.exit(
            f"{summary['generation']} of {of} generations done; "
            f"checkpoint: {where}. Resume with: lopt meta-train --resume {out}"
        )
    rows = []
    for env, result in summary["heldout"].items():
        initial = (summary["initial_heldout"] or {}).get(env, {})
        rows.append(
            {
                "env": env,
                "start mean": _number(initial.get("mean", float("nan"))),
                "final mean": _number(result["mean"]),
                "final iqm": _number(result["iqm"]),
            }
        )
    probes = summary.get("probes")
    if probes:
        scores = ", ".join(
            f"{seed} {score:.3g}" for seed, score in probes["heldout_score"].items()
        )
        print(
            f"probes' held-out score after {probes['generations']} generations: "
            f"{scores}; continued: {probes['chosen_seed']}"
        )
    print(f"held-out return ({config.num_eval_seeds} seeds):")
    _print_table(rows, ["env", "start mean", "final mean", "final iqm"])
    print(
        f"{summary['wall_time_s']:.0f} s; optimizer: {summary['optimizer']} "
        f"(use it with lopt train --optimizer learned:{summary['optimizer']})"
    )
    _compare_with_tuned(args, config, summary, out, command)
    return summary


def _compare_with_tuned(args: MetaTrain, config, summary: dict, out: Path, command):
    """``lopt eval`` of the new optimizer against each task's tuned baseline (the
    run's copy of its ``--tuned`` file, or one shipped for the task's preset and
    budget) on the held-out seeds; prints IQM with 95% intervals and
    P(learned > tuned).

    The reports go to ``out/comparison/<env>`` (``<env>-gen<N>`` when a resumed
    run went on past an earlier end, whose comparison stays); tasks without a tuned
    baseline, or changed from their preset in ways ``lopt eval`` cannot repeat, are
    skipped."""
    from lopt.configs.presets import preset_for
    from lopt.configs.tuned import builtin_tuned, read_tuned
    from lopt.runs.evaluation import slug

    given = {read_tuned(p).env: p for p in (out / TUNED_DIR).glob("*.json")}
    for task in config.tasks:
        inner, variant = task.config, task.preset or "default"
        path = given.get(inner.env) or builtin_tuned(inner, variant)
        if path is None:
            continue
        preset = preset_for(inner.env, variant, task.algo).config
        same = dataclasses.replace(
            preset, total_timesteps=inner.total_timesteps, diagnostics=False
        ) == dataclasses.replace(inner, diagnostics=False)
        if not same:
            print(f"(no comparison on {inner.env}: its settings are not the preset's)")
            continue
        where = out / "comparison" / slug(inner.env)
        generation = summary["generations"]
        if _compared_at(where) not in (None, generation):
            where = where.with_name(f"{where.name}-gen{generation}")
        if _compared_at(where) == generation:
            print(f"(this optimizer's comparison on {inner.env} is in {where})")
            continue
        spec = f"tuned:{path}"
        seeds = (
            "held-out seeds"
            if config.es.probes == 1
            else "seeds after the held-out ones (the choice among probes used those)"
        )
        print(
            f"\nthe learned optimizer against {spec} on the {config.num_eval_seeds} "
            f"{seeds} ({config.comparison_seed_base} and up; tuning used others):"
        )
        result = run_eval(
            Eval(
                env=inner.env,
                algo=task.algo,
                optimizers=f"learned:{summary['optimizer']},{spec}",
                seeds=config.num_eval_seeds,
                seed=config.comparison_seed_base,
                preset=variant,
                total_timesteps=inner.total_timesteps,
                reference=spec,
                out=where,
                progress=args.progress,
            ),
            command,
        )
        write_json(where / "generation.json", {"generation": generation})
        env = next(iter(result["per_env"]))
        learned, tuned = result["per_env"][env]
        iqm = {k: result["per_env"][env][k]["iqm"] for k in (learned, tuned)}
        better = result["improvement"]["per_env"][env][learned]
        print(
            f"{env}: IQM learned {_interval(iqm[learned])}, {tuned} "
            f"{_interval(iqm[tuned])}; P(learned > {tuned}) {_interval(better)}"
            + (
                " (a win: its interval is above 0.5)"
                if better["low"] > 0.5
                else " (within noise: the interval reaches 0.5)"
                if better["high"] >= 0.5
                else " (a loss)"
            )
        )


def _compared_at(where: Path) -> int | None:
    """The generation whose optimizer ``where`` compared: None when nothing is
    there, -1 for a comparison that did not record it."""
    if not where.exists():
        return None
    marker = where / "generation.json"
    return json.loads(marker.read_text())["generation"] if marker.exists() else -1


def _interval(e: dict) -> str:
    return f"{e['point']:.3g} [{e['low']:.3g}, {e['high']:.3g}]"


@dataclasses.dataclass
class Eval:
    """Compare optimizers over seeds and environments: statistics, plots, report."""

    env: str = "cartpole"
    """environment(s), comma-separated, e.g. breakout,asterix"""
    algo: str = "ppo"
    """inner-loop algorithm: ppo, dqn, iqn, pqn, rainbow, sac or td3"""
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
    log: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """experiment tracking, repeatable: --log wandb, --log tensorboard"""


def run_eval(args: Eval, command: list[str]) -> dict:
    from lopt.analysis.report import analyse, notes, tables
    from lopt.runs.evaluation import parse_sweep, resolve_reference, run_evaluation
    from lopt.runs.records import versions
    from lopt.runs.rundir import prepare_run_dir
    from lopt.runs.tracking import check_kinds

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
        check_kinds(args.log)
        prepare_run_dir(out, args.overwrite)
        trackers = _open_trackers(args.log, out, out.name, {"command": command})
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
            on_metrics=lambda env, name, done, metrics: _log_updates(
                trackers, metrics, seeds, done, f"{env}/{name}/"
            ),
            on_warning=_warn,
            command=command,
        )
    except ValueError as err:
        _fail(str(err))
    finally:
        for bar in bars:
            bar.close()
    reference = resolve_reference(
        args.reference, specs, [c.optimizer for c in curves[: len(specs)]]
    )
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
    trackers.figures(sorted((out / "figures").glob("*.png")))
    trackers.close()
    print(f"\nreport: {out / 'report.html'} (and report.md, summary.json, figures/)")
    runs = [r for pairs in summary["diverged"].values() for r in pairs.values()]
    diverged = sum(len(r["seeds"]) for r in runs)
    if diverged:
        _warn(f"{diverged} of {len(curves) * len(seeds)} runs diverged (see above)")
    if diverged == len(curves) * len(seeds):
        _warn("every run diverged")
        raise SystemExit(EXIT_DIVERGED)
    return summary


@dataclasses.dataclass
class Tune:
    """Grid-search a hand-crafted optimizer (all settings and seeds vmapped)."""

    env: str = "cartpole"
    """environment name or alias, as lopt train takes it"""
    algo: str = "ppo"
    """inner-loop algorithm: ppo, dqn, iqn, pqn, rainbow, sac or td3"""
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
    log: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """experiment tracking, repeatable: --log wandb, --log tensorboard"""


def run_tune(args: Tune, command: list[str]) -> dict:
    import numpy as np

    from lopt.analysis.plots import plot_tuning
    from lopt.runs.rundir import prepare_run_dir
    from lopt.runs.tracking import check_kinds
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
        check_kinds(args.log)
        prepare_run_dir(out, args.overwrite)
    except ValueError as err:
        _fail(str(err))

    config = plan.config
    print(
        f"lopt tune: {grid.optimizer} on {plan.env}, {len(plan.settings)} settings x "
        f"{len(plan.seeds)} seeds x {config.num_frames:,} "
        f"steps, {plan.num_calls} vmapped call(s) -> {out}"
    )
    start = time.perf_counter()
    with _progress_bar(plan.total_updates, "tuning", args.progress) as bar:
        metrics = run_tuning(plan, on_progress=bar.update)
    wall = time.perf_counter() - start
    summary = write_tuning(out, plan, metrics, wall, command)
    returns = metrics["return"]
    trackers = _open_trackers(args.log, out, out.name, {"command": command})
    for i, setting in enumerate(plan.settings):
        label = f"setting_{i}/"
        trackers.config({label: setting})
        _log_updates(
            trackers, {"return": returns[i]}, plan.seeds, returns.shape[-1], label
        )

    # One line per setting of the other axes, final return against learning rate.
    lrs = grid.values["learning_rate"]
    final = metrics["return"][:, :, -1]
    lines: dict[str, list] = {}
    for i, setting in enumerate(plan.settings):
        lines.setdefault(setting_label(setting, grid.axes), []).append(final[i])
    best = summary["best"]
    plot_tuning(
        lrs,
        {k: np.stack(v) for k, v in lines.items()},
        out / "final_return_vs_lr.png",
        best=None if best is None else (best["learning_rate"], best["mean"]),
        title=f"{plan.env}: {grid.optimizer}, {len(plan.seeds)} seeds per point",
    )
    trackers.figures([out / "final_return_vs_lr.png"])
    trackers.close()
    diverged = [s for s in summary["settings"] if s["diverged"]]
    if diverged:
        _warn(
            f"{len(diverged)} of {len(plan.settings)} settings diverged on some seed "
            "(non-finite parameters, losses, updates or return; never chosen): "
            + "; ".join(
                f"lr {s['learning_rate']:g} {setting_label(s, grid.axes)}"
                for s in diverged
            )
        )
    if best is None:
        _warn(
            f"every setting diverged; no tuned.json written (results in {out}); try "
            "smaller --lrs"
        )
        raise SystemExit(EXIT_DIVERGED)
    ranked = sorted(
        (s for s in summary["settings"] if not s["diverged"]),
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
    print(
        f"best: lr {best['learning_rate']:g} {setting_label(best, grid.axes)}, mean "
        f"final return {best['mean']:.2f}; {wall:.0f} s; results in {out}\n"
        f"use it: lopt train --algo {args.algo} --env {args.env} --preset "
        f"{args.preset} "
        f"--tuned {out / 'tuned.json'}"
    )
    return summary


@dataclasses.dataclass
class Info:
    """Print an optimizer file's card: what it was meta-trained on."""

    path: tyro.conf.Positional[Path]
    """an optimizer file (.npy) lopt wrote, or one of the paper's released ones"""


def run_info(args: Info, command: list[str]) -> str:
    from lopt.optim.card import format_card

    try:
        text = format_card(args.path)
    except (ValueError, OSError) as err:
        _fail(str(err))
    print(text)
    return text


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
        prepare_run_dir(out, args.overwrite, resume=args.resume)
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
    "info": (Info, run_info),
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
    run = next(run for cls, run in COMMANDS.values() if isinstance(args, cls))
    try:
        check_options(args)
        run(args, command)
    except KeyboardInterrupt:
        print("\nlopt: interrupted", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    except (ValueError, OSError) as err:
        # Every lopt input error is a ValueError; OSErrors are the file system's.
        # LOPT_TRACEBACK=1 shows where one came from.
        if os.environ.get("LOPT_TRACEBACK"):
            raise
        _fail(_describe(err))
    finally:
        release_run_dir()


def _describe(err: Exception) -> str:
    """One line for an error: an OSError with the file it concerns."""
    if isinstance(err, OSError) and err.strerror:
        where = err.filename if err.filename is not None else ""
        return f"{where}: {err.strerror}" if where else err.strerror
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    main()
