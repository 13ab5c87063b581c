"""Hand-crafted optimizers as :class:`~lopt.optim.optimizer.Optimizer`\\ s: optax's
Adam, RMSprop, Lion and SGD, with their hyperparameters as the vmappable
``opt_params`` (so a grid of learning rates trains in one vmapped call) and
optional linear annealing of the learning rate to 0 over the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

from lopt import validation
from lopt.optim.optimizer import Optimizer

#: The valid range of each hand-crafted optimizer's hyperparameters.
HYPERPARAM_RANGES = {
    "learning_rate": validation.LEARNING_RATE,
    "b1": validation.BETA,
    "b2": validation.BETA,
    "decay": validation.BETA,
    "weight_decay": validation.FLOOR,
}


def _learning_rate(lr: Any, anneal: bool, num_steps: int) -> Any:
    """A constant rate, or one annealed linearly to 0 over ``num_steps``."""
    return optax.linear_schedule(lr, 0.0, num_steps) if anneal else lr


def _handcrafted(
    name: str,
    make: Callable[..., optax.GradientTransformation],
    anneal: bool,
    **hyperparams: float,
) -> Optimizer:
    def build(
        opt_params: dict, num_steps: int
    ) -> optax.GradientTransformationExtraArgs:
        lr = _learning_rate(opt_params["learning_rate"], anneal, num_steps)
        others = {k: v for k, v in opt_params.items() if k != "learning_rate"}
        return optax.with_extra_args_support(make(lr, **others))

    for key, value in hyperparams.items():
        validation.check(key, value, HYPERPARAM_RANGES[key])
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


HANDCRAFTED = {"adam": adam, "rmsprop": rmsprop, "lion": lion, "sgd": sgd}
