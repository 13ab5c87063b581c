"""Environment steps per second of PPO with Adam, per environment, side by side.

One process. For each environment, its ``small`` preset (``default`` where it has
none) trains 1 seed for ``--total-timesteps`` frames through ``lopt train``'s
executor, which reports after each chunk of updates. The first chunk includes
compilation; the rate is measured from its end to the last chunk's, over the
whole training loop (acting, stepping, learning). Prints ``steps_per_second_<env>=X``
lines last. Atari (ALE on the host) is timed the same way through its host loop.

    python benchmarks/env_throughput.py [--envs breakout,gridworld,ant,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from lopt.configs.presets import UnknownPresetError, preset_for
from lopt.optim.handcrafted import adam
from lopt.rl.executor import Executor, chunk_size, seed_keys

DEFAULT_ENVS = (
    "cartpole,breakout,deepsea-16,gridworld/rand_all,gridworld/labyrinth,"
    "ant,halfcheetah,craftax-classic,atari/breakout"
)


def _preset(env: str):
    try:
        return preset_for(env, "small")
    except UnknownPresetError:
        return preset_for(env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=DEFAULT_ENVS)
    parser.add_argument("--total-timesteps", type=int, default=100_000)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, 1 seed")
    results = {}
    for env in args.envs.split(","):
        preset = _preset(env)
        config = dataclasses.replace(
            preset.config, total_timesteps=args.total_timesteps
        )
        optimizer = adam(**preset.optimizer_defaults("adam"))
        frames = config.num_updates * config.frames_per_update
        reports = []  # (updates done, time)
        start = time.perf_counter()
        Executor(config, optimizer, chunk=chunk_size(config.num_updates))(
            seed_keys([0]),
            on_progress=lambda n: reports.append((n, time.perf_counter())),
        )
        (n0, t0), (n1, t1) = reports[0], reports[-1]
        if n1 == n0:
            print(f"{config.env}: one chunk only; raise --total-timesteps")
            continue
        results[env] = (n1 - n0) * config.frames_per_update / (t1 - t0)
        print(
            f"{config.env:24s} {config.num_envs:5d} envs  {frames:9,d} frames  "
            f"first chunk (compiling) {t0 - start:6.1f} s  "
            f"{results[env]:9,.0f} env steps/s after it"
        )
    for env, rate in results.items():
        print(f"steps_per_second_{env.replace('/', '_')}={rate:.0f}")


if __name__ == "__main__":
    main()
