"""PQN, parallelised Q-learning (Gallici et al. 2025), any optimizer.

No replay buffer and no target network: ``num_envs`` environments run
``num_steps`` epsilon-greedy steps with the current Q-network (a LayerNorm MLP),
Q(lambda) returns are computed over the rollout, and the network regresses
``0.5 * (Q(s, a) - G)^2`` for ``update_epochs`` epochs of ``num_minibatches``
shuffled minibatches, as PPO does. Epsilon decays linearly from ``start_e`` to
``end_e`` over the first ``exploration_fraction * total_timesteps`` frames.
Settings follow purejaxql (``pqn_gymnax.py``, ``pqn_minatar.py``), with an MLP in
place of its MinAtar CNN, and Adam in place of its RAdam.

``make_pqn(config, optimizer)`` is an :class:`~lopt.rl.algorithm.Algorithm`, as PPO
is. Metrics per update: ``return``, ``loss``, ``dormant_fraction``,
``update_magnitude`` (means over the update's gradient steps) and ``epsilon``.

OPEN's extra arguments are PPO's (:mod:`lopt.rl.progress`), with U rollouts, E
epochs and M minibatches:

- ``training_prop = floor(i / (M E)) / (U - 1)`` after i gradient steps: the
  index of the current rollout over U - 1;
- ``batch_prop = ((i // M) mod E) / (E - 1)``: the epoch within the rollout;
- ``dormancy``: from the Q-network's activations on the minibatch;
- noise: off by default (``noise_on``, :meth:`lopt.rl.dqn.QConfig.noise_mask`);
- ``layer_prop``: ``Dense_0`` (with its LayerNorm), ``Dense_1``, head.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt.optim.optimizer import Optimizer
from lopt.rl import networks
from lopt.rl.algorithm import Algorithm, TrainState, Transition
from lopt.rl.dqn import QConfig, discrete_env
from lopt.rl.exploration import epsilon_greedy
from lopt.rl.minibatches import MinibatchConfig, minibatch_epochs
from lopt.rl.optimizer_step import gradient_step, mean_over_steps


@dataclasses.dataclass(frozen=True)
class PQNConfig(QConfig, MinibatchConfig):
    """PQN settings; defaults are purejaxql's CartPole ones (``pqn_cartpole.yaml``)."""

    total_timesteps: int = 500_000
    num_envs: int = 32
    num_steps: int = 64
    num_minibatches: int = 16
    q_lambda: float = 0.95
    """lambda of the Q(lambda) returns"""
    end_e: float = 0.2
    exploration_fraction: float = 0.2
    reward_scale: float = 0.1
    """rewards are multiplied by this for learning (returns are logged raw)"""
    hidden_size: int = 256


def q_lambda_returns(
    rewards: jax.Array,
    dones: jax.Array,
    next_values: jax.Array,
    gamma: float,
    q_lambda: float,
) -> jax.Array:
    """Peng's Q(lambda) returns of a rollout (PQN's targets).

    ``G_t = r_t + gamma (1 - d_t) ((1 - lambda) V_{t+1} + lambda G_{t+1})``, with
    ``G_{T-1} = r_{T-1} + gamma (1 - d_{T-1}) V_T``, where ``V_{t+1}`` is
    ``max_a Q(s_{t+1}, a)``.

    Args:
      rewards, dones: shape ``(T, ...)``; ``dones[t]``: the episode ended at step
        t, which cuts the bootstrap and the recursion there.
      next_values: shape ``(T, ...)``: ``V_{t+1}``, the greedy value of the
        observation after step t.

    Returns:
      ``G``, shape ``(T, ...)``.
    """
    not_done = 1.0 - dones.astype(rewards.dtype)
    last = rewards[-1] + gamma * not_done[-1] * next_values[-1]

    def backward(following, inputs):
        reward, mask, value = inputs
        ret = reward + gamma * mask * ((1 - q_lambda) * value + q_lambda * following)
        return ret, ret

    _, earlier = jax.lax.scan(
        backward, last, (rewards[:-1], not_done[:-1], next_values[:-1]), reverse=True
    )
    return jnp.concatenate([earlier, last[None]], axis=0)


class Samples(NamedTuple):
    """One update's samples, flat: leaves ``(batch_size, ...)``."""

    obs: jax.Array
    action: jax.Array
    target: jax.Array


def make_pqn(
    config: PQNConfig, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """PQN for ``config`` with ``optimizer``; see the module docstring."""
    env, env_params = env or discrete_env(config)
    network = networks.MLP(
        env.num_actions(env_params),
        config.hidden_size,
        config.activation,
        num_hidden_layers=config.num_hidden_layers,
        layer_norm=True,
    )

    def init_agent(key, obs):
        return network.init(key, jnp.zeros((1, *obs.shape[1:]))), None

    # ACT -------------------------------------------------------------------------
    def act(state: TrainState, obs, key):
        q_values, _ = network.apply(state.params, obs)
        action = epsilon_greedy(key, q_values, config.epsilon(state.update))
        return action, {"value": jnp.max(q_values, axis=-1)}

    # LEARN -----------------------------------------------------------------------
    def loss_fn(params, batch: Samples):
        q_values, activations = network.apply(params, batch.obs)
        td = networks.chosen(q_values, batch.action) - batch.target
        loss = 0.5 * jnp.mean(jnp.square(td))
        return loss, ({"loss": loss}, activations)

    def minibatch_step(opt_params, carry, batch: Samples, key):
        tx = algorithm.build_tx(opt_params)
        return gradient_step(config, tx, lambda p: loss_fn(p, batch), carry, key)

    def learn(state: TrainState, traj: Transition, key):
        last_q, _ = network.apply(state.params, state.obs)
        values = traj.extras["value"]
        next_values = jnp.concatenate(
            [values[1:], jnp.max(last_q, axis=-1)[None]], axis=0
        )
        targets = q_lambda_returns(
            config.reward_scale * traj.reward,
            traj.done,
            next_values,
            config.gamma,
            config.q_lambda,
        )
        samples = jax.tree.map(
            lambda x: x.reshape(config.batch_size, *x.shape[2:]),
            Samples(traj.obs, traj.action, targets),
        )
        (params, opt_state, iteration), step_metrics = minibatch_epochs(
            functools.partial(minibatch_step, state.opt_params),
            (state.params, state.opt_state, state.iteration),
            samples,
            key,
            config.update_epochs,
            config.num_minibatches,
        )
        metrics = mean_over_steps(step_metrics, 2)
        metrics["epsilon"] = config.epsilon(state.update)
        state = state._replace(params=params, opt_state=opt_state, iteration=iteration)
        return state, metrics

    pieces = (init_agent, act, learn)
    algorithm = Algorithm(config, optimizer, env, env_params, *pieces)
    return algorithm
