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


def _fail(message: str) -> None:
    print(f"lopt: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _default_out(kind: str, *parts: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "-".join(p.replace("/", "_").replace(":", "_") for p in parts)
    return Path("runs") / kind / f"{name}-{stamp}"


@dataclasses.dataclass
class Train:
    """Train PPO agents with one optimizer over several seeds."""

    env: str = "cartpole"
    """environment name or alias: cartpole, breakout, asterix, freeway, spaceinvaders"""
    optimizer: str = "adam"
    """adam, rmsprop, lion, sgd, or open:PATH (a learned optimizer's .npy file)"""
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


def run_train(args: Train) -> dict:
    from lopt.analysis.plots import plot_learning_curves
    from lopt.configs.presets import preset_for
    from lopt.envs.registry import UnknownEnvironmentError
    from lopt.optim.files import OptimizerFileError
    from lopt.optim.spec import OptimizerSpecError, from_spec
    from lopt.rl.runner import train_seeds
    from lopt.runs.records import env_steps, write_train_run
    from lopt.runs.rundir import RunDirectoryError, prepare_run_dir

    if args.seeds < 1:
        _fail("--seeds must be at least 1")
    try:
        preset = preset_for(args.env)
        optimizer = from_spec(args.optimizer, preset.optimizers, learning_rate=args.lr)
        config = preset.ppo
        if args.total_timesteps is not None:
            config = dataclasses.replace(config, total_timesteps=args.total_timesteps)
        out = args.out or _default_out("train", args.env, optimizer.name)
        prepare_run_dir(out, args.overwrite)
    except (
        UnknownEnvironmentError,
        OptimizerSpecError,
        OptimizerFileError,
        RunDirectoryError,
        ValueError,
    ) as err:
        _fail(str(err))
    except KeyError as err:
        _fail(str(err.args[0]))

    seeds = list(range(args.seed, args.seed + args.seeds))
    print(
        f"lopt train: {config.env} with {optimizer.name}, {len(seeds)} seeds x "
        f"{config.num_updates * config.frames_per_update:,} steps -> {out}"
    )
    start = time.perf_counter()
    with _progress_bar(config.num_updates, "training", args.progress) as bar:
        metrics, _ = train_seeds(
            config, optimizer, seeds, on_progress=lambda n: bar.update(n - bar.n)
        )
    wall = time.perf_counter() - start
    summary = write_train_run(out, config, optimizer, seeds, metrics, wall, sys.argv)
    plot_learning_curves(
        env_steps(config),
        {optimizer.name: metrics["return"]},
        out / "learning_curve.png",
        title=f"{config.env}: PPO with {optimizer.name}",
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


COMMANDS = {"train": (Train, run_train)}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lopt`` command."""
    args = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in COMMANDS.items()},
        args=argv,
        description=f"lopt {__version__}: learned optimization for RL in JAX",
    )
    for cls, run in COMMANDS.values():
        if isinstance(args, cls):
            run(args)


if __name__ == "__main__":
    main()
