"""Separate actor and critic MLPs (OPEN §3.1) that record activations for dormancy.

Each ``__call__`` returns ``(output, activations)``. ``activations`` mirrors the
variables tree, ``{"params": {layer_name: mean |h| over the batch, shape (N,)}}``,
so :func:`lopt.optim.dormancy.dormancy_tree` maps it onto the parameters by path:
hidden layers record after the activation function, final layers their raw output.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import numpy as np

from lopt.optim.dormancy import mean_abs_activation

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
}


class MLP(nn.Module):
    """Dense(H) -> act -> Dense(H) -> act -> Dense(out), orthogonal init, zero bias."""

    out_size: int
    hidden_size: int = 64
    activation: str = "relu"
    num_hidden: int = 2
    out_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        act = ACTIVATIONS[self.activation]
        recorded = {}
        h = x
        for _ in range(self.num_hidden):
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
