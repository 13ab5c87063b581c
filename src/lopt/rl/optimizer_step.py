"""One optimizer step of any algorithm, with what every lopt optimizer may read.

Gradients are clipped to global norm ``max_grad_norm`` per network (per top-level
subtree: PPO's actor and critic separately, as OPEN does; a Q-network as a
whole), then passed to the optimizer with OPEN's extra arguments: a fresh ``key``
(its noise), ``training_prop`` and ``batch_prop`` (:mod:`lopt.rl.progress`), the
``dormancy`` of each neuron on this batch (before the step), and the scalar
``loss`` (VeLO's input).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from lopt.optim.diagnostics import SAMPLES
from lopt.optim.dormancy import dormancy_tree, dormant_fraction
from lopt.optim.tree_paths import flatten
from lopt.rl import progress


def clip_per_network(grads: dict, max_norm: float | None) -> dict:
    """Clips each top-level subtree to global norm ``max_norm`` (None: as is)."""
    if max_norm is None:
        return grads
    clip = optax.clip_by_global_norm(max_norm)
    return {name: clip.update(g, optax.EmptyState())[0] for name, g in grads.items()}


def optimizer_step(
    config: Any,
    tx: optax.GradientTransformationExtraArgs,
    params: Any,
    opt_state: Any,
    iteration: jax.Array,
    grads: Any,
    *,
    activations: Any,
    loss: jax.Array,
    key: jax.Array,
) -> tuple[Any, Any, jax.Array, dict]:
    """One step of ``tx`` on ``params`` at optimizer step ``iteration``.

    Args:
      config: the algorithm's :class:`~lopt.rl.algorithm.AlgorithmConfig` (the
        update's shape, ``max_grad_norm``, ``diagnostics``).
      activations: the networks' recorded activations on this batch
        (:mod:`lopt.rl.networks`), for dormancy.

    Returns:
      ``(params, opt_state, iteration + 1, metrics)``: ``dormant_fraction``,
      ``update_magnitude`` (mean |update| per element) and, with diagnostics,
      :data:`lopt.optim.diagnostics.STAT_NAMES`.
    """
    grads = clip_per_network(grads, config.max_grad_norm)
    updates, opt_state = tx.update(
        grads,
        opt_state,
        params,
        key=key,
        training_prop=progress.training_prop(
            iteration, config.steps_per_update, config.num_learning_updates
        ),
        batch_prop=progress.batch_prop(
            iteration, config.steps_per_epoch, config.num_epochs
        ),
        dormancy=dormancy_tree(params, activations),
        loss=loss,
    )
    params = optax.apply_updates(params, updates)
    metrics = {
        "dormant_fraction": dormant_fraction(activations),
        "update_magnitude": jnp.mean(jnp.abs(flatten(updates))),
    }
    if config.diagnostics:
        metrics.update(opt_state.stats)
    return params, opt_state, iteration + 1, metrics


def gradient_step(
    config: Any,
    tx: optax.GradientTransformationExtraArgs,
    loss_fn: Any,
    carry: tuple[Any, Any, jax.Array],
    key: jax.Array,
) -> tuple[tuple[Any, Any, jax.Array], dict]:
    """The gradient of ``loss_fn`` at the carry's params, then
    :func:`optimizer_step`.

    Args:
      loss_fn: ``params -> (loss, (metrics, activations))``.
      carry: ``(params, opt_state, iteration)``.

    Returns:
      The new carry, and the loss's metrics with the step's.
    """
    params, opt_state, iteration = carry
    (loss, (metrics, activations)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params
    )
    params, opt_state, iteration, step_metrics = optimizer_step(
        config,
        tx,
        params,
        opt_state,
        iteration,
        grads,
        activations=activations,
        loss=loss,
        key=key,
    )
    return (params, opt_state, iteration), {**metrics, **step_metrics}


def mean_over_steps(metrics: dict, num_axes: int) -> dict:
    """An update's metrics from its steps': the mean over the leading
    ``num_axes`` axes (epochs, minibatches), the last step's for samples."""
    last = (-1,) * num_axes
    axes = tuple(range(num_axes))
    return {
        k: v[last] if k in SAMPLES else jnp.mean(v, axis=axes)
        for k, v in metrics.items()
    }
