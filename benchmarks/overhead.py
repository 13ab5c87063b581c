"""OPEN's cost against Adam inside PPO on Breakout-MinAtar, measured side by side.

One process. Both optimizers train the breakout preset (1 seed, 5e5 frames by
default); after a warm-up call each (compilation), they run alternately, three
times each, and the script prints wall time, environment steps per second and
memory, then, last, ``ratio_open_over_adam=X`` (median wall time of OPEN over that
of Adam).

    python benchmarks/overhead.py [--total-timesteps 500000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time
from pathlib import Path

import jax

from lopt.configs.presets import preset_for
from lopt.optim.files import load_open
from lopt.optim.handcrafted import adam
from lopt.optim.learned import learned_family
from lopt.rl.ppo import make_ppo

RELEASED = Path(__file__).resolve().parents[2] / "shared/pretrained/breakout_OPEN.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-timesteps", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optimizer-file", type=Path, default=RELEASED)
    args = parser.parse_args()

    preset = preset_for("breakout")
    config = dataclasses.replace(preset.config, total_timesteps=args.total_timesteps)
    meta, open_config = load_open(args.optimizer_file)
    optimizers = {
        "adam": adam(**preset.optimizer_defaults("adam")),
        "open": learned_family(meta, open_config),
    }
    frames = config.num_updates * config.frames_per_update
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}, "
        f"{config.env}, {frames:,} frames, 1 seed, {args.repeats} repeats"
    )

    compiled, times = {}, {name: [] for name in optimizers}
    for name, opt in optimizers.items():
        fn = jax.jit(make_ppo(config, opt).train)
        start = time.perf_counter()
        lowered = fn.lower(jax.random.key(0), opt.params)
        compiled[name] = lowered.compile()
        jax.block_until_ready(compiled[name](jax.random.key(0), opt.params))
        memory = compiled[name].memory_analysis()
        temp_mib = getattr(memory, "temp_size_in_bytes", 0) / 2**20
        print(
            f"{name:>5}: warm-up (compile + run) {time.perf_counter() - start:6.1f} s,"
            f" XLA temporary buffers {temp_mib:7.1f} MiB"
        )

    for repeat in range(args.repeats):
        for name, opt in optimizers.items():
            key = jax.random.key(repeat + 1)
            start = time.perf_counter()
            _, metrics = compiled[name](key, opt.params)
            jax.block_until_ready(metrics)
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            print(
                f"{name:>5} repeat {repeat}: {elapsed:6.2f} s, "
                f"{frames / elapsed:9,.0f} env steps/s, "
                f"final return {float(metrics['return'][-1]):6.2f}"
            )

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the process: {peak_mib:,.0f} MiB")
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in median.items():
        print(f"{name:>5}: median {t:6.2f} s, {frames / t:9,.0f} env steps/s")
    print(f"ratio_open_over_adam={median['open'] / median['adam']:.3f}")


if __name__ == "__main__":
    main()
