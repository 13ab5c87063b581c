"""Tiny settings shared by the tests: runs that compile and finish in seconds."""

import dataclasses
from pathlib import Path

from lopt.rl.ppo import PPOConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
PRETRAINED = SHARED / "pretrained"
BREAKOUT = PRETRAINED / "breakout_OPEN.npy"

#: CartPole PPO with 4 envs x 8 steps, 2 epochs of 2 minibatches, width 8: 3 updates.
TINY_PPO = PPOConfig(
    env="cartpole",
    total_timesteps=4 * 8 * 3,
    num_envs=4,
    num_steps=8,
    update_epochs=2,
    num_minibatches=2,
    hidden_size=8,
    activation="tanh",
)


def tiny_ppo(**changes) -> PPOConfig:
    return dataclasses.replace(TINY_PPO, **changes)


def run_seeds(config, optimizer, seeds, opt_params=None):
    """``(metrics, final_state)`` of ``config`` over ``seeds``, in chunks, as
    ``lopt train`` runs it."""
    from lopt.rl.executor import Executor, chunk_size, seed_keys

    executor = Executor(config, optimizer, chunk=chunk_size(config.num_updates))
    return executor(seed_keys(seeds), opt_params)
