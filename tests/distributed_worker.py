"""One process of the multi-process tests (tests/test_distributed.py).

    python distributed_worker.py MODE OUT_DIR [HOST:PORT NUM_PROCESSES PROCESS_ID
                                               [HEARTBEAT_TIMEOUT_S]]

MODE ``mechanics`` exercises lopt.distributed on its own; ``generation`` runs one
meta-training generation (MetaTrainer) of :func:`config`; ``idle`` joins, meets
the others once, writes ``OUT_DIR/idle_<process id>`` and sleeps (to be killed).
The other modes write ``OUT_DIR/<mode>_<process id>.npz``. Without HOST:PORT a
process runs alone on the devices XLA_FLAGS gives it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from lopt import distributed
from lopt.meta.config import ESConfig, MetaTrainConfig, TaskConfig

from tiny import tiny_ppo

#: Rows (population members) of the mechanics check.
ROWS = np.arange(12, dtype=np.float32).reshape(4, 3) - 5.0
ROW_KEY = 7


def config(generations: int = 1) -> MetaTrainConfig:
    """Population 4 of tiny CartPole runs; sigma 10 so that members' returns
    differ (at 0.1 they all tie, which would hide members swapped between
    devices)."""
    return MetaTrainConfig(
        tasks=(TaskConfig(config=tiny_ppo(total_timesteps=64), baseline_return=1.0),),
        es=ESConfig(
            population_size=4, num_generations=generations, sigma=10.0, lr=0.05
        ),
        save_every=1,
        eval_every=10,
        num_eval_seeds=2,
    )


def row_function(rows, keys):
    """What each member computes in the mechanics check: its row's sum times a
    uniform draw from its own key."""
    return rows.sum(axis=1) * jax.vmap(jax.random.uniform)(keys)


def mechanics() -> dict:
    mesh = distributed.mesh(4, "rows")
    keys = jax.random.split(jax.random.key(ROW_KEY), 4)
    by_row = NamedSharding(mesh, PartitionSpec("rows"))
    out = jax.jit(row_function, out_shardings=by_row)(
        distributed.shard_rows(ROWS, mesh), distributed.shard_rows(keys, mesh)
    )
    held = sorted(i for s in out.addressable_shards for i in range(4)[s.index[0]])
    me = jax.process_index()
    # Process-specific values: only process 0's may come back from broadcast.
    mine = {
        "signed": np.array([-0.0, 1.5], np.float32) * (me + 1),
        "key": jax.random.key(me),
        "count": jnp.int32(10 + me),
    }
    got = distributed.broadcast(mine)
    text = distributed.broadcast_bytes(b"settings of process 0" if me == 0 else None)
    try:
        distributed.mesh(3, "rows")
        refused = ""
    except distributed.MeshDivisionError as err:
        refused = str(err)
    return {
        "gathered": distributed.gather(out),
        "held_rows": np.array(held),
        "signed": np.asarray(got["signed"]),
        "key_data": np.asarray(jax.random.key_data(got["key"])),
        "count": np.asarray(got["count"]),
        "text": np.frombuffer(text, np.uint8),
        "writer": np.array(distributed.is_writer()),
        "refused": np.frombuffer(refused.encode(), np.uint8),
    }


def generation() -> dict:
    from lopt.meta.loop import MetaTrainer

    trainer = MetaTrainer(config())
    state, result = trainer.generation(trainer.init_state(), 0)
    leaves = {
        f"state_{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))
    }
    return {
        "raw": result["raw"][0],
        "fitness": np.asarray(result["fitness"]),
        "devices": np.array(len(jax.devices())),
        **leaves,
    }


def idle(out: Path) -> None:
    mesh = distributed.mesh(jax.device_count(), "rows")
    # A collective: every process has joined.
    distributed.gather(distributed.shard_rows(np.zeros(jax.device_count()), mesh))
    (out / f"idle_{jax.process_index()}").touch()
    time.sleep(600)  # in Python, outside any collective, until killed


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    if len(sys.argv) > 3:
        coordinator, count, index = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        heartbeat = int(sys.argv[6]) if len(sys.argv) > 6 else 30
        distributed.initialize(coordinator, count, index, heartbeat_timeout_s=heartbeat)
    if mode == "idle":
        return idle(out)
    result = {"mechanics": mechanics, "generation": generation}[mode]()
    np.savez(out / f"{mode}_{jax.process_index()}.npz", **result)


if __name__ == "__main__":
    main()
