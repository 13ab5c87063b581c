"""PPO with separate actor and critic, for any optimizer (OPEN §3).

``make_ppo(config, optimizer)`` is an :class:`~lopt.rl.algorithm.Algorithm`:
``train(key, opt_params)`` is one pure function for a whole run, vmappable over
``key`` (seeds) and ``opt_params`` (a population of meta-parameters, or learning
rates)::

    ppo = make_ppo(config, adam())
    train = jax.jit(jax.vmap(ppo.train, in_axes=(0, None)))
    final_state, metrics = train(jax.random.split(key, 4), adam().params)

An update collects ``num_steps`` steps of ``num_envs`` environments, computes GAE,
then takes ``update_epochs`` epochs of ``num_minibatches`` shuffled minibatches,
one optimizer step each (:mod:`lopt.rl.optimizer_step`: gradients clipped per
network, OPEN's extra arguments, the minibatch's total loss for VeLO). Metrics per
update: ``return``, ``actor_loss``, ``value_loss``, ``entropy``,
``dormant_fraction``, ``update_magnitude`` (means over the update's steps) and
with ``diagnostics`` :data:`lopt.optim.diagnostics.STAT_NAMES` (``cos_momentum``
of shape ``(6,)``; the samples from the update's last step).

OPEN's extra arguments (:mod:`lopt.rl.progress`): ``training_prop`` is the
update's index over U - 1, ``batch_prop`` the epoch's over E - 1; dormancy comes
from the actor's and the critic's activations on the minibatch; the noise covers
the actor's leaves; ``layer_prop`` orders each network's layers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt.envs.registry import make_vec_env
from lopt.optim.optimizer import Optimizer
from lopt.rl import networks
from lopt.rl.algorithm import Algorithm, TrainState, Transition
from lopt.rl.distributions import CATEGORICAL, DIAGONAL_GAUSSIAN
from lopt.rl.gae import compute_gae
from lopt.rl.minibatches import (
    MinibatchConfig,
    minibatch_epochs,
    minibatch_epochs_stepwise,
    shuffled_minibatches,
)
from lopt.rl.optimizer_step import gradient_step, mean_over_steps


@dataclasses.dataclass(frozen=True)
class PPOConfig(MinibatchConfig):
    """PPO settings; names follow PureJaxRL/OPEN."""

    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5


class Samples(NamedTuple):
    """One update's samples, flat: leaves ``(batch_size, ...)``."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


class Agent(NamedTuple):
    """Separate actor and critic for one environment (OPEN §3.1)."""

    init: Any  # key -> {"actor": variables, "critic": variables}
    policy_value: Any  # (params, obs) -> (policy, value, activations)
    dist: Any  # of the actor's output ``policy`` (lopt.rl.distributions)


def make_agent(config: PPOConfig, env: Any, env_params: Any) -> Agent:
    """The actor and critic for ``env``: MLPs on flat observations, Nature CNNs on
    images ``(H, W, C)``; a categorical actor for discrete actions, a Gaussian one
    for continuous actions."""
    obs_shape = env.observation_shape(env_params)
    if env.continuous:
        action_size, dist = env.action_size(env_params), DIAGONAL_GAUSSIAN
    else:
        action_size, dist = env.num_actions(env_params), CATEGORICAL
    if len(obs_shape) == 3:
        actor = networks.NatureCNN(action_size, out_gain=0.01)
        critic = networks.NatureCNN(1, out_gain=1.0)
    else:
        layers = (config.hidden_size, config.activation, config.num_hidden_layers)
        if env.continuous:
            actor = networks.GaussianActor(action_size, *layers)
        else:
            actor = networks.discrete_actor(action_size, *layers)
        critic = networks.critic(*layers)

    def init(key: jax.Array) -> dict:
        dummy = jnp.zeros((1, *obs_shape))
        # One key for both networks, as in OPEN's code (§3.1): same-shaped hidden
        # layers of actor and critic start equal.
        return {"actor": actor.init(key, dummy), "critic": critic.init(key, dummy)}

    def policy_value(params, obs):
        policy, actor_acts = actor.apply(params["actor"], obs)
        value, critic_acts = critic.apply(params["critic"], obs)
        return policy, value[..., 0], {"actor": actor_acts, "critic": critic_acts}

    return Agent(init, policy_value, dist)


def make_ppo(
    config: PPOConfig, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """PPO for ``config`` with ``optimizer``; see the module docstring.

    Args:
      env: ``(batch of environments, params)``; default
        ``make_vec_env(config.env, config.num_envs, config.gamma)``.
    """
    env, env_params = env or make_vec_env(config.env, config.num_envs, config.gamma)
    agent = make_agent(config, env, env_params)
    policy_value, dist = agent.policy_value, agent.dist

    def init_agent(key, obs):
        del obs
        return agent.init(key), None

    # ACT -------------------------------------------------------------------------
    def act(state: TrainState, obs, key):
        policy, value, _ = policy_value(state.params, obs)
        action = dist.sample(key, policy)
        return action, {"log_prob": dist.log_prob(policy, action), "value": value}

    # LOSS ------------------------------------------------------------------------
    def loss_fn(params, batch: Samples):
        policy, value, activations = policy_value(params, batch.obs)
        value_clipped = batch.value + jnp.clip(
            value - batch.value, -config.clip_eps, config.clip_eps
        )
        value_loss = 0.5 * jnp.mean(
            jnp.maximum(
                jnp.square(value - batch.target),
                jnp.square(value_clipped - batch.target),
            )
        )
        ratio = jnp.exp(dist.log_prob(policy, batch.action) - batch.log_prob)
        adv = (batch.advantage - batch.advantage.mean()) / (
            batch.advantage.std() + 1e-8
        )
        actor_loss = -jnp.mean(
            jnp.minimum(
                ratio * adv,
                jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps) * adv,
            )
        )
        entropy = jnp.mean(dist.entropy(policy))
        total = actor_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        losses = {
            "actor_loss": actor_loss,
            "value_loss": value_loss,
            "entropy": entropy,
        }
        return total, (losses, activations)

    # LEARN -----------------------------------------------------------------------
    def minibatch_step(opt_params, carry, batch: Samples, key):
        tx = algorithm.build_tx(opt_params)
        return gradient_step(config, tx, lambda p: loss_fn(p, batch), carry, key)

    def samples(params, traj: Transition, last_obs) -> Samples:
        _, last_value, _ = policy_value(params, last_obs)
        advantages, targets = compute_gae(
            traj.reward,
            traj.extras["value"],
            traj.done,
            last_value,
            config.gamma,
            config.gae_lambda,
        )
        return jax.tree.map(
            lambda x: x.reshape(config.batch_size, *x.shape[2:]),
            Samples(
                traj.obs,
                traj.action,
                traj.extras["log_prob"],
                traj.extras["value"],
                advantages,
                targets,
            ),
        )

    def learned(state: TrainState, result) -> tuple[TrainState, dict]:
        (params, opt_state, iteration), step_metrics = result
        state = state._replace(params=params, opt_state=opt_state, iteration=iteration)
        return state, mean_over_steps(step_metrics, 2)

    shape = {
        "num_epochs": config.update_epochs,
        "num_minibatches": config.num_minibatches,
    }

    def learn(state: TrainState, traj: Transition, key):
        return learned(
            state,
            minibatch_epochs(
                functools.partial(minibatch_step, state.opt_params),
                (state.params, state.opt_state, state.iteration),
                samples(state.params, traj, state.obs),
                key,
                **shape,
            ),
        )

    # On the host backend, one jitted function per optimizer step: fused into one
    # update, XLA on a CPU picked convolution kernels ~30x slower for the CNN's
    # weight gradients (measured with jax 0.9.2: 8.4 s against 0.24 s for two
    # steps), and unrolling the scans did not help.
    step_jit, samples_jit = jax.jit(minibatch_step), jax.jit(samples)
    split_jit = jax.jit(
        functools.partial(shuffled_minibatches, num_minibatches=config.num_minibatches)
    )

    def host_learn(state: TrainState, traj: Transition, key):
        return learned(
            state,
            minibatch_epochs_stepwise(
                functools.partial(step_jit, state.opt_params),
                split_jit,
                (state.params, state.opt_state, state.iteration),
                samples_jit(state.params, traj, state.obs),
                key,
                **shape,
            ),
        )

    pieces = (init_agent, act, learn)
    algorithm = Algorithm(
        config, optimizer, env, env_params, *pieces, host_learn=host_learn
    )
    return algorithm
