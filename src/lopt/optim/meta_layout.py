"""The layout of a learned optimizer's meta-parameters, from its ``init`` alone.

OPEN (:mod:`lopt.optim.network`) and Optim4RL (:mod:`lopt.optim.optim4rl`) each
define ``init_meta_params(key, config)``; the shapes, the all-zero start of ES and
the layout check follow from it here, once for both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Init = Callable[..., Any]  # init_meta_params(key, config=...) -> tree of arrays


@functools.cache
def shapes(init: Init, config: Any) -> Any:
    """The tree of ``jax.ShapeDtypeStruct`` that ``init`` builds for ``config``."""
    return jax.eval_shape(functools.partial(init, config=config), jax.random.key(0))


def size(init: Init, config: Any) -> int:
    """Number of meta-parameters."""
    return sum(x.size for x in jax.tree.leaves(shapes(init, config)))


def zeros(init: Init, config: Any) -> Any:
    """All-zero meta-parameters of ``config``'s layout."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes(init, config))


def check(meta_params: Any, init: Init, config: Any) -> None:
    """Raises ``ValueError`` if ``meta_params`` does not have ``config``'s layout."""
    expected = jax.tree.map(lambda s: s.shape, shapes(init, config))
    found = jax.tree.map(jnp.shape, meta_params)
    if expected != found:
        raise ValueError(
            f"meta-parameters do not match {config}: expected leaves with shapes "
            f"{expected}, got {found}"
        )
