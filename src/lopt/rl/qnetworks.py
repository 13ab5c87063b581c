"""Pieces shared by the value-based loops (DQN, IQN, PQN).

Epsilon-greedy exploration with a linear schedule, the optimizer step that feeds
OPEN its extra arguments from a Q-network's activations, and the type the loops
return. Every loop's metrics hold ``return`` (as PPO's), ``loss``,
``dormant_fraction``, ``update_magnitude`` and ``epsilon``, one value per update.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.envs.registry import REGISTRY, canonical_name, make_env
from lopt.optim.dormancy import dormancy_tree, dormant_fraction
from lopt.optim.tree_paths import flatten

METRICS = ("loss", "dormant_fraction", "update_magnitude")
"""per-gradient-step metrics, averaged over an update's steps"""


class Learner(NamedTuple):
    """The pieces of a run; ``train`` is ``init`` followed by ``run`` to the end."""

    init: Any  # (key, opt_params) -> state
    run: Any  # (state, opt_params, num_updates) -> (state, metrics)
    train: Any  # (key, opt_params) -> (state, metrics)
    config: Any


def epsilon(frames: jax.Array, start: float, end: float, anneal_frames: float):
    """Linear decay from ``start`` to ``end`` over the first ``anneal_frames``
    environment frames, then ``end`` (CleanRL's ``linear_schedule``); ``end``
    throughout when ``anneal_frames`` is 0."""
    if anneal_frames <= 0:
        return jnp.asarray(end, jnp.float32)
    fraction = jnp.clip(frames / anneal_frames, 0.0, 1.0)
    return jnp.asarray(start + fraction * (end - start), jnp.float32)


def epsilon_greedy(key: jax.Array, q_values: jax.Array, eps: jax.Array) -> jax.Array:
    """Greedy actions, each replaced by a uniform one with probability ``eps``.

    Args:
      q_values: shape ``(num_envs, num_actions)``.

    Returns:
      int32 actions, shape ``(num_envs,)``.
    """
    key_explore, key_action = jax.random.split(key)
    greedy = jnp.argmax(q_values, axis=-1)
    explore = jax.random.uniform(key_explore, greedy.shape) < eps
    random = jax.random.randint(key_action, greedy.shape, 0, q_values.shape[-1])
    return jnp.where(explore, random, greedy).astype(jnp.int32)


class UnsupportedEnvironmentError(ValueError):
    """An environment the value-based loops cannot run."""


def make_discrete_env(name: str) -> tuple[Any, Any]:
    """One environment for a value-based loop, which vmaps it itself: discrete
    actions, resetting itself, in JAX (not Brax, Craftax's reset pool or Atari)."""
    entry = REGISTRY[canonical_name(name)]
    if entry.host_game or entry.pool_size or entry.normalize:
        raise UnsupportedEnvironmentError(
            f"{canonical_name(name)} needs PPO's batch wrappers or host loop; the "
            "value-based loops (dqn, iqn, pqn) run gymnax, the gridworld and "
            "Deep Sea"
        )
    return make_env(name)


def chosen(values: jax.Array, actions: jax.Array) -> jax.Array:
    """``values[..., a]`` per row: ``(B, ..., A)`` and ``(B,)`` -> ``(B, ...)``."""
    index = actions.reshape(actions.shape + (1,) * (values.ndim - actions.ndim))
    return jnp.take_along_axis(values, index, axis=-1)[..., 0]


def optimizer_step(
    tx: optax.GradientTransformationExtraArgs,
    params: Any,
    opt_state: Any,
    grads: Any,
    activations: Any,
    key: jax.Array,
    training_prop: jax.Array,
    batch_prop: jax.Array,
    max_grad_norm: float | None,
    loss: jax.Array,
) -> tuple[Any, Any, dict]:
    """One update of the Q-network with any optimizer.

    Gradients are clipped to global norm ``max_grad_norm`` (over the one
    network), then passed with the extra arguments every lopt optimizer may read:
    ``dormancy`` from the Q-network's recorded activations on this batch, before
    the update, and the scalar ``loss`` (VeLO's input).

    Returns:
      ``(params, opt_state, metrics)`` with ``dormant_fraction`` and
      ``update_magnitude`` (mean |update| per element).
    """
    if max_grad_norm is not None:
        grads, _ = optax.clip_by_global_norm(max_grad_norm).update(
            grads, optax.EmptyState()
        )
    updates, opt_state = tx.update(
        grads,
        opt_state,
        params,
        key=key,
        training_prop=training_prop,
        batch_prop=batch_prop,
        dormancy=dormancy_tree(params, activations),
        loss=loss,
    )
    params = optax.apply_updates(params, updates)
    metrics = {
        "dormant_fraction": dormant_fraction(activations),
        "update_magnitude": jnp.mean(jnp.abs(flatten(updates))),
    }
    return params, opt_state, metrics
