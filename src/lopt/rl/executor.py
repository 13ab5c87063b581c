"""One batched executor: an algorithm over seeds x optimizer parameters.

:class:`Executor` runs any :class:`~lopt.rl.algorithm.Algorithm` for a batch of
seeds (keys), with one set of optimizer parameters shared by all seeds or a batch
of them (``members``: a population of meta-parameters, a grid of learning rates),
everything vmapped in one jitted function. It can run a whole run in one call, or
in chunks of updates (one compiled function, reused, its state donated) with a
progress callback; it can shard the members over devices with a ``jax.sharding``
mesh. Environments stepped on the host (Atari through ALE) run behind the same
call on the host backend (:mod:`lopt.rl.host_backend`).

``lopt train``, ``lopt eval``, ``lopt tune``, meta-training and the benchmarks all
run through it::

    executor = Executor(config, adam(), chunk=chunk_size(config.num_updates))
    metrics, state = executor(seed_keys(range(4)))  # metrics: (4, num_updates)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lopt.envs.registry import is_host
from lopt.optim.optimizer import Optimizer
from lopt.rl.algorithm import AlgorithmConfig, TrainState
from lopt.rl.registry import make_algorithm

MEMBER_AXIS = "members"


class MemberShardingError(ValueError):
    """A batch of optimizer parameters that does not split evenly over devices."""


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """One PRNG key per seed; seed s gives the same key in any run."""
    return jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))


def chunk_size(num_updates: int, target_chunks: int = 25) -> int:
    """The largest divisor of ``num_updates`` giving at least ``target_chunks``
    chunks (so every chunk has the same length and compiles once)."""
    limit = max(1, num_updates // target_chunks)
    return max(d for d in range(1, limit + 1) if num_updates % d == 0)


def member_mesh(num_members: int, devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all), checking the members split."""
    devices = list(jax.devices() if devices is None else devices)
    if num_members % len(devices):
        raise MemberShardingError(
            f"a population of {num_members} does not split over {len(devices)} "
            f"devices; use a population size that is a multiple of {len(devices)}"
        )
    return Mesh(np.asarray(devices), (MEMBER_AXIS,))


class Executor:
    """Runs ``config``'s algorithm with ``optimizer`` over batches of seeds.

    Args:
      config: any algorithm's settings.
      optimizer: the optimizer family; calls default to its ``params``.
      members: ``opt_params`` carry a leading member axis ``P``; every member
        trains every seed (or its own seeds, with ``keys_per_member``).
      keys_per_member: ``keys`` have shape ``(P, S)`` instead of ``(S,)``.
      chunk: updates per jitted call (must divide ``num_updates``); None: the
        whole run in one call.
      mesh: shard the member axis over this mesh (see :func:`member_mesh`).
      select: applied to each call's metrics inside the jitted function, e.g.
        to keep only the last return (less to compute and to transfer).
      keep_state: also return the final state.
    """

    def __init__(
        self,
        config: AlgorithmConfig,
        optimizer: Optimizer,
        *,
        members: bool = False,
        keys_per_member: bool = False,
        chunk: int | None = None,
        mesh: Mesh | None = None,
        select: Callable[[dict], dict] | None = None,
        keep_state: bool = True,
    ):
        if chunk is not None and (chunk < 1 or config.num_updates % chunk):
            raise ValueError(
                f"a chunk of {chunk} updates does not divide the run's "
                f"{config.num_updates} updates"
            )
        if keys_per_member and not members:
            raise ValueError("keys_per_member needs members")
        self.config = config
        self.optimizer = optimizer
        self.members = members
        self.keys_per_member = keys_per_member
        self.chunk = chunk
        self.mesh = mesh if mesh is not None and mesh.size > 1 else None
        self.select = select or (lambda metrics: metrics)
        self.keep_state = keep_state
        self.host = is_host(config.env)
        if self.host and members:
            raise ValueError(
                f"{config.env} runs on the host (ALE), one run at a time: a batch "
                "of optimizer parameters cannot be vmapped over it"
            )
        self._compiled: dict = {}

    # BATCHING ----------------------------------------------------------------------
    def _over_batch(self, fn: Callable, state_in: bool) -> Callable:
        """``fn(x, opt_params)`` vmapped over seeds, then over members; ``x`` is a
        key (``state_in=False``) or a state with a leading batch axis."""
        over_seeds = jax.vmap(fn, in_axes=(0, None))
        if not self.members:
            return over_seeds
        batch_axis = 0 if (state_in or self.keys_per_member) else None
        return jax.vmap(over_seeds, in_axes=(batch_axis, 0))

    def _jit(self, fn: Callable, **kwargs) -> Callable:
        if self.mesh is None:
            return jax.jit(fn, **kwargs)
        return jax.jit(fn, out_shardings=self._by_member, **kwargs)

    @property
    def _by_member(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(MEMBER_AXIS))

    def _place(self, keys: jax.Array, opt_params: Any) -> tuple[jax.Array, Any]:
        """Puts the member axis on the mesh (the ES may hand over any layout)."""
        if self.mesh is None:
            return keys, opt_params
        replicated = NamedSharding(self.mesh, PartitionSpec())
        keys_sharding = self._by_member if self.keys_per_member else replicated
        return (
            jax.device_put(keys, keys_sharding),
            jax.device_put(opt_params, self._by_member),
        )

    def _functions(self) -> dict:
        """The jitted functions, built once per executor."""
        if self._compiled:
            return self._compiled
        algorithm = make_algorithm(self.config, self.optimizer)
        keep, select = self.keep_state, self.select

        # opt_params are kept out of the carried state between calls and put back
        # inside, unbatched: every seed reads the same parameters, as in one train.
        def whole(key, opt_params):
            state, metrics = algorithm.train(key, opt_params)
            return (state._replace(opt_params=None) if keep else None), select(metrics)

        def init(key, opt_params):
            return algorithm.init(key, opt_params)._replace(opt_params=None)

        def run(state: TrainState, opt_params):
            state, metrics = algorithm.run(
                state._replace(opt_params=opt_params), self.chunk
            )
            return state._replace(opt_params=None), select(metrics)

        self._compiled = {
            "whole": self._jit(self._over_batch(whole, state_in=False)),
            "init": self._jit(self._over_batch(init, state_in=False)),
            "run": self._jit(self._over_batch(run, state_in=True), donate_argnums=0),
        }
        return self._compiled

    # RUNNING -----------------------------------------------------------------------
    @staticmethod
    def _report(done: int, metrics: dict, on_progress, on_metrics) -> None:
        if on_metrics is not None:
            on_metrics(done, metrics)
        if on_progress is not None:
            on_progress(done)

    def __call__(
        self,
        keys: jax.Array,
        opt_params: Any = None,
        on_progress: Callable[[int], None] | None = None,
        on_metrics: Callable[[int, dict], None] | None = None,
    ) -> tuple[dict[str, np.ndarray], Any]:
        """Trains every seed (and member).

        Args:
          keys: ``(S,)`` PRNG keys (:func:`seed_keys`), or ``(P, S)`` with
            ``keys_per_member``.
          opt_params: the optimizer's parameters (default: its own), with a
            leading member axis ``P`` if ``members``.
          on_progress: called with the number of updates done after each call.
          on_metrics: called after each call with the updates done and that
            call's metrics (NumPy, already off the device: experiment tracking).

        Returns:
          ``(metrics, final_state)``: each metric (after ``select``) as a NumPy
          array ``(S, T, ...)``, or ``(P, S, T, ...)`` with members, where T is
          the metric's length per call times the calls; the final state
          (batched like the metrics; None without ``keep_state``; on the host,
          the list of each seed's final agent parameters).
        """
        opt_params = self.optimizer.params if opt_params is None else opt_params
        if self.host:
            from lopt.rl.host_backend import run_host

            return run_host(
                self.config, self.optimizer, keys, opt_params, on_progress, on_metrics
            )
        functions = self._functions()
        keys, opt_params = self._place(keys, opt_params)
        if self.chunk is None:
            state, metrics = functions["whole"](keys, opt_params)
            metrics = jax.device_get(metrics)
            self._report(self.config.num_updates, metrics, on_progress, on_metrics)
            return metrics, state
        state = functions["init"](keys, opt_params)
        pieces = []
        for done in range(self.chunk, self.config.num_updates + 1, self.chunk):
            state, metrics = functions["run"](state, opt_params)
            pieces.append(jax.device_get(metrics))
            self._report(done, pieces[-1], on_progress, on_metrics)
        time_axis = 2 if self.members else 1
        metrics = {
            k: np.concatenate([p[k] for p in pieces], axis=time_axis) for k in pieces[0]
        }
        return metrics, (state if self.keep_state else None)
