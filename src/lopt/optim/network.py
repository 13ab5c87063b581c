"""OPEN's per-parameter network: a recurrent cell followed by an MLP (§2.4, §2.7).

The meta-parameter tree is the one the paper's code built with flax, so a released
flat vector loads with one ``ravel_pytree`` unravel::

    {"gru_params": {"params": {"hn": {"bias", "kernel"}, "hr": {"kernel"},
                               "hz": {"kernel"}, "in": {...}, "ir": {...},
                               "iz": {...}}},
     "params": {"params": {"layers_0": Dense(H), "layers_1": LayerNorm,
                           "layers_3": Dense(H), "layers_4": LayerNorm,
                           "layers_6": Dense(3)}}}

``flax.linen.GRUCell`` and ``flax.linen.Sequential`` define that layout; the forward
pass below reads the same tree with fused matrices (one input and one hidden matmul
for all gates), which is what makes OPEN cheap enough to run on every parameter.
An LSTM cell (``flax.linen.LSTMCell``'s layout, under ``"lstm_params"``) may be chosen
for newly trained optimizers; the released files all use the GRU.

Variants for ablations and baselines (all meta-trained, none released), chosen by
:class:`OPENConfig` and recorded in a saved optimizer's sidecar:

- ``features``: the input groups read (:data:`~lopt.optim.features.FEATURE_GROUPS`).
  A removed group's rows are absent from the input kernels ``ir``, ``iz`` and
  ``in``, so each removed column costs ``3 * cell_features`` meta-parameters.
- ``noise=False``: the last layer has 2 outputs (m, e) and there is no noise term.
- ``separate_actor_critic``: two trees of the layout above, ``{"actor": ...,
  "critic": ...}``; the actor's leaves are updated with the first, the critic's
  with the second (OPEN §5.5, the Deep Sea study).
- :meth:`OPENConfig.no_features`: the No-Features baseline (OPEN §6), this
  network reading only the parameter, momentum and gradient groups, without
  noise. The 2024 paper does not say whether its No-Features had the recurrent
  cell; the authors' 2025 repository has an MLP on raw momenta instead. lopt keeps
  OPEN's architecture and feature conditioning, so the comparison with OPEN
  isolates its RL features and its noise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lopt.optim import meta_layout
from lopt.optim.features import (
    ALL_FEATURES,
    BASIC_FEATURES,
    FEATURE_GROUPS,
    feature_columns,
)

MetaParams = Any
LN_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class OPENConfig:
    """Architecture of an OPEN optimizer.

    The defaults are the paper's small optimizer (1,211 meta-parameters);
    :meth:`large` is the multi-task one (3,571).
    """

    cell_features: int = 8
    """width G of the recurrent cell (the paper's GRU size)"""
    hidden_size: int = 16
    """width H of the two MLP layers"""
    cell: Literal["gru", "lstm"] = "gru"
    """recurrent cell; the released optimizers use the GRU"""
    step_mult: float = 1e-3
    """alpha_1 = alpha_3: scale of the deterministic and stochastic update"""
    exp_mult: float = 1e-3
    """alpha_2: scale inside the exponential of the update magnitude"""
    features: tuple[str, ...] = ALL_FEATURES
    """input feature groups the network reads (all: OPEN); see
    lopt.optim.features.FEATURE_GROUPS. Kept in the 19-feature order."""
    noise: bool = True
    """learned stochasticity: a third output delta scales Gaussian noise on the actor"""
    separate_actor_critic: bool = False
    """two meta-parameter sets, one for the actor's leaves and one for the critic's"""

    def __post_init__(self):
        feature_columns(tuple(self.features))  # raises on an unknown group
        if not self.features:
            raise ValueError("an OPEN optimizer needs at least one feature group")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"feature groups repeat: {list(self.features)}")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"unknown cell {self.cell!r}; choose from gru, lstm")
        # One canonical order (and a tuple, whatever JSON gave), so that equal
        # variants compare equal.
        canonical = tuple(g for g in FEATURE_GROUPS if g in self.features)
        object.__setattr__(self, "features", canonical)

    @classmethod
    def small(cls, **kwargs) -> OPENConfig:
        return cls(cell_features=8, hidden_size=16, **kwargs)

    @classmethod
    def large(cls, **kwargs) -> OPENConfig:
        return cls(cell_features=16, hidden_size=32, **kwargs)

    @classmethod
    def no_features(cls, **kwargs) -> OPENConfig:
        """The No-Features baseline: parameter, momenta and gradient; no noise."""
        return cls(features=BASIC_FEATURES, noise=False, **kwargs)

    @property
    def input_columns(self) -> tuple[int, ...]:
        """Rows of the 19-feature input (FEATURE_NAMES order) the network reads."""
        return feature_columns(self.features)

    @property
    def num_inputs(self) -> int:
        return len(self.input_columns)

    @property
    def num_outputs(self) -> int:
        """3 (m, e, delta) with learned noise, else 2 (m, e)."""
        return 3 if self.noise else 2

    @property
    def variant(self) -> str:
        """A short name: ``open``, ``no-features``, or ``open`` with what differs,
        e.g. ``open-no-dormancy`` or ``open-no-noise-separate-actor-critic``."""
        removed = [g for g in ALL_FEATURES if g not in self.features]
        shared = not self.separate_actor_critic
        if self.features == BASIC_FEATURES and not self.noise and shared:
            return "no-features"
        parts = [f"no-{g}" for g in removed]
        parts += [] if self.noise else ["no-noise"]
        parts += [] if shared else ["separate-actor-critic"]
        return "-".join(["open", *parts])

    @property
    def carry_size(self) -> int:
        """Floats of recurrent state per agent parameter (LSTM keeps c and h)."""
        return self.cell_features * (2 if self.cell == "lstm" else 1)

    @property
    def cell_key(self) -> str:
        return f"{self.cell}_params"

    @property
    def num_meta_params(self) -> int:
        return _num_meta_params(self)


def _flax_modules(config: OPENConfig) -> tuple[nn.Module, nn.Module]:
    cell_cls = nn.GRUCell if config.cell == "gru" else nn.LSTMCell
    cell = cell_cls(features=config.cell_features)
    mlp = nn.Sequential(
        [
            nn.Dense(config.hidden_size),
            nn.LayerNorm(epsilon=LN_EPS),
            nn.relu,
            nn.Dense(config.hidden_size),
            nn.LayerNorm(epsilon=LN_EPS),
            nn.relu,
            nn.Dense(config.num_outputs),
        ]
    )
    return cell, mlp


def init_meta_params(key: jax.Array, config: OPENConfig = OPENConfig()) -> MetaParams:
    """Meta-parameters with flax's default initialisers (not used by ES, which
    starts from zeros, but handy for tests and for gradient-based meta-learning)."""
    if config.separate_actor_critic:
        shared = dataclasses.replace(config, separate_actor_critic=False)
        key_actor, key_critic = jax.random.split(key)
        return {
            "actor": init_meta_params(key_actor, shared),
            "critic": init_meta_params(key_critic, shared),
        }
    cell, mlp = _flax_modules(config)
    key_cell, key_mlp = jax.random.split(key)
    x = jnp.zeros((1, config.num_inputs))
    carry = cell.initialize_carry(key_cell, x.shape)
    h = jnp.zeros((1, config.cell_features))
    return {
        config.cell_key: cell.init(key_cell, carry, x),
        "params": mlp.init(key_mlp, h),
    }


def zeros_meta_params(config: OPENConfig = OPENConfig()) -> MetaParams:
    """All-zero meta-parameters: ES's starting point; they give a zero update."""
    return meta_layout.zeros(init_meta_params, config)


def check_meta_params(meta_params: MetaParams, config: OPENConfig) -> None:
    """Raises ``ValueError`` if the tree does not have ``config``'s layout."""
    meta_layout.check(meta_params, init_meta_params, config)


def unravel_meta_params(flat: np.ndarray | jax.Array, config: OPENConfig) -> MetaParams:
    """Meta-parameter tree from a flat vector in the released files' order."""
    template = zeros_meta_params(config)
    size = ravel_pytree(template)[0].size
    if flat.shape != (size,):
        raise ValueError(
            f"expected a flat vector of {size} values for {config}, got shape "
            f"{tuple(flat.shape)}"
        )
    return ravel_pytree(template)[1](jnp.asarray(flat, jnp.float32))


def ravel_meta_params(meta_params: MetaParams) -> jax.Array:
    """Flat float32 vector in the released files' order (jax pytree order)."""
    return ravel_pytree(meta_params)[0].astype(jnp.float32)


def _num_meta_params(config: OPENConfig) -> int:
    return meta_layout.size(init_meta_params, config)


# FORWARD PASS ---------------------------------------------------------------
# Arrays are feature-major, (features, n): elementwise work and the normalising
# reductions then run along the long parameter axis, which is several times faster
# on CPU than the (n, features) layout flax uses.


def _sigmoid(x: jax.Array) -> jax.Array:
    # Same function as jax.nn.sigmoid; tanh is faster than XLA's logistic on CPU.
    return 0.5 * jnp.tanh(0.5 * x) + 0.5


def _matmul(kernel: jax.Array, x: jax.Array) -> jax.Array:
    """``kernel.T @ x`` for a flax kernel ``(in, out)`` and ``x`` of ``(in, n)``."""
    return jnp.einsum("io,in->on", kernel, x)


def gru_kernels(p: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A flax GRUCell's gates fused: input kernel ``(in, 3G)`` and bias ``(3G,)``,
    hidden kernel ``(G, 3G)``; columns in r, z, n order."""
    w_i = jnp.concatenate([p["ir"]["kernel"], p["iz"]["kernel"], p["in"]["kernel"]], 1)
    b_i = jnp.concatenate([p["ir"]["bias"], p["iz"]["bias"], p["in"]["bias"]])
    w_h = jnp.concatenate([p["hr"]["kernel"], p["hz"]["kernel"], p["hn"]["kernel"]], 1)
    return w_i, b_i, w_h


def gru_cell(p: dict, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """flax GRUCell: no bias on hr/hz, a bias on hn inside the reset gate."""
    w_i, b_i, w_h = gru_kernels(p)
    gi = _matmul(w_i, x) + b_i[:, None]
    gh = _matmul(w_h, carry)
    g = carry.shape[0]
    r = _sigmoid(gi[:g] + gh[:g])
    z = _sigmoid(gi[g : 2 * g] + gh[g : 2 * g])
    n = jnp.tanh(gi[2 * g :] + r * (gh[2 * g :] + p["hn"]["bias"][:, None]))
    h = (1.0 - z) * n + z * carry
    return h, h


def _lstm(p: dict, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """flax LSTMCell (carry = concat(c, h)): no bias on the input kernels."""
    g = carry.shape[0] // 2
    c, h = carry[:g], carry[g:]
    gates = ("i", "f", "g", "o")
    w_i = jnp.concatenate([p[f"i{k}"]["kernel"] for k in gates], 1)
    w_h = jnp.concatenate([p[f"h{k}"]["kernel"] for k in gates], 1)
    b_h = jnp.concatenate([p[f"h{k}"]["bias"] for k in gates])
    y = _matmul(w_i, x) + _matmul(w_h, h) + b_h[:, None]
    i, f = _sigmoid(y[:g]), _sigmoid(y[g : 2 * g])
    cand, o = jnp.tanh(y[2 * g : 3 * g]), _sigmoid(y[3 * g :])
    c = f * c + i * cand
    h = o * jnp.tanh(c)
    return jnp.concatenate([c, h], 0), h


def centred_dense(dense: dict) -> tuple[jax.Array, jax.Array]:
    """A Dense layer's kernel ``(in, out)`` and bias ``(out,)`` less their means
    over the outputs: the layer then gives its LayerNorm-centred output."""
    kernel = dense["kernel"] - jnp.mean(dense["kernel"], axis=1, keepdims=True)
    return kernel, dense["bias"] - jnp.mean(dense["bias"])


def _dense_layer_norm(dense: dict, norm: dict, x: jax.Array) -> jax.Array:
    """flax ``LayerNorm(Dense(x))`` over the features (axis 0).

    The mean over output units of ``W.T x + b`` is linear in x, so subtracting it
    is done on the weights: ``(W - mean_o W).T x + (b - mean b)`` is the centred
    output in one matmul. Its mean square is the variance, which flax computes as
    ``E[y^2] - E[y]^2``; the two agree up to float rounding.
    """
    kernel, bias = centred_dense(dense)
    y = _matmul(kernel, x) + bias[:, None]
    var = jnp.mean(jnp.square(y), axis=0, keepdims=True)
    return (
        y * (jax.lax.rsqrt(var + LN_EPS) * norm["scale"][:, None])
        + norm["bias"][:, None]
    )


def apply_network(
    meta_params: MetaParams, carry: jax.Array, inputs: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One step of the optimizer network on n parameters at once.

    Args:
      meta_params: one meta-parameter tree (of a shared-parameter config, or the
        actor's or critic's half of a separate one).
      carry: shape ``(carry_size, n)``: recurrent state of each parameter.
      inputs: shape ``(num_inputs, n)``: the features of each parameter (19
        for OPEN, fewer for an ablation).

    Returns:
      ``(new_carry, outputs)``, outputs of shape ``(num_outputs, n)``: rows m, e
      and, with noise, delta.
    """
    if "gru_params" in meta_params:
        carry, h = gru_cell(meta_params["gru_params"]["params"], carry, inputs)
    else:
        carry, h = _lstm(meta_params["lstm_params"]["params"], carry, inputs)
    mlp = meta_params["params"]["params"]
    h = jax.nn.relu(_dense_layer_norm(mlp["layers_0"], mlp["layers_1"], h))
    h = jax.nn.relu(_dense_layer_norm(mlp["layers_3"], mlp["layers_4"], h))
    head = mlp["layers_6"]
    return carry, _matmul(head["kernel"], h) + head["bias"][:, None]
