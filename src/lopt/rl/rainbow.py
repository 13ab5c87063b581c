"""Rainbow (Hessel et al. 2018), any optimizer: distributional C51 targets,
n-step returns, prioritised replay, dueling heads, noisy networks, double Q.

``make_rainbow(config, optimizer)`` is an :class:`~lopt.rl.algorithm.Algorithm`
with DQN's loop (:mod:`lopt.rl.dqn`: ``train_frequency`` steps of the batch of
environments per update, ``gradient_steps`` gradient steps once
``learning_starts`` frames are stored, a target network copied every
``target_update_interval`` frames, epsilon-greedy actions whose epsilon is 0 by
default because noisy layers explore). What it adds:

- the network gives a distribution over ``num_atoms`` returns ``z_i`` evenly
  spaced in ``[v_min, v_max]`` per action; with ``dueling`` a value stream and an
  advantage stream, ``logits(a) = value + adv(a) - mean_a adv(a)`` per atom; with
  ``noisy`` every dense layer is a factorised-Gaussian noisy layer (Fortunato et
  al. 2018; ``sigma0 / sqrt(fan_in)`` initial noise scale), drawing fresh noise
  each call;
- the buffer is flashbax's prioritised trajectory buffer, one row per
  environment, sampled as sequences of ``n_step + 1`` steps with probability
  proportional to ``priority ** priority_exponent``; new transitions get the
  highest priority seen; a sampled sequence's priority becomes its loss;
- targets: the n-step return ``G = sum_{k<n} gamma^k r_k prod_{j<k} (1 - d_j)``
  and discount ``gamma^n prod_{j<n} (1 - d_j)`` (an episode end inside the
  sequence stops both), the next action picked by the online network and valued
  by the target network (double Q, ``double``), the target distribution ``G +
  discount * z`` projected back onto the support (:func:`project`);
- the loss is the cross-entropy to the projected target, weighted by importance
  weights ``w = P^-beta / max_batch P^-beta`` (``beta = importance_exponent``;
  0.5 fixed, as Dopamine).

Episodes that end by truncation are treated as terminal, as DQN's. OPEN's extra
arguments are DQN's: ``training_prop = floor(i / G) / (U - 1)``, ``batch_prop =
(i mod G) / (G - 1)``; ``dormancy`` from the online network's activations on the
batch; ``layer_prop`` by depth (``Dense_0, ...``, then the ``advantage`` and
``value`` heads); OPEN's noise off unless ``noise_on`` (then over the whole
network, noisy layers' sigmas included). Metrics per update: ``return``,
``loss``, ``q`` (mean Q of the batch's actions), ``dormant_fraction``,
``update_magnitude`` and ``epsilon``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lopt.optim.dormancy import mean_abs_activation
from lopt.optim.optimizer import Optimizer
from lopt.rl.algorithm import Algorithm, TrainState, Transition
from lopt.rl.dqn import ReplayQConfig, ReplayState, discrete_env, finish_q_update
from lopt.rl.exploration import epsilon_greedy
from lopt.rl.networks import chosen
from lopt.rl.offpolicy import learn_steps
from lopt.rl.optimizer_step import gradient_step


@dataclasses.dataclass(frozen=True)
class RainbowConfig(ReplayQConfig):
    """Rainbow settings; defaults follow Revisiting Rainbow's full agent on
    MinAtar (Obando-Ceron & Castro 2021), on DQN's CartPole loop sizes."""

    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    n_step: int = 3
    priority_exponent: float = 0.5
    """alpha: sampling probability proportional to priority ** alpha"""
    importance_exponent: float = 0.5
    """beta of the importance weights (P ** -beta, over the batch's maximum)"""
    noisy: bool = True
    sigma0: float = 0.5
    """noisy layers' initial noise scale, times 1 / sqrt(fan_in)"""
    dueling: bool = True
    double: bool = True
    start_e: float = 0.0
    end_e: float = 0.0

    def __post_init__(self):
        self.require_counts("n_step")
        super().__post_init__()
        if self.num_atoms < 2:
            raise ValueError(f"num_atoms must be at least 2, got {self.num_atoms}")
        if not self.v_min < self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        for name in ("priority_exponent", "importance_exponent"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.buffer_size // self.num_envs < self.n_step + 1:
            raise ValueError("buffer_size must hold n_step + 1 steps per environment")
        if self.learning_starts < (self.n_step + 1) * self.num_envs:
            raise ValueError(
                f"learning_starts must be at least (n_step + 1) * num_envs = "
                f"{(self.n_step + 1) * self.num_envs} frames (one sequence per row)"
            )

    @property
    def support(self) -> np.ndarray:
        """The atoms ``z``, shape ``(num_atoms,)``."""
        return np.linspace(self.v_min, self.v_max, self.num_atoms, dtype=np.float32)


class NoisyDense(nn.Module):
    """A dense layer with factorised Gaussian noise (Fortunato et al. 2018):
    ``W = mu_W + sigma_W * outer(f(e_in), f(e_out))``, ``b = mu_b + sigma_b *
    f(e_out)``, ``f(x) = sign(x) sqrt(|x|)``, for standard normal noise ``e_in``
    ``(in,)`` and ``e_out`` ``(N,)`` given by the caller. ``mu ~ U(+-1/sqrt(in))``,
    ``sigma = sigma0 / sqrt(in)``. Parameters ``kernel_mu``, ``kernel_sigma``
    ``(in, N)``, ``bias_mu``, ``bias_sigma`` ``(N,)``: one layer."""

    features: int
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, e_in: jax.Array, e_out: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        bound = 1.0 / np.sqrt(fan_in)
        uniform = nn.initializers.uniform(2 * bound)

        def mu_init(key, shape):
            return uniform(key, shape) - bound

        sigma = nn.initializers.constant(self.sigma0 / np.sqrt(fan_in))
        kernel_mu = self.param("kernel_mu", mu_init, (fan_in, self.features))
        kernel_sigma = self.param("kernel_sigma", sigma, (fan_in, self.features))
        bias_mu = self.param("bias_mu", mu_init, (self.features,))
        bias_sigma = self.param("bias_sigma", sigma, (self.features,))
        e_in = jnp.sign(e_in) * jnp.sqrt(jnp.abs(e_in))
        e_out = jnp.sign(e_out) * jnp.sqrt(jnp.abs(e_out))
        kernel = kernel_mu + kernel_sigma * jnp.outer(e_in, e_out)
        return x @ kernel + bias_mu + bias_sigma * e_out


class RainbowNetwork(nn.Module):
    """``obs (B, D) -> (logits (B, A, num_atoms), activations)``; call with
    ``rngs={"noise": key}`` when ``noisy``. One normal draw per call feeds every
    noisy layer (a draw per layer multiplies the compiled program's size)."""

    num_actions: int
    num_atoms: int
    hidden_size: int = 64
    num_hidden_layers: int = 2
    noisy: bool = True
    dueling: bool = True
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, dict]:
        size = self.num_actions * self.num_atoms
        widths = [obs.shape[-1]] + [self.hidden_size] * self.num_hidden_layers
        outputs = [self.hidden_size] * self.num_hidden_layers + [size]
        if self.dueling:
            widths, outputs = [*widths, widths[-1]], [*outputs, self.num_atoms]
        noise = []
        if self.noisy:
            flat = jax.random.normal(
                self.make_rng("noise"), (sum(widths) + sum(outputs),)
            )
            sizes = [n for pair in zip(widths, outputs, strict=True) for n in pair]
            cuts = np.cumsum(sizes)
            pieces = jnp.split(flat, cuts[:-1])
            noise = list(zip(pieces[0::2], pieces[1::2], strict=True))

        def dense(i: int, features: int, name: str, gain: float = np.sqrt(2.0)):
            if self.noisy:
                layer = NoisyDense(features, self.sigma0, name=name)
                return lambda x: layer(x, *noise[i])
            return nn.Dense(
                features,
                kernel_init=nn.initializers.orthogonal(gain),
                bias_init=nn.initializers.zeros,
                name=name,
            )

        recorded = {}
        h = obs
        for i in range(self.num_hidden_layers):
            h = nn.relu(dense(i, self.hidden_size, f"Dense_{i}")(h))
            recorded[f"Dense_{i}"] = mean_abs_activation(h)
        heads = self.num_hidden_layers
        adv = dense(heads, size, "advantage", 1.0)(h)
        recorded["advantage"] = mean_abs_activation(adv)
        logits = adv.reshape(-1, self.num_actions, self.num_atoms)
        if self.dueling:
            value = dense(heads + 1, self.num_atoms, "value", 1.0)(h)
            recorded["value"] = mean_abs_activation(value)
            logits = value[:, None, :] + logits - logits.mean(axis=1, keepdims=True)
        return logits, {"params": recorded}


def project(
    next_probs: jax.Array, returns: jax.Array, discounts: jax.Array, support
) -> jax.Array:
    """The distribution of ``returns + discounts * Z`` projected onto ``support``
    (C51's categorical projection, Bellemare et al. 2017).

    Each shifted atom ``Tz_j = clip(G + discount * z_j, v_min, v_max)`` gives its
    probability to the two nearest atoms in proportion to closeness:
    ``m_i = sum_j clip(1 - |Tz_j - z_i| / dz, 0, 1) p_j``.

    Args:
      next_probs: ``(B, N)``; returns, discounts: ``(B,)``; support: ``(N,)``.

    Returns:
      ``(B, N)``, each row summing to 1.
    """
    support = jnp.asarray(support)
    delta = support[1] - support[0]
    shifted = jnp.clip(
        returns[:, None] + discounts[:, None] * support[None, :],
        support[0],
        support[-1],
    )
    closeness = 1.0 - jnp.abs(shifted[:, None, :] - support[None, :, None]) / delta
    return jnp.sum(jnp.clip(closeness, 0.0, 1.0) * next_probs[:, None, :], axis=-1)


def n_step_returns(
    rewards: jax.Array, dones: jax.Array, gamma: float
) -> tuple[jax.Array, jax.Array]:
    """n-step returns and bootstrap discounts of sequences.

    ``G = sum_{k<n} gamma^k r_k prod_{j<k} (1 - d_j)`` and ``gamma^n prod_{j<n}
    (1 - d_j)``: an episode end at step k keeps ``r_k`` and drops what follows.

    Args:
      rewards, dones: ``(B, n)``, the sequence's first n steps.

    Returns:
      ``(returns, discounts)``, each ``(B,)``.
    """
    n = rewards.shape[1]
    alive = jnp.cumprod(1.0 - dones.astype(jnp.float32), axis=1)
    before = jnp.concatenate([jnp.ones_like(alive[:, :1]), alive[:, :-1]], axis=1)
    powers = gamma ** jnp.arange(n, dtype=jnp.float32)
    return jnp.sum(powers * before * rewards, axis=1), gamma**n * alive[:, -1]


def next_distribution(
    online_q: jax.Array, target_probs: jax.Array, support, double: bool = True
) -> jax.Array:
    """The target network's return distribution of the next action.

    Args:
      online_q: ``(B, A)``, the online network's Q-values at the next state.
      target_probs: ``(B, A, N)``, the target network's distributions there.
      double: pick the action with the online network (double Q); else with the
        target network's own Q-values (C51).

    Returns:
      ``(B, N)``.
    """
    target_q = jnp.sum(target_probs * jnp.asarray(support), axis=-1)
    action = jnp.argmax(online_q if double else target_q, axis=-1)
    return jnp.take_along_axis(target_probs, action[:, None, None], axis=1)[:, 0]


def importance_weights(probabilities: jax.Array, beta: float) -> jax.Array:
    """``P^-beta / max P^-beta`` over the batch: shape ``(B,) -> (B,)``."""
    weights = (probabilities + 1e-10) ** -beta
    return weights / jnp.max(weights)


def make_rainbow(
    config: RainbowConfig, optimizer: Optimizer, env: tuple[Any, Any] | None = None
) -> Algorithm:
    """Rainbow for ``config`` with ``optimizer``; see the module docstring."""
    import flashbax

    env, env_params = env or discrete_env(config)
    network = RainbowNetwork(
        env.num_actions(env_params),
        config.num_atoms,
        config.hidden_size,
        config.num_hidden_layers,
        config.noisy,
        config.dueling,
        config.sigma0,
    )
    support = config.support
    buffer_fns = flashbax.make_prioritised_trajectory_buffer(
        add_batch_size=config.num_envs,
        sample_batch_size=config.batch_size,
        sample_sequence_length=config.n_step + 1,
        period=1,
        min_length_time_axis=config.n_step + 1,
        max_length_time_axis=config.buffer_size // config.num_envs,
        priority_exponent=config.priority_exponent,
        device=jax.default_backend(),
    )

    def logits(params, obs, key):
        return network.apply(params, obs, rngs={"noise": key})

    def q_values(params, obs, key):
        out, _ = logits(params, obs, key)
        return jnp.sum(jax.nn.softmax(out) * support, axis=-1)

    def init_agent(key, obs):
        key_params, key_noise = jax.random.split(key)
        params = network.init(
            {"params": key_params, "noise": key_noise}, jnp.zeros((1, *obs.shape[1:]))
        )
        example = Transition(
            obs=obs[0],
            action=jnp.zeros((), jnp.int32),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), bool),
            next_obs=None,
            episode_return=None,
            extras={},
        )
        return params, ReplayState(params, buffer_fns.init(example))

    # ACT -------------------------------------------------------------------------
    def act(state: TrainState, obs, key_q, key_action):
        values = q_values(state.params, obs, key_q)
        return epsilon_greedy(key_action, values, config.epsilon(state.update)), {}

    # LOSS ------------------------------------------------------------------------
    def loss_fn(params, target_params, batch: Transition, weights, key):
        """Per-sequence cross-entropies (the new priorities) and their weighted
        mean; ``batch`` leaves are ``(B, n + 1, ...)``."""
        key_online, key_select, key_target = jax.random.split(key, 3)
        returns, discounts = n_step_returns(
            batch.reward[:, :-1], batch.done[:, :-1], config.gamma
        )
        last_obs = batch.obs[:, -1]
        selector = params if config.double else target_params
        next_action = jnp.argmax(q_values(selector, last_obs, key_select), axis=-1)
        next_logits, _ = logits(target_params, last_obs, key_target)
        next_probs = jax.nn.softmax(chosen(next_logits.swapaxes(1, 2), next_action))
        target = jax.lax.stop_gradient(project(next_probs, returns, discounts, support))
        out, activations = logits(params, batch.obs[:, 0], key_online)
        log_probs = jax.nn.log_softmax(chosen(out.swapaxes(1, 2), batch.action[:, 0]))
        cross_entropy = -jnp.sum(target * log_probs, axis=-1)
        loss = jnp.mean(weights * cross_entropy)
        q = jnp.mean(jnp.sum(jnp.exp(log_probs) * support, axis=-1))
        return loss, ({"loss": loss, "q": q, "priority": cross_entropy}, activations)

    # LEARN -----------------------------------------------------------------------
    def sampled_step(tx, target_params, carry):
        params, opt_state, iteration, buffer, key = carry
        key, key_sample, key_loss, key_opt = jax.random.split(key, 4)
        sample = buffer_fns.sample(buffer, key_sample)
        weights = importance_weights(sample.probabilities, config.importance_exponent)
        (params, opt_state, iteration), metrics = gradient_step(
            config,
            tx,
            lambda p: loss_fn(p, target_params, sample.experience, weights, key_loss),
            (params, opt_state, iteration),
            key_opt,
        )
        buffer = buffer_fns.set_priorities(
            buffer, sample.indices, metrics.pop("priority") + 1e-10
        )
        return (params, opt_state, iteration, buffer, key), metrics

    def learn(state: TrainState, traj: Transition, key):
        tx = algorithm.build_tx(state.opt_params)
        target_params, buffer = state.extra
        rows = Transition(
            obs=traj.obs,
            action=traj.action,
            reward=traj.reward,
            done=traj.done,
            next_obs=None,
            episode_return=None,
            extras={},
        )
        buffer = buffer_fns.add(buffer, jax.tree.map(lambda x: x.swapaxes(0, 1), rows))
        carry = (state.params, state.opt_state, state.iteration, buffer, key)
        (*learned, buffer, _), metrics = learn_steps(
            config,
            state.update,
            functools.partial(sampled_step, tx, target_params),
            carry,
        )
        return finish_q_update(config, state, learned, target_params, buffer, metrics)

    algorithm = Algorithm(
        config, optimizer, env, env_params, init_agent, act, learn, act_keys=2
    )
    return algorithm
