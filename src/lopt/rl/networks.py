"""Separate actor and critic MLPs (OPEN §3.1) that record activations for dormancy.

Each ``__call__`` returns ``(output, activations)``. ``activations`` mirrors the
variables tree, ``{"params": {layer_name: mean |h| over the batch, shape (N,)}}``,
so :func:`lopt.optim.dormancy.dormancy_tree` maps it onto the parameters by path:
hidden layers record after the activation function, final layers their raw output.
The same MLP, with layer normalisation in its hidden layers, is PQN's Q-network.
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


class MLP(nn.Module):
    """Dense(H) -> act -> Dense(H) -> act -> Dense(out), orthogonal init, zero bias.

    With ``layer_norm`` each hidden layer is a :class:`NormedDense` (normalised
    before the activation, as PQN's network); the layers keep the names
    ``Dense_0, Dense_1, ...`` so ``layer_prop`` orders them by depth.
    """

    out_size: int
    hidden_size: int = 64
    activation: str = "relu"
    num_hidden: int = 2
    out_gain: float = 1.0
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        act = ACTIVATIONS[self.activation]
        recorded = {}
        h = x
        for i in range(self.num_hidden):
            if self.layer_norm:
                layer = NormedDense(self.hidden_size, name=f"Dense_{i}")
            else:
                layer = nn.Dense(
                    self.hidden_size,
                    kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                    bias_init=nn.initializers.zeros,
                )
            h = act(layer(h))
            recorded[layer.name] = mean_abs_activation(h)
        head = nn.Dense(
            self.out_size,
            kernel_init=nn.initializers.orthogonal(self.out_gain),
            bias_init=nn.initializers.zeros,
            # Named explicitly beside explicitly named hidden layers (flax numbers
            # automatic names per class, which would clash with them).
            name=f"Dense_{self.num_hidden}" if self.layer_norm else None,
        )
        out = head(h)
        recorded[head.name] = mean_abs_activation(out)
        return out, {"params": recorded}


def discrete_actor(num_actions: int, hidden_size: int, activation: str) -> MLP:
    """Actor producing categorical logits; output gain 0.01."""
    return MLP(num_actions, hidden_size, activation, out_gain=0.01)


def critic(hidden_size: int, activation: str) -> MLP:
    """Critic producing one value per observation (squeezed by the caller)."""
    return MLP(1, hidden_size, activation, out_gain=1.0)
