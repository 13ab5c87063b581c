"""PPO with separate actor and critic, for any optimizer (OPEN §3).

``make_train(config, optimizer)`` returns ``train(key, optimizer_params)``: one pure
function for a whole run, to be jitted, and vmappable over ``key`` (seeds) and over
``optimizer_params`` (a population of meta-parameters, or learning rates)::

    train = jax.jit(jax.vmap(make_train(config, adam()), in_axes=(0, None)))
    final_state, metrics = train(jax.random.split(key, 4), adam().params)

Per minibatch the gradients of the total loss are clipped to global norm
``max_grad_norm`` separately for the actor and the critic, then passed to the
optimizer with OPEN's extra arguments: a fresh ``key``, ``training_prop``,
``batch_prop`` and the ``dormancy`` of the neurons on this minibatch; and the
minibatch's total ``loss`` (which VeLO reads).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.envs.registry import HostEnvironmentError, is_host, make_vec_env
from lopt.optim.diagnostics import SAMPLES, with_diagnostics
from lopt.optim.dormancy import dormancy_tree, dormant_fraction
from lopt.optim.family import Optimizer
from lopt.optim.tree_paths import flatten
from lopt.rl import networks, progress
from lopt.rl.distributions import CATEGORICAL, DIAGONAL_GAUSSIAN, Distribution
from lopt.rl.gae import compute_gae


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO settings; names follow PureJaxRL/OPEN, frames = environment steps."""

    env: str = "cartpole"
    """environment name or alias (see ``lopt.envs.registry``)"""
    total_timesteps: int = 100_000
    """environment steps summed over the parallel environments"""
    num_envs: int = 4
    num_steps: int = 128
    """rollout length per environment and update"""
    update_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    """global-norm clip, applied to actor and critic gradients separately"""
    hidden_size: int = 64
    num_hidden_layers: int = 2
    """hidden layers of the actor and of the critic"""
    activation: str = "relu"
    diagnostics: bool = False
    """also record how the optimizer's updates align with the gradient and its
    momenta, its learned noise, and sampled (gradient, update) pairs
    (:mod:`lopt.optim.diagnostics`); costs memory and time"""

    def __post_init__(self):
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one rollout "
                f"(num_envs * num_steps = {self.num_envs * self.num_steps})"
            )
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"the batch of {self.batch_size} samples does not split into "
                f"{self.num_minibatches} minibatches"
            )
        if self.activation not in networks.ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose from "
                f"{sorted(networks.ACTIVATIONS)}"
            )

    @property
    def num_updates(self) -> int:
        """Rollouts (PPO updates) in the run."""
        return self.total_timesteps // self.num_steps // self.num_envs

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def steps_per_update(self) -> int:
        """Optimizer steps per rollout."""
        return self.update_epochs * self.num_minibatches

    @property
    def num_optimizer_steps(self) -> int:
        return self.num_updates * self.steps_per_update

    @property
    def frames_per_update(self) -> int:
        return self.num_envs * self.num_steps


class RunnerState(NamedTuple):
    params: Any  # {"actor": flax variables, "critic": flax variables}
    opt_state: Any
    env_state: Any  # the batch's state (lopt.envs.registry.make_vec_env)
    obs: jax.Array  # shape=(num_envs, obs_dim)
    iteration: jax.Array  # shape=(), int32: optimizer steps done
    key: jax.Array
    # the environment's parameters for this run, where the environment samples a
    # level per run (the gridworld); None: the environment's fixed parameters
    level: Any = None


class Transition(NamedTuple):
    obs: jax.Array  # shape=(T, num_envs, obs_dim)
    action: jax.Array  # shape=(T, num_envs) or (T, num_envs, action_size)
    reward: jax.Array  # shape=(T, num_envs)
    done: jax.Array  # shape=(T, num_envs): terminated or truncated
    log_prob: jax.Array  # shape=(T, num_envs)
    value: jax.Array  # shape=(T, num_envs)
    returned_episode_return: jax.Array  # shape=(T, num_envs)


class Minibatch(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


class PPO(NamedTuple):
    """The pieces of a run; ``train`` is ``init`` followed by ``run`` to the end."""

    init: Any  # (key, opt_params) -> RunnerState
    run: Any  # (state, opt_params, num_updates) -> (state, metrics)
    train: Any  # (key, opt_params) -> (RunnerState, metrics)
    config: PPOConfig


def clip_per_network(grads: dict, max_norm: float) -> dict:
    """Clips each top-level subtree (actor, critic) to global norm ``max_norm``."""
    clip = optax.clip_by_global_norm(max_norm)
    return {name: clip.update(g, optax.EmptyState())[0] for name, g in grads.items()}


def make_tx(
    config: PPOConfig, optimizer: Optimizer, opt_params: Any
) -> optax.GradientTransformationExtraArgs:
    """The optimizer for a whole run of ``config``, with diagnostics if asked."""
    tx = optimizer.build(opt_params, config.num_optimizer_steps)
    return with_diagnostics(tx) if config.diagnostics else tx


class Agent(NamedTuple):
    """Separate actor and critic for one environment (OPEN §3.1)."""

    init: Any  # key -> {"actor": variables, "critic": variables}
    policy_value: Any  # (params, obs) -> (policy, value, activations)
    dist: Distribution  # of the actor's output ``policy``


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


class PPOUpdate(NamedTuple):
    """PPO's update from one rollout, whole (``learn``) or in its pieces.

    ``learn(tx, params, opt_state, iteration, key, traj, last_obs)`` returns
    ``(params, opt_state, iteration, metrics)``: GAE, then epochs of shuffled
    minibatches, one optimizer step each. ``traj`` is a :class:`Transition` with
    leaves ``(num_steps, num_envs, ...)``; ``last_obs`` the observations after it,
    ``(num_envs, *obs_shape)``. Metrics are means over the update's optimizer steps
    (diagnostic samples: the last step's).

    The pieces, for a caller that loops itself: ``samples(params, traj, last_obs)``
    gives the flat :class:`Minibatch` of the whole batch with advantages and
    targets; ``minibatches(key, samples)`` one epoch's shuffled split, leaves
    ``(num_minibatches, minibatch_size, ...)``; ``minibatch_step(tx, (params,
    opt_state, iteration, key), minibatch)`` one optimizer step and its metrics.
    """

    learn: Any
    samples: Any
    minibatches: Any
    minibatch_step: Any


def make_learn(config: PPOConfig, agent: Agent) -> PPOUpdate:
    """PPO's update for ``agent``; see :class:`PPOUpdate`."""
    policy_value, dist = agent.policy_value, agent.dist

    # LOSS --------------------------------------------------------------------
    def loss_fn(params, batch: Minibatch):
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

    # UPDATE NETWORKS ---------------------------------------------------------
    def minibatch_step(tx, carry, batch: Minibatch):
        params, opt_state, iteration, key = carry
        key, key_opt = jax.random.split(key)
        (total_loss, (losses, activations)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(params, batch)
        grads = clip_per_network(grads, config.max_grad_norm)
        updates, opt_state = tx.update(
            grads,
            opt_state,
            params,
            key=key_opt,
            training_prop=progress.training_prop(
                iteration,
                config.num_minibatches,
                config.update_epochs,
                config.num_updates,
            ),
            batch_prop=progress.batch_prop(
                iteration, config.num_minibatches, config.update_epochs
            ),
            dormancy=dormancy_tree(params, activations),
            loss=total_loss,
        )
        params = optax.apply_updates(params, updates)
        flat_updates = flatten(updates)
        metrics = {
            **losses,
            "dormant_fraction": dormant_fraction(activations),
            "update_magnitude": jnp.mean(jnp.abs(flat_updates)),
        }
        if config.diagnostics:
            metrics.update(opt_state.stats)
        return (params, opt_state, iteration + 1, key), metrics

    def minibatches(key, samples: Minibatch) -> Minibatch:
        perm = jax.random.permutation(key, config.batch_size)
        return jax.tree.map(
            lambda x: x[perm].reshape(config.num_minibatches, -1, *x.shape[1:]), samples
        )

    def epoch_step(tx, carry, samples: Minibatch):
        params, opt_state, iteration, key = carry
        key, key_perm = jax.random.split(key)
        carry, metrics = jax.lax.scan(
            lambda c, b: minibatch_step(tx, c, b),
            (params, opt_state, iteration, key),
            minibatches(key_perm, samples),
        )
        return carry, metrics

    def batch_samples(params, traj: Transition, last_obs) -> Minibatch:
        _, last_value, _ = policy_value(params, last_obs)
        advantages, targets = compute_gae(
            traj.reward,
            traj.value,
            traj.done,
            last_value,
            config.gamma,
            config.gae_lambda,
        )
        return jax.tree.map(
            lambda x: x.reshape(config.batch_size, *x.shape[2:]),
            Minibatch(
                traj.obs, traj.action, traj.log_prob, traj.value, advantages, targets
            ),
        )

    def learn(tx, params, opt_state, iteration, key, traj: Transition, last_obs):
        samples = batch_samples(params, traj, last_obs)
        (params, opt_state, iteration, _), step_metrics = jax.lax.scan(
            lambda c, _: epoch_step(tx, c, samples),
            (params, opt_state, iteration, key),
            None,
            config.update_epochs,
        )
        metrics = {
            k: v[-1, -1] if k in SAMPLES else jnp.mean(v, axis=(0, 1))
            for k, v in step_metrics.items()
        }
        return params, opt_state, iteration, metrics

    return PPOUpdate(learn, batch_samples, minibatches, minibatch_step)


def make_ppo(config: PPOConfig, optimizer: Optimizer) -> PPO:
    """Builds PPO for ``config`` with ``optimizer``; see the module docstring.

    Raises:
      HostEnvironmentError: for an Atari game (ALE runs on the host, outside JAX;
        :func:`lopt.rl.host.train_host` trains on it).
    """
    if is_host(config.env):
        raise HostEnvironmentError(
            f"{config.env} is emulated by ALE on the host, outside JAX: it trains "
            "with lopt train / lopt eval (lopt.rl.host.train_host), not inside a "
            "jitted or vmapped function such as meta-training"
        )
    env, env_params = make_vec_env(config.env, config.num_envs, config.gamma)
    agent = make_agent(config, env, env_params)
    policy_value, dist = agent.policy_value, agent.dist
    learn = make_learn(config, agent).learn
    samples_levels = hasattr(env, "sample_level")

    def _params(level):
        return env_params if level is None else level

    def build_tx(opt_params: Any) -> optax.GradientTransformationExtraArgs:
        return make_tx(config, optimizer, opt_params)

    # INIT --------------------------------------------------------------------
    def init(key: jax.Array, opt_params: Any) -> RunnerState:
        key, key_networks, key_env = jax.random.split(key, 3)
        params = agent.init(key_networks)
        tx = build_tx(opt_params)
        level = None
        if samples_levels:  # one level per run, shared by its environments
            level = env.sample_level(jax.random.fold_in(key_env, 1), env_params)
        obs, env_state = env.reset(key_env, _params(level))
        return RunnerState(
            params,
            tx.init(params),
            env_state,
            obs,
            jnp.zeros((), jnp.int32),
            key,
            level,
        )

    # COLLECT TRAJECTORIES ----------------------------------------------------
    def env_step(level, carry, _):
        params, env_state, obs, key = carry
        key, key_action, key_env = jax.random.split(key, 3)
        policy, value, _ = policy_value(params, obs)
        action = dist.sample(key_action, policy)
        next_obs, env_state, reward, terminated, truncated, info = env.step(
            key_env, env_state, action, _params(level)
        )
        transition = Transition(
            obs=obs,
            action=action,
            reward=reward.astype(jnp.float32),
            done=jnp.logical_or(terminated, truncated),
            log_prob=dist.log_prob(policy, action),
            value=value,
            returned_episode_return=info["returned_episode_return"],
        )
        return (params, env_state, next_obs, key), transition

    def update_step(state: RunnerState, opt_params: Any):
        tx = build_tx(opt_params)
        (params, env_state, obs, key), traj = jax.lax.scan(
            functools.partial(env_step, state.level),
            (state.params, state.env_state, state.obs, state.key),
            None,
            config.num_steps,
        )
        key, key_epochs = jax.random.split(key)
        params, opt_state, iteration, metrics = learn(
            tx, params, state.opt_state, state.iteration, key_epochs, traj, obs
        )
        metrics["return"] = jnp.mean(traj.returned_episode_return[-1])
        new_state = RunnerState(
            params, opt_state, env_state, obs, iteration, key, state.level
        )
        return new_state, metrics

    def run(state: RunnerState, opt_params: Any, num_updates: int):
        """``num_updates`` PPO updates from ``state``; metrics stacked per update."""
        return jax.lax.scan(
            lambda s, _: update_step(s, opt_params), state, None, num_updates
        )

    def train(key: jax.Array, opt_params: Any):
        """A whole run. Vmappable over ``key`` and ``opt_params``.

        Returns:
          ``(final_state, metrics)``; each metric has shape ``(num_updates,)``:
          ``return`` (mean over environments of the last completed episode's
          return at the end of each rollout, OPEN's fitness at the final update),
          ``dormant_fraction``, ``update_magnitude`` (mean |update| per element),
          ``actor_loss``, ``value_loss``, ``entropy``; with ``diagnostics`` also
          :data:`lopt.optim.diagnostics.STAT_NAMES` (``cos_momentum`` of shape
          ``(num_updates, 6)``, the samples ``(num_updates, sample_size)``, from
          each update's last optimizer step).
        """
        return run(init(key, opt_params), opt_params, config.num_updates)

    return PPO(init=init, run=run, train=train, config=config)


def make_train(config: PPOConfig, optimizer: Optimizer):
    """``train(key, optimizer_params) -> (final_state, metrics)``.

    See :func:`make_ppo`; this is its ``train``.
    """
    return make_ppo(config, optimizer).train
