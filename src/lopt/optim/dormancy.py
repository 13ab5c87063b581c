"""Neuron dormancy (Sokar et al. 2023), the one implementation used across lopt.

A network records, for each layer, ``a_j = mean over the batch of |h_j|`` for each
output neuron j (after the activation for hidden layers, the raw output for final
layers). The normalised activation score is

    s_j = (a_j + 1e-11) / sum_k |a_k + 1e-11| * N

with N neurons in the layer: about 1 for an average neuron, 0 for a dead one, and
always 1 for a single-neuron layer. OPEN feeds the continuous score to the optimizer
(§2.3); the logged dormant fraction counts neurons with ``s_j <= tau``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lopt.optim.tree_paths import path_names

SCORE_EPS = 1e-11
#: Threshold of the logged dormant fraction (OPEN's logging code).
DORMANT_TAU = 1e-7


def mean_abs_activation(h: jax.Array) -> jax.Array:
    """Mean of ``|h|`` over all axes but the last: shape ``(..., N) -> (N,)``."""
    return jnp.mean(jnp.abs(h).reshape(-1, h.shape[-1]), axis=0)


def neuron_scores(mean_abs: jax.Array) -> jax.Array:
    """Normalised activation scores ``s_j`` of one layer, shape ``(N,) -> (N,)``."""
    a = mean_abs + SCORE_EPS
    return a / jnp.sum(jnp.abs(a)) * a.shape[-1]


def dormant_fraction(activations: Any, tau: float = DORMANT_TAU) -> jax.Array:
    """Fraction of all recorded neurons whose score is at most ``tau``.

    Args:
      activations: a tree whose leaves are per-layer mean ``|h|``, shape ``(N,)``.
    """
    scores = [neuron_scores(a) for a in jax.tree_util.tree_leaves(activations)]
    flat = jnp.concatenate(scores)
    return jnp.mean((flat <= tau).astype(jnp.float32))


def dormancy_tree(params: Any, activations: Any) -> Any:
    """The optimizer's ``dormancy`` input: one score vector per parameter leaf.

    Args:
      params: the parameter tree.
      activations: a tree of per-layer mean ``|h|`` (shape ``(N,)``) placed at the
        path of the layer whose outputs they are, e.g.
        ``{"actor": {"params": {"Dense_0": a0, ...}}, "critic": ...}``.

    Returns:
      A tree shaped like ``params``. A leaf under a layer with recorded activations
      gets that layer's scores, shape ``(N,)``: they broadcast over a kernel's
      input axis (kernels are ``(in, N)``) and match a bias. Other leaves (a
      Gaussian actor's ``log_std``, whose score is always 1) get ``1.0``.
    """
    by_path = {
        path_names(path): neuron_scores(a)
        for path, a in jax.tree_util.tree_flatten_with_path(activations)[0]
    }

    def lookup(path, _):
        names = path_names(path)
        for end in range(len(names), 0, -1):
            if names[:end] in by_path:
                return by_path[names[:end]]
        return jnp.ones((), jnp.float32)

    return jax.tree_util.tree_map_with_path(lookup, params)


def uniform_dormancy(params: Any) -> Any:
    """A ``dormancy`` input of 1 everywhere, for loops that record no activations."""
    return jax.tree.map(lambda _: jnp.ones((), jnp.float32), params)
