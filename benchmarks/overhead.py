"""OPEN's cost against Adam: the optimizer step alone, and inside PPO on Breakout.

One process, everything measured side by side: after a warm-up call each
(compilation), the candidates run alternately and the medians are compared.

1. The step alone (``--sizes``, default 60k, 1M and 10M parameters of an
   actor/critic MLP pair shaped like Breakout's agent, 400 inputs): one jitted
   ``update`` of Adam, OPEN's reference (pure-JAX) step, OPEN's fused step, and
   VeLO (random weights, for scale). Time per step, time per parameter, process
   CPU time per step (all threads), and the memory XLA allocates for one step
   (arguments + outputs + temporaries; the fused kernel's own scratch is a few
   KiB per tensor and not counted).
2. PPO on the breakout preset (``--total-timesteps``, default 5e5 frames) with
   Adam, OPEN reference and OPEN fused (the released Breakout optimizer), at 1
   seed and at 4 seeds vmapped in one jitted call.

Ratios are printed last: ``ratio_open_over_adam=X`` is the default OPEN step
(fused where built) at 1 seed, the figure the README quotes; the others name
their step and seed count. Wall-time ratios are the measure; ``cpu_`` ratios
(process CPU time, all threads) are printed too, as a check on a loaded machine.

    python benchmarks/overhead.py [--total-timesteps 500000] [--repeats 3]
        [--seeds 1,4] [--sizes 60000,1000000,10000000] [--skip-ppo] [--skip-step]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lopt.configs.presets import preset_for
from lopt.optim import fused
from lopt.optim.files import load_open
from lopt.optim.handcrafted import adam
from lopt.optim.learned import learned_family
from lopt.optim.velo import velo_optimizer, velo_random
from lopt.rl.ppo import make_ppo

RELEASED = Path(__file__).resolve().parents[2] / "shared/pretrained/breakout_OPEN.npy"
OBS = 400  # Breakout-MinAtar's flattened observation


def agent_params(num_params: int, key: jax.Array) -> dict:
    """An actor (3 actions) and a critic, each Dense(OBS, w), Dense(w, w),
    Dense(w, out), with the width w giving about ``num_params`` parameters
    (w = 64: Breakout's agent, 59,908)."""
    # 2 (w^2 + (OBS + 6) w) + 4 = num_params
    width = round((-(OBS + 6) + np.sqrt((OBS + 6) ** 2 + 2 * num_params)) / 2)
    shapes = {}
    for name, out in (("actor", 3), ("critic", 1)):
        layers = ((OBS, width), (width, width), (width, out))
        shapes[name] = {
            "params": {
                f"Dense_{i}": {"kernel": shape, "bias": (shape[1],)}
                for i, shape in enumerate(layers)
            }
        }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [0.1 * jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)],
    )


def _memory_mib(compiled) -> float:
    m = compiled.memory_analysis()
    total = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )
    return total / 2**20


def step_table(sizes: list[int], meta, open_config, repeats: int) -> dict:
    """Seconds per step and XLA memory of each optimizer's update at each size."""
    optimizers = {
        "adam": lambda: adam(**preset_for("breakout").optimizer_defaults("adam")),
        "open-reference": lambda: learned_family(
            meta, open_config, implementation="reference"
        ),
        "open-fused": lambda: learned_family(meta, open_config, implementation="fused"),
    }
    if fused.choose(None, open_config) != "fused":
        del optimizers["open-fused"]
    velo_theta = velo_random(jax.random.key(0))
    rows = {}
    print(
        f"\n{'optimizer':>15} {'params':>11} {'ms/step':>9} {'ns/param':>9} "
        f"{'CPU ms':>9} {'XLA MiB/step':>13}"
    )
    for size in sizes:
        params = agent_params(size, jax.random.key(1))
        n = sum(p.size for p in jax.tree.leaves(params))
        grads = jax.tree.map(lambda p: 0.01 * p + 1e-3, params)
        dormancy = jax.tree.map(lambda p: jnp.ones(p.shape[-1:]), params)
        extra = {
            "key": jax.random.key(2),
            "training_prop": jnp.float32(0.5),
            "batch_prop": jnp.float32(0.25),
            "dormancy": dormancy,
            "loss": jnp.float32(1.0),
        }
        txs = {
            name: make().build(make().params, 1000) for name, make in optimizers.items()
        }
        txs["velo"] = velo_optimizer(velo_theta, 1000)
        compiled, states = {}, {}
        for name, tx in txs.items():
            state = tx.init(params)

            def step(state, grads, params, tx=tx):
                return tx.update(grads, state, params, **extra)

            compiled[name] = jax.jit(step).lower(state, grads, params).compile()
            jax.block_until_ready(compiled[name](state, grads, params))
            states[name] = state
        times = {name: [] for name in txs}
        cpu_times = {name: [] for name in txs}
        for _ in range(repeats):
            for name in txs:
                start, cpu_start = time.perf_counter(), time.process_time()
                jax.block_until_ready(compiled[name](states[name], grads, params))
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
        for name in txs:
            t = statistics.median(times[name])
            cpu = statistics.median(cpu_times[name])
            rows[(name, n)] = t
            print(
                f"{name:>15} {n:>11,} {t * 1e3:9.2f} {t / n * 1e9:9.2f} "
                f"{cpu * 1e3:9.2f} {_memory_mib(compiled[name]):13.1f}"
            )
    return rows


def ppo_ratios(args, meta, open_config) -> dict:
    preset = preset_for("breakout")
    config = dataclasses.replace(preset.config, total_timesteps=args.total_timesteps)
    frames = config.num_updates * config.frames_per_update
    optimizers = {
        "adam": adam(**preset.optimizer_defaults("adam")),
        "open-reference": learned_family(meta, open_config, implementation="reference"),
        "open-fused": learned_family(meta, open_config, implementation="fused"),
    }
    if fused.choose(None, open_config) != "fused":
        del optimizers["open-fused"]
    medians = {}
    for seeds in args.seeds:
        print(f"\n{config.env}, {frames:,} frames, {seeds} seed(s) in one call")
        compiled = {}
        times = {name: [] for name in optimizers}
        cpu_times = {name: [] for name in optimizers}

        def keys(i, seeds=seeds):
            key = jax.random.key(i)
            return key if seeds == 1 else jax.random.split(key, seeds)

        for name, opt in optimizers.items():
            train = make_ppo(config, opt).train
            fn = jax.jit(train if seeds == 1 else jax.vmap(train, in_axes=(0, None)))
            start = time.perf_counter()
            compiled[name] = fn.lower(keys(0), opt.params).compile()
            jax.block_until_ready(compiled[name](keys(0), opt.params))
            temp = compiled[name].memory_analysis().temp_size_in_bytes / 2**20
            print(
                f"{name:>15}: warm-up (compile + run) "
                f"{time.perf_counter() - start:6.1f} s, XLA temporary buffers "
                f"{temp:7.1f} MiB"
            )
        for repeat in range(args.repeats):
            for name, opt in optimizers.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                _, metrics = compiled[name](keys(repeat + 1), opt.params)
                jax.block_until_ready(metrics)
                elapsed = time.perf_counter() - start
                times[name].append(elapsed)
                cpu_times[name].append(time.process_time() - cpu_start)
                final = np.asarray(metrics["return"])[..., -1]
                print(
                    f"{name:>15} repeat {repeat}: {elapsed:6.2f} s, "
                    f"{seeds * frames / elapsed:9,.0f} env steps/s, CPU "
                    f"{cpu_times[name][-1]:6.2f} s, final return "
                    f"{' '.join(f'{r:6.2f}' for r in np.atleast_1d(final))}"
                )
        for name, ts in times.items():
            medians[(name, seeds)] = statistics.median(ts)
            medians[(name, seeds, "cpu")] = statistics.median(cpu_times[name])
            print(
                f"{name:>15}: median {medians[(name, seeds)]:6.2f} s, "
                f"{seeds * frames / medians[(name, seeds)]:9,.0f} env steps/s, "
                f"CPU {medians[(name, seeds, 'cpu')]:6.2f} s"
            )
    return medians


def main() -> None:
    # Runs take minutes: a log file gets each line as it is printed.
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-timesteps", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-repeats", type=int, default=7)
    parser.add_argument("--seeds", default="1,4")
    parser.add_argument("--sizes", default="60000,1000000,10000000")
    parser.add_argument("--optimizer-file", type=Path, default=RELEASED)
    parser.add_argument("--skip-ppo", action="store_true")
    parser.add_argument("--skip-step", action="store_true")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(float(s)) for s in args.sizes.split(",")]

    meta, open_config = load_open(args.optimizer_file)
    default = fused.choose(None, open_config)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}, "
        f"{os.cpu_count()} CPU cores; default OPEN step: {default}; load: {load}"
    )
    ratios = {}
    if not args.skip_step:
        rows = step_table(sizes, meta, open_config, args.step_repeats)
        for (name, n), t in rows.items():
            if name != "adam":
                ratios[f"step_{name}_over_adam_{n}"] = t / rows[("adam", n)]
    if not args.skip_ppo:
        medians = ppo_ratios(args, meta, open_config)
        for seeds in args.seeds:
            adam_time = medians[("adam", seeds)]
            for name in ("open-reference", "open-fused"):
                if (name, seeds) not in medians:
                    continue
                key = f"ratio_{name.replace('-', '_')}_over_adam_{seeds}seed"
                ratios[key] = medians[(name, seeds)] / adam_time
                ratios[f"cpu_{key}"] = (
                    medians[(name, seeds, "cpu")] / medians[("adam", seeds, "cpu")]
                )
        if 1 in args.seeds:
            ratios["ratio_open_over_adam"] = (
                medians[(f"open-{default}", 1)] / medians[("adam", 1)]
            )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\npeak resident memory of the process: {peak_mib:,.0f} MiB; load: {load}")
    for name, value in ratios.items():
        print(f"{name}={value:.3f}")


if __name__ == "__main__":
    main()
