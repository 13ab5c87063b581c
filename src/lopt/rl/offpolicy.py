"""What every off-policy learner shares (DQN, IQN, Rainbow, SAC, TD3).

- :class:`ReplayConfig`: the shape of an update (``train_frequency`` steps of the
  batch of environments, then ``gradient_steps`` gradient steps once
  ``learning_starts`` frames are stored), the buffer's and batch's sizes, the
  target networks' step size ``tau``;
- :func:`learn_steps`: the gradient steps of an update, or zeros before
  ``learning_starts`` (a ``lax.cond``, a select under ``vmap``);
- :func:`periodic_target` (DQN, IQN, Rainbow: every ``target_update_interval``
  frames) and :func:`polyak` (SAC, TD3: after gradient steps);
- :class:`OffPolicyAlgorithm`: an :class:`~lopt.rl.algorithm.Algorithm` whose
  transitions keep the observation an episode really ended on, so learners can
  bootstrap through a time limit;
- the replay buffers of the new learners, from flashbax (uniform items for SAC and
  TD3, prioritised trajectories for Rainbow's n-step returns), which live inside
  jit and vmap like any other state.

DQN and IQN keep lopt's own uniform buffer (:mod:`lopt.rl.replay`): moving them
to flashbax changes which transitions each seed samples, so their returns would
no longer be bit-identical to earlier runs and tuned settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lopt.rl.algorithm import Algorithm, AlgorithmConfig, Transition
from lopt.rl.optimizer_step import mean_over_steps


@dataclasses.dataclass(frozen=True)
class ReplayConfig(AlgorithmConfig):
    """Settings of every learner that replays stored transitions."""

    train_frequency: int = 1
    """vector-environment steps (of num_envs frames each) per update"""
    gradient_steps: int = 1
    """gradient steps per update once learning has started"""
    buffer_size: int = 10_000
    """transitions the replay buffer holds"""
    batch_size: int = 128
    learning_starts: int = 10_000
    """frames collected before the first gradient step"""
    tau: float = 1.0
    """target-network step size: 1 copies the online network (a hard update)"""

    def __post_init__(self):
        self.require_counts("train_frequency", "gradient_steps", "batch_size")
        super().__post_init__()
        if self.num_learning_updates < 1:
            raise ValueError(
                f"learning_starts={self.learning_starts} leaves no update that "
                f"learns within total_timesteps={self.total_timesteps}; raise "
                "total_timesteps (--total-timesteps) above it"
            )
        if self.buffer_size < self.frames_per_update:
            raise ValueError(
                f"buffer_size={self.buffer_size} is smaller than one update's "
                f"{self.frames_per_update} transitions"
            )
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")

    @property
    def rollout_length(self) -> int:
        return self.train_frequency

    @property
    def num_epochs(self) -> int:
        return self.gradient_steps

    @property
    def steps_per_epoch(self) -> int:
        return 1

    @property
    def first_learning_update(self) -> int:
        """Index of the first update whose frames reach ``learning_starts``."""
        return max(0, -(-self.learning_starts // self.frames_per_update) - 1)


def learn_when_ready(
    config: ReplayConfig,
    update: jax.Array,
    learning: Callable[[Any], tuple[Any, dict]],
    carry: Any,
) -> tuple[Any, dict]:
    """``learning(carry)`` once the frames collected by the end of update
    ``update`` reach ``learning_starts``; else ``carry`` unchanged and every
    metric 0."""
    frames = (update + 1) * config.frames_per_update
    zeros = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(learning, carry)[1]
    )
    return jax.lax.cond(
        frames >= config.learning_starts, learning, lambda c: (c, zeros), carry
    )


def learn_steps(
    config: ReplayConfig,
    update: jax.Array,
    step: Callable[[Any], tuple[Any, dict]],
    carry: Any,
) -> tuple[Any, dict]:
    """``config.gradient_steps`` calls of ``step(carry) -> (carry, metrics)``
    (a scan) once learning has started (:func:`learn_when_ready`); the metrics
    averaged over the steps."""

    def learning(carry):
        carry, metrics = jax.lax.scan(
            lambda c, _: step(c), carry, None, config.gradient_steps
        )
        return carry, mean_over_steps(metrics, 1)

    return learn_when_ready(config, update, learning, carry)


def select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """``on_true`` where the scalar ``pred`` holds, else ``on_false``, per leaf."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def polyak(online: Any, target: Any, tau: float) -> Any:
    """``tau * online + (1 - tau) * target`` per leaf (``tau = 1``: a copy)."""
    return optax.incremental_update(online, target, tau)


def periodic_target(
    config: Any, update: jax.Array, params: Any, target_params: Any
) -> Any:
    """The target network after update ``update``: moved by ``tau`` toward
    ``params`` when the frame count passes a multiple of
    ``config.target_update_interval`` during the update, else as it was."""
    before = update * config.frames_per_update
    frames = before + config.frames_per_update
    interval = config.target_update_interval
    crossed = (frames // interval) > (before // interval)
    return select(crossed, polyak(params, target_params, config.tau), target_params)


def flat(traj: Any) -> Any:
    """Leaves ``(T, num_envs, ...)`` -> ``(T * num_envs, ...)``."""
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), traj)


def stored(traj: Transition) -> Transition:
    """An update's transitions as a replay buffer keeps them: ``done`` is the
    ``terminal`` flag (no bootstrap), no episode statistics or extras."""
    return Transition(
        obs=traj.obs,
        action=traj.action,
        reward=traj.reward,
        done=traj.extras["terminal"],
        next_obs=traj.next_obs,
        episode_return=None,
        extras={},
    )


@dataclasses.dataclass(frozen=True, eq=False)
class OffPolicyAlgorithm(Algorithm):
    """An algorithm whose transitions bootstrap through time limits.

    Where the environment reports the observation an episode ended on
    (``info["final_observation"]``: gymnax, gymnasium, MuJoCo Playground),
    ``next_obs`` is that observation and ``extras["terminal"]`` is ``terminated``:
    a truncated episode's last transition bootstraps from its real successor.
    Elsewhere (Brax, whose auto-reset drops it) ``next_obs`` is the observation
    after the auto-reset and ``terminal`` is ``terminated or truncated``.
    ``done`` stays ``terminated or truncated`` (the end of an episode).
    """

    def transition(self, obs, action, extras, step) -> Transition:
        _, _, _, terminated, _, info = step
        base = super().transition(obs, action, extras, step)
        if "final_observation" in info:
            next_obs, terminal = info["final_observation"], terminated
        else:
            next_obs, terminal = step[0], base.done
        return base._replace(
            next_obs=jnp.asarray(next_obs, jnp.float32),
            extras={**base.extras, "terminal": jnp.asarray(terminal, bool)},
        )


def item_buffer(config: ReplayConfig) -> Any:
    """A flashbax buffer of ``buffer_size`` single transitions, sampled uniformly
    with replacement, ``batch_size`` at a time (SAC, TD3)."""
    import flashbax

    return flashbax.make_item_buffer(
        max_length=config.buffer_size,
        min_length=1,
        sample_batch_size=config.batch_size,
        add_sequences=True,
        add_batches=False,
    )


def example_transition(obs: jax.Array, action: jax.Array) -> Transition:
    """One stored transition shaped like the first environment's ``obs`` (a batch
    ``(num_envs, ...)``) and ``action`` (one action)."""
    return Transition(
        obs=obs[0],
        action=action,
        reward=jnp.zeros((), jnp.float32),
        done=jnp.zeros((), bool),
        next_obs=obs[0],
        episode_return=None,
        extras={},
    )
