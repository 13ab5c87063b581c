"""The environment registry and wrappers."""

import jax
import jax.numpy as jnp
import pytest

from lopt.envs.gridworld import GRID_TYPES, mazes_path
from lopt.envs.registry import (
    REGISTRY,
    UnknownEnvironmentError,
    canonical_name,
    make_env,
)

# Suites that are extras are checked, batched, in test_env_suites.py.
CORE = sorted(
    n
    for n in REGISTRY
    if not n.startswith(("brax/", "craftax/", "atari/", "mujoco/", "dmc/"))
)

# Registry names of the gridworld types that read the maze layouts.
GRID_TYPES_BY_NAME = {f"gridworld/{n}": t.tabular for n, t in GRID_TYPES.items()}


NEEDS_MAZES = pytest.mark.skipif(
    not mazes_path().is_file(), reason="gridworld maze layouts not available"
)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=NEEDS_MAZES) if GRID_TYPES_BY_NAME.get(n) else n
        for n in CORE
    ],
)
def test_every_registered_environment_builds_and_steps(name):
    env, params = make_env(name)
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.ndim == 1 and obs.shape == env.observation_shape(params)
    out = env.step(jax.random.key(1), state, jnp.int32(0), params)
    assert len(out) == 6
    assert "returned_episode_return" in out[-1]


def test_aliases_and_unknown_names():
    assert canonical_name("breakout") == "minatar/breakout"
    assert canonical_name("MinAtar/Breakout") == "minatar/breakout"
    with pytest.raises(UnknownEnvironmentError, match="Did you mean breakout"):
        canonical_name("breakuot")


def test_episode_log_keeps_the_last_completed_return():
    env, params = make_env("cartpole")
    _, state = env.reset(jax.random.key(0), params)
    step = jax.jit(env.step)
    returns, done_seen, t = [], False, 0
    while not done_seen:
        _, state, reward, terminated, truncated, info = step(
            jax.random.key(t), state, jnp.int32(t % 2), params
        )
        returns.append(float(reward))
        done_seen = bool(terminated | truncated)
        if not done_seen:
            assert float(info["returned_episode_return"]) == 0.0
            assert not bool(info["returned_episode_valid"])
        t += 1
    assert float(info["returned_episode_return"]) == pytest.approx(sum(returns))
    assert bool(info["returned_episode_valid"])
    first = float(info["returned_episode_return"])
    _, state, *_, info = step(jax.random.key(999), state, jnp.int32(0), params)
    assert float(info["returned_episode_return"]) == first  # kept while running
    assert float(state.episode_return) == 1.0


@pytest.mark.parametrize("size", [8, 16])
def test_deep_sea_descends_one_row_per_step(size):
    env, params = make_env(f"deepsea-{size}")
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (size * size,)
    step = jax.jit(env.step)
    for t in range(1, size + 1):
        # One-hot agent position on the flattened grid, row t - 1 before this step.
        assert float(obs.sum()) == 1.0 and int(obs.argmax()) // size == t - 1
        obs, state, _, terminated, truncated, info = step(
            jax.random.key(t), state, jnp.int32(t % 2), params
        )
        assert bool(terminated | truncated) == (t == size)
    assert bool(info["returned_episode_valid"])
    assert canonical_name("deepsea") == "bsuite/deepsea-8"
