"""overhead: the paper's inference-time comparison (OPEN §4.5, §8.2 cost):
OPEN's cost against Adam, VeLO and Optim4RL, as the optimizer step alone on
Breakout-MinAtar's agent and as whole PPO training runs; the paper: OPEN is
about 1.5-2x slower than Adam, much faster than VeLO and comparable to other
learned optimizers.

Optimizers: Adam (Breakout's tuned values), the released Breakout OPEN, Optim4RL
(all-zero meta-parameters: its cost does not depend on their values) and VeLO
with random weights of the released shapes (``lopt.optim.velo.velo_random``:
its cost does not depend on the weights either, so no download is needed).
Each measurement runs the optimizers alternately, after a compilation call
each, and takes the median over repeats; ratios get 95% bootstrap intervals
over the repeats. ``benchmarks/overhead.py`` measures OPEN against Adam in more
detail. Timings on a machine shared with other jobs are noisy: each repeat runs
every optimizer back to back, so the ratios hold up better than the times.

Scales:

- ``paper``: steps scanned in calls of 200, 20 repeats; runs of 1e7 frames (the
  Breakout horizon), 3 repeats. Meant for the paper's GPUs.
- ``cpu``: calls of 50 steps, 7 repeats; runs of 2.5e5 frames, 3 repeats. About
  10 minutes on 2 idle CPU cores (README, Studies).
- ``smoke``: two of everything on a tiny agent: seconds.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from lopt.analysis.stats import bootstrap_interval
from lopt.studies import claims as c
from lopt.studies import common

NAME = "overhead"
ORDER = ("Adam", "OPEN", "Optim4RL", "VeLO")
#: scale -> (steps per call, repeats) for the step alone
STEP = {"smoke": (2, 2), "cpu": (50, 7), "paper": (200, 20)}
#: scale -> (frames per run, repeats) for whole runs
RUNS = {"smoke": (64, 2), "cpu": (250_000, 3), "paper": (10_000_000, 3)}
SMOKE = {"num_envs": 4, "num_steps": 8, "update_epochs": 1, "num_minibatches": 2}


def _config(scale: str, frames: int):
    from lopt.configs.presets import preset_for

    config = preset_for("breakout").config
    if scale == "smoke":
        config = dataclasses.replace(config, **SMOKE)
    return dataclasses.replace(config, total_timesteps=frames)


def _optimizers(breakout: Path) -> dict:
    """The four optimizers, by label."""
    import jax

    from lopt.configs.presets import preset_for
    from lopt.optim.files import load_open
    from lopt.optim.handcrafted import adam
    from lopt.optim.learned import learned_family, zeros_meta_params
    from lopt.optim.optim4rl import Optim4RLConfig
    from lopt.optim.velo import velo_family, velo_random

    meta, config = load_open(breakout)
    return {
        "Adam": adam(**preset_for("breakout").optimizer_defaults("adam")),
        "OPEN": learned_family(meta, config),
        "Optim4RL": learned_family(
            zeros_meta_params(Optim4RLConfig()), Optim4RLConfig()
        ),
        "VeLO": velo_family(velo_random(jax.random.key(0))),
    }


def time_steps(scale: str, breakout: Path) -> dict:
    """The optimizer step alone on the Breakout agent's parameters: seconds per
    step per repeat, for each optimizer."""
    import jax
    import jax.numpy as jnp
    import optax

    from lopt.optim.dormancy import uniform_dormancy
    from lopt.rl.registry import make_algorithm

    steps, repeats = STEP[scale]
    config = _config(scale, RUNS[scale][0])
    optimizers = _optimizers(breakout)
    state = make_algorithm(config, optimizers["Adam"]).init(
        jax.random.key(0), optimizers["Adam"].params
    )
    params = state.params
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    grads = jax.tree.unflatten(
        jax.tree.structure(params),
        [
            1e-2 * jax.random.normal(k, x.shape)
            for k, x in zip(keys, leaves, strict=True)
        ],
    )
    dormancy = uniform_dormancy(params)

    def runner(optimizer):
        tx = optimizer.build(optimizer.params, steps)

        def scan(opt_state, params, key):
            def step(carry, i):
                opt_state, params = carry
                updates, opt_state = tx.update(
                    grads,
                    opt_state,
                    params,
                    key=jax.random.fold_in(key, i),
                    training_prop=i / steps,
                    batch_prop=jnp.float32(0.5),
                    dormancy=dormancy,
                    loss=jnp.float32(1.0),
                )
                return (opt_state, optax.apply_updates(params, updates)), None

            (opt_state, params), _ = jax.lax.scan(
                step, (opt_state, params), jnp.arange(steps)
            )
            return opt_state, params

        return jax.jit(scan), tx.init(params)

    compiled = {}
    for name, optimizer in optimizers.items():
        fn, opt_state = runner(optimizer)
        jax.block_until_ready(fn(opt_state, params, jax.random.key(0)))
        compiled[name] = (fn, opt_state)
    times = {name: [] for name in optimizers}
    for repeat in range(repeats):
        for name, (fn, opt_state) in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(opt_state, params, jax.random.key(repeat)))
            times[name].append((time.perf_counter() - start) / steps)
    return {
        "seconds_per_step": times,
        "steps_per_call": steps,
        "num_params": int(sum(x.size for x in leaves)),
        "devices": [str(d) for d in jax.devices()],
    }


def time_runs(scale: str, breakout: Path) -> dict:
    """Whole PPO runs on Breakout: seconds per run per repeat, per optimizer."""
    import jax

    from lopt.rl.registry import make_algorithm

    frames, repeats = RUNS[scale]
    config = _config(scale, frames)
    optimizers = _optimizers(breakout)
    compiled = {}
    for name, optimizer in optimizers.items():
        fn = jax.jit(make_algorithm(config, optimizer).train)
        jax.block_until_ready(fn(jax.random.key(0), optimizer.params))
        compiled[name] = (fn, optimizer.params)
    times = {name: [] for name in optimizers}
    for repeat in range(repeats):
        for name, (fn, opt_params) in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(jax.random.key(repeat + 1), opt_params))
            times[name].append(time.perf_counter() - start)
    return {
        "seconds_per_run": times,
        "frames": config.num_frames,
        "devices": [str(d) for d in jax.devices()],
    }


def plan(options: common.Options) -> common.Plan:
    options.pick(("breakout",))
    scale = options.scale
    breakout = options.released("breakout")
    plan = common.Plan(NAME, options, [], [])
    steps, repeats = STEP[scale]
    frames, run_repeats = RUNS[scale]
    config = _config(scale, frames)
    plan.jobs += [
        common.CustomJob(
            "step",
            f"the optimizer step alone on Breakout's agent ({', '.join(ORDER)}): "
            f"{repeats} repeats of {steps} scanned steps",
            lambda directory: time_steps(scale, breakout),
        ),
        common.CustomJob(
            "runs",
            f"PPO on Breakout, {config.num_frames:,} frames, 1 seed "
            f"({', '.join(ORDER)}): {run_repeats} repeats",
            lambda directory: time_runs(scale, breakout),
            env_frames=config.num_frames * run_repeats * len(ORDER),
        ),
    ]
    plan.notes.append(
        "VeLO runs with random weights of the released shapes and Optim4RL with "
        "all-zero meta-parameters: their cost does not depend on the values."
    )
    return plan


def _ratio(times: dict, x: str, y: str, options: common.Options) -> dict:
    a = np.asarray(times[x], np.float64)[:, None]
    b = np.asarray(times[y], np.float64)[:, None]
    return bootstrap_interval(
        lambda u, v: np.median(u) / np.median(v),
        a,
        b,
        reps=options.reps,
        seed=options.seed,
    )


def claims(plan: common.Plan, results: common.Results) -> list[c.Claim]:
    runs = results.custom["runs"]["seconds_per_run"]
    options = plan.options
    open_adam = _ratio(runs, "OPEN", "Adam", options)
    velo_open = _ratio(runs, "VeLO", "OPEN", options)
    open_o4rl = _ratio(runs, "OPEN", "Optim4RL", options)
    where = f"PPO runs of {results.custom['runs']['frames']:,} frames"
    return [
        c.Claim(
            "OPEN is about 1.5-2x slower than Adam",
            "§4.5, §8.2 cost",
            c.within(open_adam, 1.5, 2.0),
            "within",
            {"OPEN / Adam (run time)": open_adam},
            where,
        ),
        c.Claim(
            "VeLO is much slower than OPEN (2x or more)",
            "§4.5, §8.2 cost",
            c.above(velo_open, 2.0),
            "above",
            {"VeLO / OPEN (run time)": velo_open},
            where,
        ),
        c.Claim(
            "OPEN's cost is comparable to Optim4RL's (within 2x)",
            "§4.5, §8.2 cost",
            c.within(open_o4rl, 0.5, 2.0),
            "within",
            {"OPEN / Optim4RL (run time)": open_o4rl},
            where,
        ),
    ]


def tables(plan: common.Plan, results: common.Results) -> list:
    """Time per step and per run, with ratios to Adam."""
    out = []
    step = results.custom["step"]
    runs = results.custom["runs"]
    for title, times, unit, scale in (
        (
            f"the optimizer step alone ({step['num_params']:,} parameters)",
            step["seconds_per_step"],
            "µs per step",
            1e6,
        ),
        (
            f"PPO runs of {runs['frames']:,} frames",
            runs["seconds_per_run"],
            "s per run",
            1.0,
        ),
    ):
        rows = []
        for name in ORDER:
            t = np.asarray(times[name]) * scale
            rows.append(
                [
                    name,
                    f"{np.median(t):.4g} [{t.min():.4g}, {t.max():.4g}]",
                    c.format_estimate(_ratio(times, name, "Adam", plan.options)),
                ]
            )
        header = ["optimizer", f"median {unit} [min, max]", "ratio to Adam [95% CI]"]
        out.append((title, header, rows))
    return out
