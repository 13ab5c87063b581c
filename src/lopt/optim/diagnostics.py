"""What an optimizer does, step by step: a wrapper for analysis (OPEN §8.2).

:func:`with_diagnostics` wraps any optax transformation and keeps, after every
step, in ``state.stats``:

- ``cos_gradient``: cosine similarity of the update with the negative gradient
  (1: plain gradient descent, whatever the step size);
- ``cos_momentum``: shape ``(6,)``, the same with the negative gradient momenta at
  :data:`~lopt.optim.features.MOMENTUM_DECAYS` (no bias correction);
- ``noise_magnitude``: the learned noise of an OPEN optimizer built with
  ``track_noise=True`` (``sum |noise| / sum |p|`` over the actor), else NaN;
- ``sample_gradient``, ``sample_update``: shape ``(sample_size,)``, the gradient
  and update of a fixed, evenly spaced sample of the parameters.

It changes no update. The momenta are the wrapper's own (the same definition as
OPEN's features), so every optimizer is measured the same way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.optim.features import MOMENTUM_DECAYS, update_momentum
from lopt.optim.open_opt import OPENState
from lopt.optim.tree_paths import flatten

# Per-step samples: a PPO update keeps its last step's, not a mean over steps.
SAMPLES = ("sample_gradient", "sample_update")
STAT_NAMES = (
    "cos_gradient",
    "cos_momentum",
    "noise_magnitude",
    "sample_gradient",
    "sample_update",
)


class DiagnosticsState(NamedTuple):
    inner: Any  # the wrapped transformation's state
    momentum: jax.Array  # shape=(6, num_params): gradient EMAs
    stats: dict  # the last step's statistics (see the module docstring)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity along the last axis; 0 where either vector is 0."""
    dot = jnp.sum(a * b, axis=-1)
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0)


def sample_indices(num_params: int, sample_size: int) -> np.ndarray:
    """``sample_size`` evenly spaced flat indices (fewer if there are fewer params)."""
    return np.unique(np.linspace(0, num_params - 1, sample_size).round().astype(int))


def _noise_magnitude(inner: Any) -> jax.Array:
    found = [
        s
        for s in jax.tree.leaves(inner, is_leaf=lambda x: isinstance(x, OPENState))
        if isinstance(s, OPENState)
    ]
    return found[0].noise_magnitude if found else jnp.asarray(jnp.nan, jnp.float32)


def with_diagnostics(
    tx: optax.GradientTransformationExtraArgs, sample_size: int = 64
) -> optax.GradientTransformationExtraArgs:
    """``tx`` unchanged, with per-step statistics in ``state.stats``."""

    def init_fn(params: Any) -> DiagnosticsState:
        num_params = sum(jnp.size(p) for p in jax.tree.leaves(params))
        k = len(sample_indices(num_params, sample_size))
        stats = {
            "cos_gradient": jnp.zeros((), jnp.float32),
            "cos_momentum": jnp.zeros((len(MOMENTUM_DECAYS),), jnp.float32),
            "noise_magnitude": jnp.zeros((), jnp.float32),
            "sample_gradient": jnp.zeros((k,), jnp.float32),
            "sample_update": jnp.zeros((k,), jnp.float32),
        }
        return DiagnosticsState(
            tx.init(params),
            jnp.zeros((len(MOMENTUM_DECAYS), num_params), jnp.float32),
            stats,
        )

    def update_fn(grads, state: DiagnosticsState, params=None, **extra_args):
        updates, inner = tx.update(grads, state.inner, params, **extra_args)
        g = flatten(grads).astype(jnp.float32)
        u = flatten(updates).astype(jnp.float32)
        momentum = update_momentum(state.momentum, g)
        idx = sample_indices(g.size, sample_size)
        stats = {
            "cos_gradient": cosine(u, -g),
            "cos_momentum": cosine(u[None], -momentum),
            "noise_magnitude": _noise_magnitude(inner),
            "sample_gradient": g[idx],
            "sample_update": u[idx],
        }
        return updates, DiagnosticsState(inner, momentum, stats)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
