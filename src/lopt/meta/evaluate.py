"""Evaluating a population of optimizers: one jitted function, sharded.

Every member trains ``num_rollouts`` inner runs with the same keys (common random
numbers), all vmapped in one function; the population axis is split over every JAX
device with a ``jax.sharding`` mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lopt.meta.fitness import final_return

POPULATION_AXIS = "population"


class PopulationShardingError(ValueError):
    """A population that does not split evenly over the devices."""


def population_mesh(population_size: int, devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all), checking the population splits."""
    devices = list(jax.devices() if devices is None else devices)
    if population_size % len(devices):
        raise PopulationShardingError(
            f"a population of {population_size} does not split over {len(devices)} "
            f"devices; use a population size that is a multiple of {len(devices)}"
        )
    return Mesh(np.asarray(devices), (POPULATION_AXIS,))


def make_evaluate(
    train: Callable[[jax.Array, Any], tuple[Any, dict]],
    mesh: Mesh | None = None,
    keys_per_member: bool = False,
) -> Callable[[Any, jax.Array], jax.Array]:
    """``evaluate(population, keys) -> final returns``, shape ``(members, rollouts)``.

    Args:
      train: ``train(key, optimizer_params) -> (state, metrics)`` of one inner run.
      mesh: shard the population axis over this mesh (default: no sharding).
      keys_per_member: ``keys`` has shape ``(members, rollouts)`` (antithetic task
        sampling) instead of ``(rollouts,)`` shared by every member.

    ``population`` is a pytree of optimizer parameters with a leading member axis.
    """

    def evaluate(population: Any, keys: jax.Array) -> jax.Array:
        def member(params, member_keys):
            _, metrics = jax.vmap(train, in_axes=(0, None))(member_keys, params)
            return final_return(metrics)

        return jax.vmap(member, in_axes=(0, 0 if keys_per_member else None))(
            population, keys
        )

    if mesh is None or mesh.size == 1:
        return jax.jit(evaluate)
    by_member = NamedSharding(mesh, PartitionSpec(POPULATION_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = jax.jit(evaluate, out_shardings=by_member)

    def evaluate_sharded(population: Any, keys: jax.Array) -> jax.Array:
        # Placed explicitly: the population from the ES may sit on any sharding.
        keys_sharding = by_member if keys_per_member else replicated
        return sharded(
            jax.device_put(population, by_member), jax.device_put(keys, keys_sharding)
        )

    return evaluate_sharded
