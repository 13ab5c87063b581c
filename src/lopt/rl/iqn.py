"""Implicit quantile networks (Dabney et al. 2018), any optimizer.

IQN learns the quantile function Z_tau(s, a) of the return for any tau in [0, 1].
The network embeds the state, psi(s), and each sampled quantile tau with
``cos(pi * i * tau)`` for i = 0..n-1 (n = ``quantile_embedding_dim``) followed by a
ReLU dense layer, phi(tau); their elementwise product goes through a hidden
layer to one output per action. The loss is the quantile Huber loss (kappa = 1 by
default) between N online quantiles and N' target quantiles; actions maximise
the mean of K sampled quantiles.

``make_iqn(config, optimizer)`` is an :class:`~lopt.rl.algorithm.Algorithm`. The
loop is DQN's (:mod:`lopt.rl.dqn`): replay buffer, target network (it also
picks the next action of the target, from K quantiles), epsilon-greedy exploration
with a linear schedule, and the same ``training_prop``, ``batch_prop``,
``dormancy`` (from the online network on the batch: state layers, quantile
embedding, the merged layer and the head), noise and ``layer_prop`` (the
``num_hidden_layers`` state-embedding layers ``Dense_0, ...``, then the quantile
embedding, the merged layer and the head, in creation order).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lopt.optim.dormancy import mean_abs_activation
from lopt.optim.optimizer import Optimizer
from lopt.rl.algorithm import Algorithm, Transition
from lopt.rl.dqn import QFunctions, ReplayQConfig, discrete_env, make_replay_learner
from lopt.rl.networks import chosen


@dataclasses.dataclass(frozen=True)
class IQNConfig(ReplayQConfig):
    """IQN settings: DQN's loop, with Dabney et al.'s quantile sample sizes."""

    num_tau_samples: int = 64
    """N: quantiles of the online network per transition"""
    num_tau_prime_samples: int = 64
    """N': quantiles of the target network per transition"""
    num_quantile_samples: int = 32
    """K: quantiles averaged to choose actions"""
    quantile_embedding_dim: int = 64
    """n: cosine features of each tau"""
    kappa: float = 1.0
    """threshold of the Huber loss"""

    def __post_init__(self):
        super().__post_init__()
        self.require_counts(
            "num_tau_samples",
            "num_tau_prime_samples",
            "num_quantile_samples",
            "quantile_embedding_dim",
        )
        if self.kappa <= 0:
            raise ValueError(f"kappa must be positive, got {self.kappa}")


class ImplicitQuantileNetwork(nn.Module):
    """``(obs (B, D), taus (B, N)) -> (quantiles (B, N, A), activations)``."""

    num_actions: int
    hidden_size: int = 64
    num_hidden_layers: int = 1
    """dense layers of the state embedding"""
    embedding_dim: int = 64

    @nn.compact
    def __call__(self, obs: jax.Array, taus: jax.Array) -> tuple[jax.Array, dict]:
        def dense(features: int, gain: float = np.sqrt(2.0)) -> nn.Dense:
            return nn.Dense(
                features,
                kernel_init=nn.initializers.orthogonal(gain),
                bias_init=nn.initializers.zeros,
            )

        recorded = {}
        state = obs
        for _ in range(self.num_hidden_layers):
            layer = dense(self.hidden_size)
            state = nn.relu(layer(state))
            recorded[layer.name] = mean_abs_activation(state)
        # cos(pi * i * tau), i = 0..n-1: shape (B, N, n)
        features = jnp.cos(
            jnp.pi * jnp.arange(self.embedding_dim, dtype=jnp.float32) * taus[..., None]
        )
        layer = dense(self.hidden_size)
        phi = nn.relu(layer(features))
        recorded[layer.name] = mean_abs_activation(phi)
        layer = dense(self.hidden_size)
        h = nn.relu(layer(state[:, None, :] * phi))
        recorded[layer.name] = mean_abs_activation(h)
        head = dense(self.num_actions, gain=1.0)
        out = head(h)
        recorded[head.name] = mean_abs_activation(out)
        return out, {"params": recorded}


def huber(x: jax.Array, kappa: float) -> jax.Array:
    """``0.5 x^2`` for ``|x| <= kappa``, else ``kappa (|x| - 0.5 kappa)``."""
    abs_x = jnp.abs(x)
    return jnp.where(abs_x <= kappa, 0.5 * x**2, kappa * (abs_x - 0.5 * kappa))


def quantile_huber_loss(
    quantiles: jax.Array, taus: jax.Array, targets: jax.Array, kappa: float
) -> jax.Array:
    """Dabney et al.'s loss of one transition (their Eq. 3).

    ``sum_i mean_j |tau_i - 1{delta_ij < 0}| * huber(delta_ij) / kappa`` with
    ``delta_ij = targets_j - quantiles_i``.

    Args:
      quantiles: shape ``(N,)``, the online network's values at ``taus``.
      taus: shape ``(N,)``.
      targets: shape ``(N',)``, treated as constants.
    """
    delta = jax.lax.stop_gradient(targets)[None, :] - quantiles[:, None]
    weight = jnp.abs(taus[:, None] - (delta < 0).astype(jnp.float32))
    return jnp.sum(jnp.mean(weight * huber(delta, kappa) / kappa, axis=1))


def make_iqn(
    config: IQNConfig, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """IQN for ``config`` with ``optimizer``; see the module docstring."""
    env, env_params = env or discrete_env(config)
    network = ImplicitQuantileNetwork(
        env.num_actions(env_params),
        config.hidden_size,
        config.num_hidden_layers,
        config.quantile_embedding_dim,
    )

    def init(key, dummy_obs):
        return network.init(key, dummy_obs, jnp.zeros((1, 1)))

    def mean_values(params, obs, key):
        """Q(s, .) as the mean of K sampled quantiles: shape (B, A)."""
        taus = jax.random.uniform(key, (obs.shape[0], config.num_quantile_samples))
        quantiles, _ = network.apply(params, obs, taus)
        return jnp.mean(quantiles, axis=1)

    def loss(params, target_params, batch: Transition, key):
        key_online, key_target, key_action = jax.random.split(key, 3)
        size = batch.obs.shape[0]
        taus = jax.random.uniform(key_online, (size, config.num_tau_samples))
        quantiles, activations = network.apply(params, batch.obs, taus)
        quantiles = chosen(quantiles, batch.action)  # (B, N)
        next_action = jnp.argmax(
            mean_values(target_params, batch.next_obs, key_action), axis=-1
        )
        target_taus = jax.random.uniform(
            key_target, (size, config.num_tau_prime_samples)
        )
        next_quantiles, _ = network.apply(target_params, batch.next_obs, target_taus)
        not_done = 1.0 - batch.done.astype(jnp.float32)
        targets = batch.reward[:, None] + config.gamma * not_done[:, None] * chosen(
            next_quantiles, next_action
        )
        per_sample = jax.vmap(quantile_huber_loss, in_axes=(0, 0, 0, None))(
            quantiles, taus, targets, config.kappa
        )
        return jnp.mean(per_sample), activations

    q = QFunctions(init=init, act_values=mean_values, loss=loss)
    return make_replay_learner(config, optimizer, q, (env, env_params))
