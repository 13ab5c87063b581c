"""One interface for every optimizer an RL loop can run.

An :class:`Optimizer` pairs a builder with default parameters. The parameters are
what may be vmapped or meta-learned: the meta-parameters of a learned optimizer, the
learning rate and betas of a hand-crafted one. The RL loop calls
``optimizer.build(params, num_steps)`` inside its jitted ``train`` and always passes
OPEN's extra arguments (``key``, ``training_prop``, ``batch_prop``, ``dormancy``)
and the scalar ``loss`` being minimised (VeLO's input); an optimizer ignores those
it does not use (take ``**extra_args``), hand-crafted ones ignore them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

from lopt.optim import tree_paths
from lopt.optim.network import OPENConfig
from lopt.optim.open_opt import open_optimizer
from lopt.optim.optim4rl import Optim4RLConfig, optim4rl_optimizer

Builder = Callable[[Any, int], optax.GradientTransformationExtraArgs]


@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer:
    """A family of optax transformations indexed by vmappable parameters."""

    name: str
    """short name used in run directories and plots, e.g. ``adam`` or ``open``"""
    build: Builder
    """``build(params, num_steps)``: the transformation for ``num_steps`` updates"""
    params: Any
    """default parameters: a pytree of arrays"""
    description: dict = dataclasses.field(default_factory=dict)
    """JSON-serialisable settings, written to ``config.json``"""
    learned: bool = False
    """whether ``params`` are meta-parameters (trained by ES)"""


def _learning_rate(lr: Any, anneal: bool, num_steps: int) -> Any:
    """A constant rate, or one annealed linearly to 0 over ``num_steps``."""
    return optax.linear_schedule(lr, 0.0, num_steps) if anneal else lr


def _handcrafted(
    name: str,
    make: Callable[..., optax.GradientTransformation],
    anneal: bool,
    **hyperparams: float,
) -> Optimizer:
    def build(params: dict, num_steps: int) -> optax.GradientTransformationExtraArgs:
        lr = _learning_rate(params["learning_rate"], anneal, num_steps)
        others = {k: v for k, v in params.items() if k != "learning_rate"}
        return optax.with_extra_args_support(make(lr, **others))

    defaults = {k: jnp.asarray(v, jnp.float32) for k, v in hyperparams.items()}
    return Optimizer(
        name=name,
        build=build,
        params=defaults,
        description={"name": name, "anneal": anneal, **hyperparams},
    )


def adam(
    learning_rate: float = 3e-4,
    b1: float = 0.9,
    b2: float = 0.999,
    anneal: bool = False,
) -> Optimizer:
    """Adam (optax.adam, eps 1e-8), optionally with linear annealing to 0."""
    return _handcrafted(
        "adam", optax.adam, anneal, learning_rate=learning_rate, b1=b1, b2=b2
    )


def rmsprop(
    learning_rate: float = 3e-4, decay: float = 0.99, anneal: bool = False
) -> Optimizer:
    """RMSprop (optax.rmsprop, eps 1e-8 inside the square root)."""
    return _handcrafted(
        "rmsprop", optax.rmsprop, anneal, learning_rate=learning_rate, decay=decay
    )


def lion(
    learning_rate: float = 3e-5,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 0.0,
    anneal: bool = False,
) -> Optimizer:
    """Lion (Chen et al. 2023), with optax's weight decay set to 0 by default."""
    return _handcrafted(
        "lion",
        optax.lion,
        anneal,
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        weight_decay=weight_decay,
    )


def sgd(learning_rate: float = 1e-2, anneal: bool = False) -> Optimizer:
    """Plain stochastic gradient descent."""
    return _handcrafted("sgd", optax.sgd, anneal, learning_rate=learning_rate)


def open_family(
    meta_params: Any,
    config: OPENConfig = OPENConfig(),
    *,
    noise_mask: Any = tree_paths.actor_mask,
    layer_props: Any = tree_paths.layer_props,
    actor_mask: Any = tree_paths.actor_mask,
    name: str = "open",
    track_noise: bool = False,
    implementation: str | None = None,
) -> Optimizer:
    """OPEN (or an ablation of it, as ``config`` says) with ``meta_params`` as its
    default (vmappable) parameters. ``implementation`` picks the code of the step
    (:mod:`lopt.optim.fused`; None: ``LOPT_OPEN_STEP``, else the fused kernel
    where it covers ``config``)."""

    def build(theta: Any, num_steps: int) -> optax.GradientTransformationExtraArgs:
        del num_steps  # OPEN's schedule comes from training_prop, not a step count
        return open_optimizer(
            theta,
            config,
            noise_mask=noise_mask,
            layer_props=layer_props,
            actor_mask=actor_mask,
            track_noise=track_noise,
            implementation=implementation,
        )

    return Optimizer(
        name=name,
        build=build,
        params=meta_params,
        description={"name": name, "variant": config.variant, **vars(config)},
        learned=True,
    )


def optim4rl_family(
    meta_params: Any, config: Optim4RLConfig = Optim4RLConfig(), *, name="optim4rl"
) -> Optimizer:
    """Optim4RL (Lan et al. 2024) with ``meta_params`` as its default parameters."""

    def build(theta: Any, num_steps: int) -> optax.GradientTransformationExtraArgs:
        del num_steps  # Optim4RL has no schedule
        return optim4rl_optimizer(theta, config)

    return Optimizer(
        name=name,
        build=build,
        params=meta_params,
        description={"name": name, "variant": config.variant, **vars(config)},
        learned=True,
    )


HANDCRAFTED = {"adam": adam, "rmsprop": rmsprop, "lion": lion, "sgd": sgd}
