"""The agents' networks, each recording its activations for dormancy: MLPs (OPEN
§3.1's separate actor and critic, Q-networks, PQN's layer-normalised one), a
Gaussian actor for continuous actions, and the Nature CNN for Atari.

Each ``__call__`` returns ``(output, activations)``. ``activations`` mirrors the
variables tree, ``{"params": {layer_name: mean |h| over the batch, shape (N,)}}``,
so :func:`lopt.optim.dormancy.dormancy_tree` maps it onto the parameters by path:
hidden layers record after the activation function, final layers their raw output.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lopt.optim.dormancy import mean_abs_activation

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
}


class NormedDense(nn.Module):
    """A dense layer followed by layer normalisation, as one layer of parameters.

    Parameters ``kernel`` ``(in, N)``, ``bias``, ``scale`` and ``offset`` ``(N,)``
    sit in one dict, so the layer counts once for ``layer_prop`` and every tensor
    gets the dormancy of the N neurons it feeds.
    """

    features: int
    epsilon: float = 1e-6  # flax.linen.LayerNorm's

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.initializers.orthogonal(np.sqrt(2.0)),
            (x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        scale = self.param("scale", nn.initializers.ones, (self.features,))
        offset = self.param("offset", nn.initializers.zeros, (self.features,))
        y = x @ kernel + bias
        mean = y.mean(axis=-1, keepdims=True)
        var = jnp.square(y - mean).mean(axis=-1, keepdims=True)
        return (y - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + offset


def _layers(
    x: jax.Array,
    out_size: int,
    hidden_size: int,
    activation: str,
    num_hidden_layers: int,
    out_gain: float,
    layer_norm: bool = False,
) -> tuple[jax.Array, dict]:
    """Dense layers created in the calling module (inside its ``nn.compact``).

    With ``layer_norm`` each hidden layer is a :class:`NormedDense` (normalised
    before the activation, as PQN's network), named ``Dense_0, Dense_1, ...`` like
    plain layers so ``layer_prop`` orders them by depth.
    """
    act = ACTIVATIONS[activation]
    recorded = {}
    h = x
    for i in range(num_hidden_layers):
        if layer_norm:
            layer = NormedDense(hidden_size, name=f"Dense_{i}")
        else:
            layer = nn.Dense(
                hidden_size,
                kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                bias_init=nn.initializers.zeros,
            )
        h = act(layer(h))
        recorded[layer.name] = mean_abs_activation(h)
    head = nn.Dense(
        out_size,
        kernel_init=nn.initializers.orthogonal(out_gain),
        bias_init=nn.initializers.zeros,
        # Named explicitly beside explicitly named hidden layers (flax numbers
        # automatic names per class, which would clash with them).
        name=f"Dense_{num_hidden_layers}" if layer_norm else None,
    )
    out = head(h)
    recorded[head.name] = mean_abs_activation(out)
    return out, recorded


class MLP(nn.Module):
    """``num_hidden_layers`` x (Dense(H) -> act), then Dense(out); orthogonal init (gain
    sqrt 2 for hidden layers, ``out_gain`` for the last), zero biases."""

    out_size: int
    hidden_size: int = 64
    activation: str = "relu"
    num_hidden_layers: int = 2
    out_gain: float = 1.0
    layer_norm: bool = False
    """hidden layers as :class:`NormedDense` (PQN's Q-network)"""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        out, recorded = _layers(
            x,
            self.out_size,
            self.hidden_size,
            self.activation,
            self.num_hidden_layers,
            self.out_gain,
            self.layer_norm,
        )
        return out, {"params": recorded}


class GaussianActor(nn.Module):
    """A diagonal Gaussian policy: the MLP gives the mean, ``log_std`` is a free
    parameter of shape ``(action_size,)`` starting at 0 (OPEN §3.1, Ant).

    Returns ``((mean, log_std), activations)``; ``log_std`` sits beside the Dense
    layers, so it is the actor's last layer for ``layer_prop``.
    """

    action_size: int
    hidden_size: int = 64
    activation: str = "tanh"
    num_hidden_layers: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], dict]:
        mean, recorded = _layers(
            x,
            self.action_size,
            self.hidden_size,
            self.activation,
            self.num_hidden_layers,
            out_gain=0.01,
        )
        log_std = self.param(
            "log_std", nn.initializers.zeros, (self.action_size,), jnp.float32
        )
        return (mean, jnp.broadcast_to(log_std, mean.shape)), {"params": recorded}


class NatureCNN(nn.Module):
    """Mnih et al. (2015)'s Atari network on pixels ``(..., 84, 84, C)`` in
    [0, 255]: Conv(32, 8x8, stride 4) -> Conv(64, 4x4, 2) -> Conv(64, 3x3, 1) ->
    Dense(512), ReLU after each, then Dense(out); orthogonal init as :class:`MLP`.
    Records every layer's activations (per channel for convolutions)."""

    out_size: int
    out_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        init = nn.initializers.orthogonal(np.sqrt(2.0))
        recorded = {}
        h = x.astype(jnp.float32) / 255.0
        for features, size, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            conv = nn.Conv(
                features, (size, size), (stride, stride), "VALID", kernel_init=init
            )
            h = nn.relu(conv(h))
            recorded[conv.name] = mean_abs_activation(h)
        h = h.reshape(*h.shape[:-3], -1)
        out, dense = _layers(h, self.out_size, 512, "relu", 1, self.out_gain)
        return out, {"params": {**recorded, **dense}}


def chosen(values: jax.Array, actions: jax.Array) -> jax.Array:
    """``values[..., a]`` per row: ``(B, ..., A)`` and ``(B,)`` -> ``(B, ...)``."""
    index = actions.reshape(actions.shape + (1,) * (values.ndim - actions.ndim))
    return jnp.take_along_axis(values, index, axis=-1)[..., 0]


def discrete_actor(
    num_actions: int, hidden_size: int, activation: str, num_hidden_layers: int = 2
) -> MLP:
    """Actor producing categorical logits; output gain 0.01."""
    return MLP(num_actions, hidden_size, activation, num_hidden_layers, out_gain=0.01)


def critic(hidden_size: int, activation: str, num_hidden_layers: int = 2) -> MLP:
    """Critic producing one value per observation (squeezed by the caller)."""
    return MLP(1, hidden_size, activation, num_hidden_layers, out_gain=1.0)
