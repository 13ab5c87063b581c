"""Meta-training as cooperating processes (lopt.distributed) on 127.0.0.1.

Every test starts its processes itself (a free port, 1 CPU device each unless
said), waits for them with a deadline and kills what is left, so none can hang the
suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed_worker
import jax
import numpy as np
import pytest
from distributed_worker import ROW_KEY, ROWS, row_function

from lopt import distributed
from lopt.serialise import to_dict

from tiny import host_devices_flags

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "distributed_worker.py"
#: Wall-clock limit on any process of these tests (the machine may be loaded).
DEADLINE_S = 900
#: Survivors of a killed peer must stop within this (the issue's bound).
STOP_WITHIN_S = 60
#: Generations of the runs that get killed, and where a resumed one stops once
#: (a multiple of the tiny config's eval_every, so that both runs evaluate there).
GENERATIONS = 20
MIDDLE = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int = 1) -> dict:
    return {
        **os.environ,
        # Prepended: the subprocesses must import the lopt under test.
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "XLA_FLAGS": host_devices_flags(devices),
    }


def _start(command: list[str], devices: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(devices),
    )


def _processes(
    command: list[str], count: int = 2, *extra: str
) -> list[subprocess.Popen]:
    """``count`` processes of ``command`` joined on a fresh loopback port."""
    port = _free_port()
    return [
        _start([*command, f"127.0.0.1:{port}", str(count), str(i), *extra])
        for i in range(count)
    ]


def _finish(process: subprocess.Popen, timeout: float = DEADLINE_S) -> str:
    """Waits for ``process`` (killed past ``timeout``); asserts it succeeded."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{process.args} ran past {timeout} s:\n{out}\n{err}")
    assert process.returncode == 0, f"{process.args}:\n{out}\n{err}"
    return out


def _cli(run: Path) -> list[str]:
    """``lopt meta-train --resume run``, which also starts a run whose directory
    holds only config.json: how these tests give the command a tiny config."""
    return ["-m", "lopt.cli", "meta-train", "--resume", str(run), "--no-progress"]


def _cli_processes(run: Path, *extra: str, count: int = 2) -> list[subprocess.Popen]:
    port = _free_port()
    return [
        _start(
            [
                *_cli(run),
                *extra,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(count),
                "--process-id",
                str(i),
            ]
        )
        for i in range(count)
    ]


def _new_run(path: Path, generations: int) -> Path:
    path.mkdir()
    config = distributed_worker.config(generations)
    (path / "config.json").write_text(json.dumps({"config": to_dict(config)}))
    return path


def _generations_done(run: Path) -> int:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    done = [json.loads(x)["generation"] for x in lines if x.endswith("}")]
    return max(done, default=-1)


def _kill_when(
    processes: list[subprocess.Popen], ready, victim: int
) -> tuple[subprocess.Popen, float, str]:
    """Kills ``processes[victim]`` (SIGKILL) once ``ready()``; returns the
    survivor, its seconds from the kill to its exit, its stderr."""
    start = time.monotonic()
    while not ready():
        assert all(p.poll() is None for p in processes), [
            p.communicate() for p in processes
        ]
        assert time.monotonic() - start < DEADLINE_S, "never ready for the kill"
        time.sleep(0.1)
    processes[victim].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    survivor = processes[1 - victim]
    try:
        _, err = survivor.communicate(timeout=STOP_WITHIN_S + 30)
    except subprocess.TimeoutExpired:
        survivor.kill()
        pytest.fail(f"the survivor still ran {STOP_WITHIN_S + 30} s after the kill")
    seconds = time.monotonic() - killed
    processes[victim].communicate()
    return survivor, seconds, err


def _same_run(a: Path, b: Path) -> None:
    """Bit-identical optimizers, checkpoints and fitness records."""
    assert (a / "optimizer.npy").read_bytes() == (b / "optimizer.npy").read_bytes()
    names = sorted(p.name for p in (a / "checkpoints").glob("es_state_gen*.npz"))
    assert names == sorted(
        p.name for p in (b / "checkpoints").glob("es_state_gen*.npz")
    )
    for name in names:
        with (
            np.load(a / "checkpoints" / name) as x,
            np.load(b / "checkpoints" / name) as y,
        ):
            assert x.files == y.files
            for key in x.files:
                assert x[key].tobytes() == y[key].tobytes(), (name, key)

    def fitness(run):
        return [
            (r["generation"], r.get("fitness"), r.get("sigma"), r.get("heldout"))
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        ]

    assert fitness(a) == fitness(b)


def test_mesh_refuses_a_population_that_does_not_split_with_the_numbers():
    cpu = jax.devices()[0]
    with pytest.raises(distributed.MeshDivisionError) as err:
        distributed.mesh(6, "population", devices=[cpu] * 4)
    assert "population of 6 does not split over 4 devices" in str(err.value)
    assert "multiple of 4" in str(err.value)
    assert distributed.mesh(8, "population", devices=[cpu] * 4).size == 4


def test_watchdog_ends_a_process_stuck_past_its_limit():
    script = (
        "import time\n"
        "from lopt.distributed import watchdog\n"
        "with watchdog(None, 'off'):\n"
        "    time.sleep(1)\n"
        "with watchdog(2, 'a short wait'):\n"
        "    time.sleep(0.1)\n"
        "print('passed', flush=True)\n"
        "with watchdog(1, 'gathering'):\n"
        "    time.sleep(60)\n"
        "print('not reached')\n"
    )
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - start < 30
    assert out.returncode == distributed.EXIT_PEER_LOST
    assert out.stdout.split() == ["passed"]
    assert "gathering waited more than 1 s for the other processes" in out.stderr


def test_two_processes_shard_compute_gather_and_broadcast(tmp_path):
    processes = _processes([str(WORKER), "mechanics", str(tmp_path)])
    for process in processes:
        _finish(process)
    results = [dict(np.load(tmp_path / f"mechanics_{i}.npz")) for i in (0, 1)]
    keys = jax.random.split(jax.random.key(ROW_KEY), 4)
    expected = np.asarray(jax.jit(row_function)(ROWS, keys))
    assert len(set(expected.tolist())) == 4  # rows differ: a swap would show
    for i, result in enumerate(results):
        # Process i's one device held members 2i and 2i + 1; all got all four.
        np.testing.assert_array_equal(result["held_rows"], [2 * i, 2 * i + 1])
        np.testing.assert_allclose(result["gathered"], expected, rtol=1e-6)
        # Process 0's values, bit for bit: -0.0 keeps its sign.
        assert result["signed"].tobytes() == np.array([-0.0, 1.5], np.float32).tobytes()
        np.testing.assert_array_equal(
            result["key_data"], jax.random.key_data(jax.random.key(0))
        )
        assert int(result["count"]) == 10
        assert result["text"].tobytes() == b"settings of process 0"
        assert bool(result["writer"]) == (i == 0)
        assert (
            "a population of 3 does not split over 2 devices (2 process(es) with "
            "1 device(s) each)" in result["refused"].tobytes().decode()
        )


@pytest.mark.parametrize("victim", [0, 1])
def test_killed_peer_stops_an_idle_survivor_within_the_heartbeat_timeout(
    tmp_path, victim
):
    # The survivor sleeps outside any collective: only the runtime's heartbeat
    # (5 s here) can stop it. Process 0 hosts the coordinator: killing it stops
    # process 1 at once; killing process 1 stops process 0 after the timeout.
    processes = _processes([str(WORKER), "idle", str(tmp_path)], 2, "5")
    survivor, seconds, err = _kill_when(
        processes,
        lambda: all((tmp_path / f"idle_{i}").exists() for i in (0, 1)),
        victim,
    )
    assert survivor.returncode != 0
    assert seconds < 5 + 15, err
    assert "Terminating process because the JAX distributed service" in err, err


@pytest.mark.heavy
def test_one_generation_on_two_processes_equals_one_process_with_two_devices(
    tmp_path,
):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    processes = _processes([str(WORKER), "generation", str(tmp_path / "two")])
    alone = _start([str(WORKER), "generation", str(tmp_path / "one")], devices=2)
    for process in [*processes, alone]:
        _finish(process)
    two = dict(np.load(tmp_path / "two" / "generation_0.npz"))
    one = dict(np.load(tmp_path / "one" / "generation_0.npz"))
    assert int(two["devices"]) == int(one["devices"]) == 2
    assert len(set(one["raw"].tolist())) > 1  # members differ: a swap would show
    assert one.keys() == two.keys()
    for name in one:
        assert one[name].tobytes() == two[name].tobytes(), name
    # Process 1 (which writes nothing) reached the same ES state.
    other = dict(np.load(tmp_path / "two" / "generation_1.npz"))
    for name in one:
        assert other[name].tobytes() == two[name].tobytes(), name


def _killed_cli_run(run: Path, victim: int) -> str:
    """A 2-process ``lopt meta-train`` of ``run`` whose process ``victim`` is
    killed after generation 1; checks the survivor stopped in time, returns its
    stderr."""
    processes = _cli_processes(run)
    survivor, seconds, err = _kill_when(
        processes, lambda: _generations_done(run) >= 1, victim
    )
    assert survivor.returncode != 0
    assert seconds < STOP_WITHIN_S, err
    assert "another process has probably died" in err or (
        "Terminating process because the JAX distributed service" in err
    ), err
    return err


@pytest.mark.heavy
def test_killed_peer_stops_the_survivor_and_the_run_resumes_bit_identical(
    tmp_path,
):
    # Enough generations that the kill comes before the end (~1 s each).
    whole = _new_run(tmp_path / "whole", generations=GENERATIONS)
    run = _new_run(tmp_path / "run", generations=GENERATIONS)
    _killed_cli_run(run, victim=1)
    assert not (run / "optimizer.npy").exists()
    assert 1 <= _generations_done(run) < MIDDLE
    # Resumed on two processes up to MIDDLE, then on one process with one device
    # to the end; the uninterrupted run on one process with one device.
    for process in _cli_processes(run, "--generations", str(MIDDLE)):
        _finish(process)
    assert _generations_done(run) == MIDDLE
    _finish(_start(_cli(run)))
    _finish(_start(_cli(whole)))
    _same_run(run, whole)


@pytest.mark.heavy
def test_killed_coordinator_stops_the_other_process(tmp_path):
    _killed_cli_run(_new_run(tmp_path / "run", generations=GENERATIONS), victim=0)
