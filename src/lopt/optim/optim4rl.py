"""Optim4RL (Lan et al., "Learning to Optimize for Reinforcement Learning", RLC 2024)
as an optax transformation.

Its published (RLC) form, per scalar parameter with gradient g:

1. optionally, g is clipped element-wise to ``[-grad_clip, grad_clip]``;
2. a GRU cell (tanh candidate, zero initial state) reads g and a second one reads
   g**2, each followed by a linear head with one output: o1 and o2;
3. ``m = sign(g) * exp(o1)`` (the sign is the gradient's, the magnitude learned)
   and ``v = exp(o2)`` (a learned positive second moment);
4. the update is ``-learning_rate * m / sqrt(v + eps)``, Adam's form with both
   moments produced by the GRUs.

There is no mean shift, no noise and no RL feature; the extra arguments the RL
loop passes (``key``, ``training_prop``, ...) are ignored. All-zero
meta-parameters give ``o1 = o2 = 0``, so the update is
``-learning_rate * sign(g) / sqrt(1 + eps)``: sign descent, a usable starting
point for evolution strategies.

The meta-parameter tree is the one the authors' flax module builds
(``sail-sg/optim4rl``, ``components/optim.py``, class ``Optim4RL``, with
``mlp_dims=()``)::

    {"params": {"mlp1": {"layers_0": {"bias": (1,), "kernel": (G, 1)}},
                "mlp2": {...},
                "rnn1": {"hn": {"bias", "kernel"}, "hr": {"kernel"}, "hz": {"kernel"},
                         "in": {"bias", "kernel": (1, G)}, "ir": {...}, "iz": {...}},
                "rnn2": {...}}}

With G = 8 that is 2 * (248 + 9) = 514 values. The authors meta-trained it with
meta-gradients; OPEN's comparison (and lopt) trains it with ES.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from lopt import validation
from lopt.optim import meta_layout, tree_paths
from lopt.optim.network import MetaParams, gru_cell


@dataclasses.dataclass(frozen=True)
class Optim4RLConfig:
    """Architecture and fixed hyperparameters of an Optim4RL optimizer."""

    cell_features: int = 8
    """width of each of the two GRU cells (the paper's 8)"""
    learning_rate: float = 1e-3
    """scale of every update (the authors meta-trained with 1e-3 to 3e-3)"""
    eps: float = 1e-8
    """added to v = exp(o2) under the square root"""
    grad_clip: float = 0.0
    """element-wise gradient clip before the GRUs; 0 turns it off (the authors'
    gridworld configs use 1, which never binds on gradients clipped to global norm
    0.5)"""

    def __post_init__(self):
        validation.check("cell_features", self.cell_features, validation.COUNT)
        validation.check("learning_rate", self.learning_rate, validation.LEARNING_RATE)
        validation.check("eps", self.eps, validation.FLOOR)
        validation.check("grad_clip", self.grad_clip, validation.FLOOR)

    @property
    def variant(self) -> str:
        return "optim4rl"

    @property
    def num_meta_params(self) -> int:
        return meta_layout.size(init_meta_params, self)


class Optim4RLState(NamedTuple):
    """State of :func:`optim4rl_optimizer`."""

    carry: jax.Array  # shape=(2, cell_features, num_params): GRU states (g, g**2)
    count: jax.Array  # shape=(), int32: updates applied so far


def init_meta_params(
    key: jax.Array, config: Optim4RLConfig = Optim4RLConfig()
) -> MetaParams:
    """Meta-parameters with flax's default initialisers (ES starts from zeros)."""
    cell = nn.GRUCell(features=config.cell_features)
    head = nn.Sequential([nn.Dense(1)])
    keys = jax.random.split(key, 4)
    x = jnp.zeros((1, 1))
    carry = jnp.zeros((1, config.cell_features))
    return {
        "params": {
            "mlp1": head.init(keys[0], carry)["params"],
            "mlp2": head.init(keys[1], carry)["params"],
            "rnn1": cell.init(keys[2], carry, x)["params"],
            "rnn2": cell.init(keys[3], carry, x)["params"],
        }
    }


def zeros_meta_params(config: Optim4RLConfig = Optim4RLConfig()) -> MetaParams:
    """All-zero meta-parameters: ES's starting point (sign descent)."""
    return meta_layout.zeros(init_meta_params, config)


def check_meta_params(meta_params: MetaParams, config: Optim4RLConfig) -> None:
    """Raises ``ValueError`` if the tree does not have ``config``'s layout."""
    meta_layout.check(meta_params, init_meta_params, config)


def unravel_meta_params(flat: Any, config: Optim4RLConfig) -> MetaParams:
    """Meta-parameter tree from a flat vector in jax pytree order."""
    template = zeros_meta_params(config)
    size = ravel_pytree(template)[0].size
    if flat.shape != (size,):
        raise ValueError(
            f"expected a flat vector of {size} values for {config}, got shape "
            f"{tuple(flat.shape)}"
        )
    return ravel_pytree(template)[1](jnp.asarray(flat, jnp.float32))


def _head(layer: dict, h: jax.Array) -> jax.Array:
    """flax ``Dense(1)`` on feature-major ``h`` of shape ``(G, n)``: shape ``(n,)``."""
    return jnp.einsum("io,in->n", layer["kernel"], h) + layer["bias"][0]


def apply_optim4rl(
    meta_params: MetaParams, config: Optim4RLConfig, carry: jax.Array, grad: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One step of Optim4RL on n parameters.

    Args:
      meta_params: the meta-parameter tree.
      config: the fixed hyperparameters.
      carry: shape ``(2, cell_features, n)``: the two GRUs' states.
      grad: shape ``(n,)``: the gradients.

    Returns:
      ``(new_carry, update)``, update of shape ``(n,)``: the step to add to the
      parameters, ``-learning_rate * sign(g) * exp(o1) / sqrt(exp(o2) + eps)``.
    """
    p = meta_params["params"]
    if config.grad_clip > 0:
        grad = jnp.clip(grad, -config.grad_clip, config.grad_clip)
    h1, _ = gru_cell(p["rnn1"], carry[0], grad[None, :])
    h2, _ = gru_cell(p["rnn2"], carry[1], jnp.square(grad)[None, :])
    m = jnp.sign(grad) * jnp.exp(_head(p["mlp1"]["layers_0"], h1))
    v = jnp.exp(_head(p["mlp2"]["layers_0"], h2))
    update = -config.learning_rate * m * jax.lax.rsqrt(v + config.eps)
    return jnp.stack([h1, h2]), update


def optim4rl_optimizer(
    meta_params: MetaParams, config: Optim4RLConfig = Optim4RLConfig()
) -> optax.GradientTransformationExtraArgs:
    """Optim4RL as an optax transformation.

    Args:
      meta_params: a tree with ``config``'s layout (may be a tracer, so the
        transformation can be built inside ``jax.vmap`` over a population).
      config: the architecture and fixed hyperparameters.

    Returns:
      A transformation whose ``update(grads, state, params=None, **extra_args)``
      ignores every extra argument.
    """
    check_meta_params(meta_params, config)

    def init_fn(params: Any) -> Optim4RLState:
        num_params = sum(jnp.size(p) for p in jax.tree.leaves(params))
        return Optim4RLState(
            carry=jnp.zeros((2, config.cell_features, num_params), jnp.float32),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(
        updates: Any, state: Optim4RLState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, Optim4RLState]:
        del params, extra_args
        grad = tree_paths.flatten(updates).astype(jnp.float32)
        carry, step = apply_optim4rl(meta_params, config, state.carry, grad)
        new_state = Optim4RLState(carry=carry, count=state.count + 1)
        return tree_paths.unflatten(step, updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
