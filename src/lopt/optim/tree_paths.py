"""Selecting parts of a parameter tree by path: layers, networks and noise masks.

A *layer* is a dict whose values are all arrays (a flax ``Dense``'s ``{"bias",
"kernel"}``), or a lone array that sits beside such layers (a Gaussian actor's
``log_std``). A layer's *network* is the dict that holds it. Layers of one network
are ordered by their key in natural order (``Dense_2`` before ``Dense_10``), which
for flax's automatic names is the order the layers were created in. ``layer_prop``
of the i-th of L layers is ``i / (L - 1)`` (0 for a network of one layer), shared by
every tensor of the layer, as in OPEN (§2.3): actor ``Dense_0, Dense_1, Dense_2,
log_std`` get 0, 1/3, 2/3, 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Path = tuple[Any, ...]


def key_name(entry: Any) -> str:
    """The plain name of one path entry (dict key, attribute or index)."""
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_names(path: Path) -> tuple[str, ...]:
    """A tree path as plain names, e.g. ``("actor", "params", "Dense_0", "kernel")``."""
    return tuple(key_name(entry) for entry in path)


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _is_leaf_dict(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and len(node) > 0
        and all(not isinstance(v, dict | list | tuple) for v in node.values())
    )


def _layer_of(root: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The path of the layer that holds the leaf at ``names``."""
    node = root
    for name in names[:-1]:
        node = node[name] if isinstance(node, dict) else node[int(name)]
    return names[:-1] if _is_leaf_dict(node) else names


def layer_props(params: Any) -> Any:
    """``layer_prop`` of every leaf, as a tree of Python floats shaped like ``params``.

    Args:
      params: a pytree of arrays built from dicts (flax variables, or a dict of
        several networks such as ``{"actor": ..., "critic": ...}``).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    layers = [_layer_of(params, path_names(path)) for path, _ in leaves]
    by_network: dict[tuple[str, ...], set[str]] = {}
    for layer in layers:
        by_network.setdefault(layer[:-1], set()).add(layer[-1] if layer else "")
    props = []
    for layer in layers:
        siblings = sorted(by_network[layer[:-1]], key=_natural_key)
        index = siblings.index(layer[-1] if layer else "")
        props.append(index / (len(siblings) - 1) if len(siblings) > 1 else 0.0)
    return jax.tree_util.tree_unflatten(treedef, props)


def prefix_mask(prefixes: Sequence[str]) -> Callable[[Any], Any]:
    """A mask function: True for leaves whose path starts with any of ``prefixes``.

    A prefix is a ``/``-separated path, e.g. ``"actor"`` or ``"actor/params/log_std"``.
    """
    wanted = [tuple(p.strip("/").split("/")) for p in prefixes]

    def mask_fn(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda path, _: any(path_names(path)[: len(w)] == w for w in wanted),
            params,
        )

    return mask_fn


#: OPEN's default noise mask: every leaf under the top-level key ``"actor"``.
actor_mask = prefix_mask(["actor"])


def resolve(tree_or_fn: Any, params: Any) -> Any:
    """A tree given directly, or the result of calling a function on ``params``."""
    return tree_or_fn(params) if callable(tree_or_fn) else tree_or_fn


def flatten(tree: Any) -> jax.Array:
    """All elements of a tree (or list of arrays), concatenated in leaf order."""
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def unflatten(flat: jax.Array, like: Any) -> Any:
    """Inverse of :func:`flatten`: ``flat`` cut into a tree shaped like ``like``
    (leaf shapes and dtypes from ``like``)."""
    leaves, treedef = jax.tree.flatten(like)
    out, start = [], 0
    for leaf in leaves:
        out.append(
            flat[start : start + leaf.size].reshape(leaf.shape).astype(leaf.dtype)
        )
        start += leaf.size
    return jax.tree.unflatten(treedef, out)


def per_element(values: Any, params: Any, dtype=np.float32) -> np.ndarray:
    """Broadcasts one value per leaf to every element, concatenated in leaf order.

    Used for trace-time constants (``layer_prop``, the noise mask): the result is a
    NumPy array of shape ``(num_params,)``.
    """
    leaves = jax.tree_util.tree_leaves(params)
    vals = jax.tree_util.tree_leaves(values)
    if len(vals) != len(leaves):
        raise ValueError(
            f"expected one value per parameter leaf ({len(leaves)} leaves), "
            f"got a tree with {len(vals)} leaves"
        )
    return np.concatenate(
        [
            np.full((np.size(p),), float(v), dtype)
            for p, v in zip(leaves, vals, strict=True)
        ]
    )
