"""Gridworld dynamics checked by hand on tiny levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.envs.gridworld import GRID_TYPES, GridState, Gridworld, Level, mazes_path
from lopt.envs.registry import make_env

UP, DOWN, LEFT, RIGHT, STAY = range(5)
G = 7  # rand_sparse's board: 3 objects of 2 types


def level(**overrides):
    """A 3x3 playable corner of rand_sparse's 7x7 board, a wall at (0, 1)."""
    fields = dict(
        size=jnp.int32(3),
        walls=jnp.zeros(G * G, bool).at[1].set(True),
        obj_type=jnp.array([0, 1, 1], jnp.int32),
        obj_active=jnp.ones(3, bool),
        reward=jnp.array([1.0, -0.5]),
        p_terminate=jnp.array([0.0, 0.0]),
        p_respawn=jnp.array([0.0, 0.0]),
        max_steps=jnp.int32(100),
        start=jnp.int32(0),
        obj_home=jnp.array([8, 16, 15], jnp.int32),
    )
    return Level(**{**fields, **overrides})


def state(pos=0, obj_pos=(8, 16, 15), present=(True, True, True), time=0):
    return GridState(
        jnp.int32(pos),
        jnp.array(obj_pos, jnp.int32),
        jnp.array(present),
        jnp.int32(time),
    )


ENV = Gridworld("rand_sparse")
STEP = jax.jit(ENV.step)
MAZES = mazes_path().is_file()


def test_observation_sizes_match_the_paper():
    sizes = {name: t.obs_size for name, t in GRID_TYPES.items()}
    assert sizes == {
        "rand_all": 601,
        "rand_dense": 485,
        "rand_sparse": 148,
        "rand_long": 364,
        "standard_maze": 1353,
        "sixteen_rooms": 1353,
        "labyrinth": 1353,
    }
    for name in sizes:
        if GRID_TYPES[name].tabular and not MAZES:
            continue  # the maze layouts live in ../shared/data
        env, params = make_env(f"gridworld/{name}")
        obs, _ = env.reset(jax.random.key(0), params)
        assert obs.shape == (sizes[name],)


def test_moves_walls_and_edges():
    key = jax.random.key(0)
    # (0, 0): right is a wall, up and left are off the board, down is free.
    for action, expected in ((RIGHT, 0), (UP, 0), (LEFT, 0), (STAY, 0), (DOWN, G)):
        _, s, reward, *_ = STEP(key, state(pos=0), action, level())
        assert int(s.pos) == expected and float(reward) == 0.0
    # (2, 2) is the corner of the 3x3 level: right and down leave it.
    for action, expected in ((RIGHT, 2 * G + 2), (DOWN, 2 * G + 2), (UP, G + 2)):
        _, s, *_ = STEP(key, state(pos=2 * G + 2), action, level())
        assert int(s.pos) == expected


def test_collecting_rewards_and_terminates_with_p_terminate():
    key = jax.random.key(1)
    # Object 0 (type 0, reward 1) sits at (1, 1) = cell 8; step right from (1, 0).
    _, s, reward, terminated, truncated, _ = STEP(key, state(pos=G), RIGHT, level())
    assert float(reward) == 1.0 and not bool(terminated) and not bool(truncated)
    assert s.present.tolist() == [False, True, True] and int(s.time) == 1
    # Type 1 (reward -0.5) terminates with probability 1: the episode resets.
    ends = level(p_terminate=jnp.array([0.0, 1.0]))
    obs, s, reward, terminated, _, _ = STEP(key, state(pos=G + 2), DOWN, ends)
    assert float(reward) == -0.5 and bool(terminated)
    assert int(s.time) == 0 and bool(jnp.all(s.present))
    assert float(obs[-1]) == 0.0  # 0.001 * t of the fresh episode


def test_respawn_probability_and_place():
    p = 0.3
    lvl = level(p_respawn=jnp.array([p, p]))
    missing = state(pos=0, present=(False, True, True))
    keys = jax.random.split(jax.random.key(2), 4000)
    _, s, *_ = jax.vmap(ENV.step, in_axes=(0, None, None, None))(
        keys, missing, STAY, lvl
    )
    back = np.asarray(s.present[:, 0])
    assert abs(back.mean() - p) < 0.03
    cells = np.asarray(s.obj_pos[back, 0])
    rows, cols = cells // G, cells % G
    assert np.all((rows < 3) & (cols < 3))
    assert not np.any(np.isin(cells, [0, 1, 16, 15]))  # agent, wall, objects
    assert len(np.unique(cells)) == 9 - 4  # every free cell is used
    # Present objects never move.
    assert np.all(np.asarray(s.obj_pos[:, 1:]) == [16, 15])


def test_episode_limit_truncates():
    lvl = level(max_steps=jnp.int32(3))
    s = state(pos=0)
    for t in range(1, 4):
        _, s, _, terminated, truncated, _ = STEP(jax.random.key(t), s, STAY, lvl)
        assert bool(truncated) == (t == 3) and not bool(terminated)
    assert int(s.time) == 0


def test_observation_encoding():
    s = state(pos=G + 1, obj_pos=(8, 16, 15), present=(False, True, True), time=7)
    obs = np.asarray(ENV._obs(s, level()))
    cells = G * G
    assert obs[G + 1] == 1 and obs[:cells].sum() == 1
    type0, type1 = obs[cells : 2 * cells], obs[2 * cells : 3 * cells]
    assert type0.sum() == 0  # object 0 is missing
    assert type1[16] == 1 and type1[15] == 1 and type1.sum() == 2
    assert obs[-1] == pytest.approx(0.007)
    if not MAZES:
        pytest.skip("gridworld maze layouts not available")
    maze = Gridworld("labyrinth")
    lvl = maze.sample_level(jax.random.key(0), None)
    s = GridState(jnp.int32(14), lvl.obj_home, jnp.array([True, False, True]), 0)
    obs = np.asarray(maze._obs(s, lvl))
    assert obs[14 * 8 + 0b101] == 1 and obs.sum() == 1


def test_level_sampling():
    env = Gridworld("rand_all")
    levels = jax.vmap(env.sample_level, in_axes=(0, None))(
        jax.random.split(jax.random.key(3), 256), None
    )
    size = np.asarray(levels.size)
    assert size.min() == 4 and size.max() == 10
    count = np.asarray(levels.obj_active).sum(axis=1)
    assert count.min() == 1 and count.max() == 5
    steps = np.asarray(levels.max_steps)
    assert steps.min() >= 20 and steps.max() <= 750
    assert np.all(np.asarray(levels.walls).sum(axis=1) == 15)
    assert np.all(np.asarray(levels.reward)[:, 0] >= 0)
    cells = np.concatenate([np.asarray(levels.start)[:, None], levels.obj_home], 1)
    for i in range(256):
        assert len(set(cells[i])) == 6
        assert not np.asarray(levels.walls[i])[cells[i]].any()
        assert np.all(cells[i] // 10 < size[i]) and np.all(cells[i] % 10 < size[i])


def test_every_episode_starts_at_the_level_start():
    env = Gridworld("rand_all")
    lvl = env.sample_level(jax.random.key(4), None)
    resets = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.key(5), 32), lvl
    )[1]
    assert np.all(np.asarray(resets.pos) == int(lvl.start))
    objects = np.asarray(resets.obj_pos)
    assert not np.any(objects == int(lvl.start))
    assert len(np.unique(objects[:, 0])) > 1  # objects are re-placed at reset
