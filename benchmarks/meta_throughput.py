"""Throughput of meta-training: a population against single Adam runs, 2 devices
against 1, 2 processes against 1.

One process (plus subprocesses for the device and process counts, since the number
of host devices is fixed when JAX starts). On the task of the ``cpu`` meta-training
preset:

1. environment steps per second of one ES generation (every member trains a full
   inner run with OPEN, all vmapped in one jitted call) at population 8 and 16,
   against population-many single PPO runs with Adam, one after another;
2. one generation at population 8 on 2 host devices
   (``XLA_FLAGS=--xla_force_host_platform_device_count=2``) against 1 device;
3. one generation at population 8 on 2 processes with 1 CPU device each, joined
   by lopt.distributed on 127.0.0.1 (gloo), against 1 process with 1 device.

Ratios are printed last: ``population_over_adam_<N>=X`` (goal >= 0.75),
``two_devices_over_one=X`` and ``two_processes_over_one=X`` (speed-ups).

OPEN's step is the default one (``lopt.optim.fused``: the fused CPU kernel where it
is built, on every device: the executor runs each device's members in
``jax.shard_map``); ``--open-step reference`` or ``fused`` forces one (through
``LOPT_OPEN_STEP``, which the subprocesses inherit).

    python benchmarks/meta_throughput.py [--preset cpu] [--total-timesteps T]
        [--open-step auto|fused|reference] [--skip-devices]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

SELF = os.path.abspath(__file__)


def _config(preset: str, total_timesteps: int | None, population: int):
    from lopt.configs.presets import META_PRESETS

    config = META_PRESETS[preset]
    task = config.tasks[0]
    if total_timesteps:
        task = dataclasses.replace(
            task,
            config=dataclasses.replace(task.config, total_timesteps=total_timesteps),
        )
    es = dataclasses.replace(config.es, population_size=population, num_rollouts=1)
    return dataclasses.replace(config, tasks=(task,), es=es)


def generation_seconds(config) -> float:
    """Wall time of one generation after a warm-up generation (compilation)."""
    import jax

    from lopt.meta.loop import MetaTrainer

    trainer = MetaTrainer(config)
    state = trainer.init_state()
    state, _ = trainer.generation(state, 0)
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, _ = trainer.generation(state, 1)
    jax.block_until_ready(state)
    return time.perf_counter() - start


def adam_runs_seconds(config, count: int) -> float:
    """Wall time of ``count`` single runs with Adam, one after another."""
    from lopt.configs.presets import preset_for
    from lopt.optim.handcrafted import adam
    from lopt.rl.executor import Executor, seed_keys

    task = config.tasks[0]
    opt = adam(**preset_for(task.config.env, algo=task.algo).optimizer_defaults("adam"))
    executor = Executor(task.config, opt, keep_state=False)
    executor(seed_keys([0]))  # compiles
    start = time.perf_counter()
    for i in range(count):
        executor(seed_keys([i + 1]))
    return time.perf_counter() - start


def worker(args) -> None:
    import jax

    if args.coordinator:  # before lopt.meta: importing evosax computes
        from lopt import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    config = _config(args.preset, args.total_timesteps, args.population)
    seconds = generation_seconds(config)
    if jax.process_index() == 0:
        print(json.dumps({"devices": len(jax.devices()), "seconds": seconds}))


def run_workers(args, devices: int, processes: int = 1) -> dict:
    """One generation's result from ``processes`` worker processes with
    ``devices`` host devices each (process 0's report)."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    command = [
        sys.executable,
        SELF,
        "--worker",
        "--preset",
        args.preset,
        "--population",
        str(args.population),
    ]
    if args.total_timesteps:
        command += ["--total-timesteps", str(args.total_timesteps)]
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command += [
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            str(processes),
        ]
    workers = [
        subprocess.Popen(
            command + (["--process-id", str(i)] if processes > 1 else []),
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(processes)
    ]
    outs = [w.communicate()[0] for w in workers]
    if any(w.returncode for w in workers):
        raise RuntimeError(f"a worker failed: {command}")
    return json.loads(outs[0].strip().splitlines()[-1])


def main() -> None:
    # Runs take minutes: a log file gets each line as it is printed.
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--total-timesteps", type=int, default=None)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument(
        "--open-step", choices=("auto", "fused", "reference"), default=None
    )
    parser.add_argument(
        "--skip-devices", action="store_true", help="skip the 2-device comparison"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.open_step:
        os.environ["LOPT_OPEN_STEP"] = args.open_step
    if args.worker:
        worker(args)
        return

    import jax

    ratios = {}
    for population in (8, 16):
        config = _config(args.preset, args.total_timesteps, population)
        inner = config.tasks[0].config
        frames = population * inner.num_updates * inner.frames_per_update
        gen = generation_seconds(config)
        adam = adam_runs_seconds(config, population)
        print(
            f"{inner.env}, {inner.num_updates * inner.frames_per_update:,} frames "
            "per run, "
            f"population {population}: one generation {gen:6.1f} s "
            f"({frames / gen:9,.0f} env steps/s); {population} single Adam runs "
            f"{adam:6.1f} s ({frames / adam:9,.0f} env steps/s)"
        )
        ratios[f"population_over_adam_{population}"] = adam / gen

    times = {}
    for devices, processes in () if args.skip_devices else ((1, 1), (2, 1), (1, 2)):
        result = run_workers(args, devices, processes)
        times[devices, processes] = result["seconds"]
        print(
            f"population {args.population} on {processes} process(es) x {devices} "
            f"host device(s): one generation {result['seconds']:6.1f} s"
        )
    if times:
        ratios["two_devices_over_one"] = times[1, 1] / times[2, 1]
        ratios["two_processes_over_one"] = times[1, 1] / times[1, 2]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    step = os.environ.get("LOPT_OPEN_STEP", "auto")
    print(f"jax {jax.__version__}, {os.cpu_count()} CPU cores, OPEN step {step}")
    print(f"load: {load}")
    for name, value in ratios.items():
        print(f"{name}={value:.3f}")


if __name__ == "__main__":
    main()
