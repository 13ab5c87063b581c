"""One interface for every optimizer an RL loop can run.

An :class:`Optimizer` pairs a builder with default parameters, ``opt_params``:
what may be vmapped or meta-learned (the meta-parameters of a learned optimizer,
the learning rate and betas of a hand-crafted one). The RL loop calls
``optimizer.build(opt_params, num_steps)`` inside its jitted ``train`` and always
passes OPEN's extra arguments (``key``, ``training_prop``, ``batch_prop``,
``dormancy``) and the scalar ``loss`` being minimised (VeLO's input); an optimizer
ignores those it does not use (take ``**extra_args``), hand-crafted ones ignore
them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

Builder = Callable[[Any, int], optax.GradientTransformationExtraArgs]


@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer:
    """A family of optax transformations indexed by vmappable parameters."""

    name: str
    """short name used in run directories and plots, e.g. ``adam`` or ``open``"""
    build: Builder
    """``build(opt_params, num_steps)``: the transformation for ``num_steps``
    updates"""
    params: Any
    """default ``opt_params``: a pytree of arrays"""
    description: dict = dataclasses.field(default_factory=dict)
    """JSON-serialisable settings, written to ``config.json``"""
    learned: bool = False
    """whether ``params`` are meta-parameters (trained by ES)"""
