"""Running as N cooperating processes on JAX's distributed runtime.

One process per host (or per GPU) joins a run with :func:`initialize`; process 0
also hosts the coordinator. Every process then sees every process's devices in
``jax.devices()``, and a jitted function over arrays sharded on a mesh of all of
them runs each shard on the device that holds it. CPU processes exchange data
with gloo over TCP, so the whole path runs on one machine on the loopback address.

The pattern this module serves: every process computes the same host values (same
code, same keys), :func:`shard_rows` puts them onto the global mesh split along
the leading axis (each process supplies only its own devices' rows), a jitted
function computes, :func:`gather` brings the result back to every process, and
:func:`broadcast` makes process 0's copy of replicated state everyone's, bit for
bit. Only :func:`is_writer` (process 0) writes files.

Faults: the runtime's heartbeat stops every survivor when a process dies. A peer
killed while the others wait in a collective makes that collective fail at once
(:class:`CollectiveError`); a peer killed while they compute is noticed after
``heartbeat_timeout_s``, and the runtime then terminates them (SIGABRT, exit
status 134, a "Terminating process because the JAX distributed service detected
fatal errors" message). :func:`abort` ends a process without the runtime's
shutdown barrier, which would otherwise wait for the dead peer.

Nothing here knows about meta-training; any population-of-runs code can use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: Exit status of a process stopped because a collective with its peers failed.
EXIT_PEER_LOST = 75
_settings = {"collective_timeout_s": None}
LATE_HINT = (
    " (some libraries compute when imported: evosax, hence lopt.meta, does; "
    "initialise before importing them)"
)


class DistributedError(RuntimeError):
    """The distributed runtime could not be started or used as asked."""


class CollectiveError(DistributedError):
    """A collective over several processes failed: a peer probably died."""


class MeshDivisionError(ValueError):
    """A leading axis that does not split evenly over the mesh's devices."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """Where this process stands: its index, the process count, device counts."""

    process_index: int
    process_count: int
    local_devices: int
    global_devices: int

    def describe(self) -> str:
        return (
            f"process {self.process_index} of {self.process_count}, "
            f"{self.local_devices} local of {self.global_devices} devices"
        )


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout_s: int = 30,
    init_timeout_s: int = 300,
    collective_timeout_s: float | None = None,
) -> Topology:
    """Joins a run of ``num_processes`` processes; call before any JAX computation.

    Args:
      coordinator: ``HOST:PORT`` of the coordinator, which process 0 starts and
        every process connects to (the same value on all).
      num_processes, process_id: the number of processes and this one's index.
        Any of the three left None is taken from the cluster environment that JAX
        detects (SLURM, Open MPI, mpi4py, Kubernetes, Cloud TPU); with none given
        and no cluster detected, JAX refuses with its own error.
      heartbeat_timeout_s: a process silent this long counts as dead and the
        runtime stops all the others; the bound on how long survivors run on.
      init_timeout_s: how long to wait for every process to connect.
      collective_timeout_s: if set, a process waiting longer than this in
        :func:`gather` or :func:`broadcast` (a peer alive but stuck) exits via
        :func:`abort`. Off by default: a slow peer is not a dead one.

    Returns:
      This process's :class:`Topology`.
    """
    # CPU processes need cross-process collectives; gloo is the default from
    # jax 0.9 but not before, and a user's choice (mpi) is kept.
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=init_timeout_s,
            heartbeat_timeout_seconds=heartbeat_timeout_s,
        )
    except (RuntimeError, ValueError) as err:
        late = "" if "must be called before" not in str(err) else LATE_HINT
        raise DistributedError(
            f"could not join the distributed run (coordinator {coordinator}, "
            f"{num_processes} processes, process id {process_id}): {err}{late}"
        ) from err
    _settings["collective_timeout_s"] = collective_timeout_s
    return topology()


def topology() -> Topology:
    """This process's place in the run (one process when not initialised)."""
    return Topology(
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def is_writer() -> bool:
    """Whether this process writes files: process 0, or the only process."""
    return jax.process_index() == 0


def mesh(size: int, axis: str, devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every process's), checking that a
    leading axis of ``size`` splits evenly over it.

    Devices are ordered by process, then id, so row ``i`` lands on the same device
    whatever order the backend lists them in.
    """
    devices = sorted(
        jax.devices() if devices is None else devices,
        key=lambda d: (d.process_index, d.id),
    )
    if size % len(devices):
        processes = len({d.process_index for d in devices})
        raise MeshDivisionError(
            f"a population of {size} does not split over {len(devices)} devices "
            f"({processes} process(es) with {len(devices) // processes} device(s) "
            f"each); use a population size that is a multiple of {len(devices)}"
        )
    return Mesh(np.asarray(devices), (axis,))


def spans_processes(mesh: Mesh) -> bool:
    """Whether ``mesh`` holds devices of other processes than this one."""
    return not all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def _place(tree: Any, sharding: NamedSharding) -> Any:
    # make_array_from_callback, unlike device_put, also places PRNG key arrays on
    # a mesh spanning processes; each process supplies its own devices' slices.
    def place(x):
        if not spans_processes(sharding.mesh):
            return jax.device_put(x, sharding)
        host = x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else None
        host = np.asarray(x) if host is None else host
        return jax.make_array_from_callback(x.shape, sharding, lambda i: host[i])

    return jax.tree.map(place, tree)


def shard_rows(tree: Any, mesh: Mesh) -> Any:
    """Host values (the same on every process) split along their leading axis
    over ``mesh``'s one axis: each device holds ``rows / mesh.size`` rows."""
    return _place(tree, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host values (the same on every process), a full copy on each device."""
    return _place(tree, NamedSharding(mesh, PartitionSpec()))


def abort(message: str, code: int = EXIT_PEER_LOST) -> None:
    """Prints ``message`` to stderr and ends this process at once.

    Skips the runtime's shutdown barrier, which waits for every process and so,
    with one dead, would hang until the heartbeat timeout and then abort noisily.
    """
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


@contextlib.contextmanager
def watchdog(seconds: float | None, what: str) -> Iterator[None]:
    """Aborts the process if the block takes longer than ``seconds`` (None: off)."""
    if seconds is None:
        yield
        return
    timer = threading.Timer(
        seconds,
        abort,
        args=(
            f"lopt: error: {what} waited more than {seconds:g} s for the other "
            f"processes (collective_timeout_s); stopping process "
            f"{jax.process_index()}",
        ),
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    with watchdog(_settings["collective_timeout_s"], what):
        try:
            yield
        except Exception as err:  # gloo, NCCL and the runtime raise different types
            raise CollectiveError(
                f"{what} across {jax.process_count()} processes failed in process "
                f"{jax.process_index()}; another process has probably died or "
                f"been killed (its log says why). Runtime error: {err}"
            ) from err


def gather(tree: Any) -> Any:
    """Every leaf in full on every process, as NumPy arrays.

    Leaves may be sharded over a mesh spanning processes (gathered with a
    collective) or local to this process (copied).
    """
    from jax.experimental import multihost_utils

    def one(x):
        if getattr(x, "is_fully_addressable", True):
            return np.asarray(x)
        with _collective("gathering a result"):
            return multihost_utils.process_allgather(x, tiled=True)

    return jax.tree.map(one, tree)


def _to_bytes(x) -> tuple[np.ndarray, Any]:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(x))
        return data.reshape(-1).view(np.uint8), (data, jax.random.key_impl(x))
    data = np.array(x, order="C")  # not ascontiguousarray: it makes scalars 1-D
    return data.reshape(-1).view(np.uint8), (data, None)


def _from_bytes(raw: np.ndarray, like: tuple[np.ndarray, Any]) -> Any:
    data, impl = like
    value = np.asarray(raw, np.uint8).view(data.dtype).reshape(data.shape)
    if impl is not None:
        return jax.random.wrap_key_data(value, impl=impl)
    return jax.numpy.asarray(value)


def broadcast(tree: Any) -> Any:
    """Process 0's values of ``tree`` on every process, bit for bit.

    Every process passes a tree of the same structure, shapes and dtypes (its own
    values are dropped). Leaves come back as JAX arrays (PRNG keys stay keys). The
    bytes travel, not the numbers: JAX's own broadcast sums, which turns -0.0 into
    0.0. With one process, ``tree`` is returned as it is.
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(tree)
    encoded = [_to_bytes(x) for x in leaves]
    with _collective("broadcasting process 0's state"):
        raw = multihost_utils.broadcast_one_to_all([b for b, _ in encoded])
    decoded = [_from_bytes(r, like) for r, (_, like) in zip(raw, encoded, strict=True)]
    return jax.tree.unflatten(treedef, decoded)


def broadcast_bytes(data: bytes | None) -> bytes:
    """Process 0's ``data`` on every process (the others pass None)."""
    if jax.process_count() == 1:
        return data
    from jax.experimental import multihost_utils

    mine = np.frombuffer(data or b"", np.uint8)
    with _collective("broadcasting process 0's settings"):
        size = int(multihost_utils.broadcast_one_to_all(np.int32(mine.size)))
        buffer = np.zeros(size, np.uint8)
        if is_writer():
            buffer[:] = mine
        return multihost_utils.broadcast_one_to_all(buffer).tobytes()
