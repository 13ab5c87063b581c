"""The gridworld distribution of OPEN §5.3 (LPG's gridworlds), written in pure JAX.

A *type* (``rand_all``, the meta-training distribution, and six out-of-support
types) is a distribution over *levels*: grid size, walls, objects with a reward,
a termination and a respawn probability per object type, and an episode limit. A
level is sampled once per inner run (:meth:`Gridworld.sample_level`) and shared by
its parallel environments.

Dynamics: the agent starts every episode at the level's start cell; 5 actions (up,
down, left, right, stay); a move into a wall or off the
grid stays put. Stepping on an object collects it: its type's reward, and with its
type's ``p_terminate`` the episode ends. An object missing at the start of a step
re-appears with its type's ``p_respawn`` (at a random free cell; tabular types at
its fixed cell). Episodes are truncated at the level's ``max_steps``.

Observations (flat): one-hot agent position over ``grid**2`` cells, one occupancy
map per object type, and ``0.001 * t``; tabular types (the mazes) instead one-hot
over (position x bitmask of present objects), and ``0.001 * t``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

NUM_ACTIONS = 5
# up, down, left, right, stay as (row, column) offsets
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], np.int32)


@struct.dataclass
class Level:
    """One level's parameters; ``n`` objects of ``k`` types on a ``grid**2`` board."""

    size: jax.Array  # shape=(), int32: side of the playable square (<= grid)
    walls: jax.Array  # shape=(grid**2,), bool
    obj_type: jax.Array  # shape=(n,), int32
    obj_active: jax.Array  # shape=(n,), bool: objects this level has
    reward: jax.Array  # shape=(k,)
    p_terminate: jax.Array  # shape=(k,)
    p_respawn: jax.Array  # shape=(k,)
    max_steps: jax.Array  # shape=(), int32
    start: jax.Array  # shape=(), int32: the start cell of tabular types
    obj_home: jax.Array  # shape=(n,), int32: object cells of tabular types


@struct.dataclass
class GridState:
    pos: jax.Array  # shape=(), int32: the agent's cell (row * grid + column)
    obj_pos: jax.Array  # shape=(n,), int32
    present: jax.Array  # shape=(n,), bool
    time: jax.Array  # shape=(), int32


@dataclasses.dataclass(frozen=True)
class GridType:
    """A distribution over levels."""

    name: str
    grid: int
    num_objects: int
    num_types: int
    tabular: bool
    sample: Callable[[jax.Array], dict]  # key -> the Level fields it draws

    @property
    def obs_size(self) -> int:
        cells = self.grid**2
        if self.tabular:
            return cells * 2**self.num_objects + 1
        return cells * (1 + self.num_types) + 1


def _log_uniform(key, low, high, shape=()):
    return jnp.exp(
        jax.random.uniform(key, shape, minval=np.log(low), maxval=np.log(high))
    )


def _log_uniform_int(key, low, high):
    return jnp.round(_log_uniform(key, low, high)).astype(jnp.int32)


def _fixed(grid, ids, reward, p_term, p_resp, max_steps):
    def sample(key):
        del key
        return dict(
            size=jnp.int32(grid),
            walls=jnp.zeros(grid * grid, bool),
            obj_type=jnp.array(ids, jnp.int32),
            obj_active=jnp.ones(len(ids), bool),
            reward=jnp.array(reward, jnp.float32),
            p_terminate=jnp.array(p_term, jnp.float32),
            p_respawn=jnp.array(p_resp, jnp.float32),
            max_steps=jnp.int32(max_steps),
        )

    return sample


def _rand_all(key):
    k = jax.random.split(key, 8)
    grid, types = 10, 5
    walls = (
        jnp.zeros(grid * grid, bool)
        .at[jax.random.permutation(k[0], 100)[:15]]
        .set(True)
    )
    reward = jax.random.uniform(k[1], (types,), minval=-1.0, maxval=1.0)
    reward = reward.at[0].set(jax.random.uniform(k[2]))
    return dict(
        size=jax.random.randint(k[3], (), 4, 11),
        walls=walls,
        obj_type=jnp.arange(types, dtype=jnp.int32),
        obj_active=jnp.arange(types) < jax.random.randint(k[4], (), 1, 6),
        reward=reward,
        p_terminate=_log_uniform(k[5], 1e-2, 1.0, (types,)),
        p_respawn=_log_uniform(k[6], 1e-3, 1e-1, (types,)),
        max_steps=_log_uniform_int(k[7], 20, 750),
    )


MAZES_ENV = "LOPT_GRIDWORLD_MAZES"


class MazeLayoutsError(ValueError):
    """The maze layouts file cannot be found."""


def mazes_path() -> Path:
    """Where the maze layouts are read from: ``$LOPT_GRIDWORLD_MAZES``, else
    ``../shared/data/gridworld_mazes.json`` beside the lopt checkout."""
    if os.environ.get(MAZES_ENV):
        return Path(os.environ[MAZES_ENV])
    return (
        Path(__file__).resolve().parents[3].parent / "shared/data/gridworld_mazes.json"
    )


@functools.cache
def maze_layouts() -> dict[str, np.ndarray]:
    """The fixed 13x13 layouts (MiniMax's, ``#`` wall, ``.`` free) as bool walls."""
    path = mazes_path()
    if not path.is_file():
        raise MazeLayoutsError(
            f"the gridworld maze layouts are not at {path}; point {MAZES_ENV} at "
            "gridworld_mazes.json (13x13 layouts, '#' wall, '.' free)"
        )
    data = json.loads(path.read_text())
    return {
        name: np.array([[c == "#" for c in row] for row in rows]).ravel()
        for name, rows in data["mazes"].items()
    }


def _maze(name):
    def sample(key):
        k = jax.random.split(key, 4)
        return dict(
            size=jnp.int32(13),
            walls=jnp.asarray(maze_layouts()[name]),
            obj_type=jnp.arange(3, dtype=jnp.int32),
            obj_active=jnp.ones(3, bool),
            reward=jax.random.uniform(k[0], (3,)),
            p_terminate=_log_uniform(k[1], 1e-2, 1.0, (3,)),
            p_respawn=_log_uniform(k[2], 1e-3, 1e-1, (3,)),
            max_steps=_log_uniform_int(k[3], 25, 50),
        )

    return sample


GRID_TYPES: dict[str, GridType] = {
    "rand_all": GridType("rand_all", 10, 5, 5, False, _rand_all),
    "rand_dense": GridType(
        "rand_dense",
        11,
        4,
        3,
        False,
        _fixed(11, [0, 0, 1, 2], [1, -1, -1], [0, 0.5, 0], [0.05, 0.1, 0.5], 500),
    ),
    "rand_sparse": GridType(
        "rand_sparse", 7, 3, 2, False, _fixed(7, [0, 1, 1], [1, -1], [1, 1], [1, 1], 50)
    ),
    "rand_long": GridType(
        "rand_long",
        11,
        4,
        2,
        False,
        _fixed(11, [0, 0, 1, 1], [1, -1], [0, 0.5], [0.01, 1.0], 1000),
    ),
    **{
        name: GridType(name, 13, 3, 3, True, _maze(name))
        for name in ("standard_maze", "sixteen_rooms", "labyrinth")
    },
}


class Gridworld:
    """One gridworld type, with the step interface of :mod:`lopt.envs.wrappers`."""

    continuous = False

    def __init__(self, grid_type: str):
        self.spec = GRID_TYPES[grid_type]

    # LEVELS ------------------------------------------------------------------
    def default_params(self) -> Level:
        """A placeholder level; :meth:`sample_level` draws the real one per run."""
        return self.sample_level(jax.random.key(0), None)

    def sample_level(self, key: jax.Array, params: Level | None) -> Level:
        """Draws a level (``params`` is ignored: every run gets its own)."""
        del params
        key_level, key_cells = jax.random.split(key)
        fields = self.spec.sample(key_level)
        cells = self._free_cells(
            key_cells, fields["walls"], fields["size"], 1 + self.spec.num_objects
        )
        return Level(start=cells[0], obj_home=cells[1:], **fields)

    def _free_cells(self, key, walls, size, count):
        """``count`` distinct non-wall cells inside the level, uniformly."""
        g = self.spec.grid
        rows, cols = jnp.divmod(jnp.arange(g * g), g)
        valid = ~walls & (rows < size) & (cols < size)
        return jax.random.choice(
            key, g * g, (count,), replace=False, p=valid / jnp.maximum(valid.sum(), 1)
        ).astype(jnp.int32)

    # INTERFACE ---------------------------------------------------------------
    def observation_shape(self, params) -> tuple[int, ...]:
        return (self.spec.obs_size,)

    def num_actions(self, params) -> int:
        return NUM_ACTIONS

    def reset(self, key: jax.Array, level: Level) -> tuple[jax.Array, GridState]:
        # The start cell is the level's; objects are re-placed except for tabular types.
        if self.spec.tabular:
            obj_pos = level.obj_home
        else:
            taken = level.walls.at[level.start].set(True)
            obj_pos = self._free_cells(key, taken, level.size, self.spec.num_objects)
        state = GridState(
            level.start, obj_pos, level.obj_active, jnp.zeros((), jnp.int32)
        )
        return self._obs(state, level), state

    def step(self, key, state: GridState, action, level: Level):
        key_term, key_resp, key_cells, key_reset = jax.random.split(key, 4)
        g = self.spec.grid
        row, col = jnp.divmod(state.pos, g)
        move = jnp.asarray(MOVES)[action]
        new_row, new_col = row + move[0], col + move[1]
        inside = (
            (new_row >= 0)
            & (new_row < level.size)
            & (new_col >= 0)
            & (new_col < level.size)
        )
        target = jnp.clip(new_row, 0, g - 1) * g + jnp.clip(new_col, 0, g - 1)
        pos = jnp.where(inside & ~level.walls[target], target, state.pos)

        types = level.obj_type
        hit = state.present & (state.obj_pos == pos)
        reward = jnp.sum(jnp.where(hit, level.reward[types], 0.0))
        ends = jax.random.uniform(key_term, types.shape) < level.p_terminate[types]
        terminated = jnp.any(hit & ends)
        present = state.present & ~hit

        # Objects missing before this step may come back.
        back = (
            ~state.present
            & level.obj_active
            & (jax.random.uniform(key_resp, types.shape) < level.p_respawn[types])
        )
        if self.spec.tabular:
            cells = level.obj_home
        else:
            occupied = jnp.zeros(g * g, bool).at[pos].set(True)
            occupied = occupied.at[state.obj_pos].max(present)
            cells = self._free_cells(
                key_cells, level.walls | occupied, level.size, self.spec.num_objects
            )
            # The k-th returning object takes the k-th drawn cell, so the valid
            # cells (drawn first) go to the objects that need them.
            cells = cells[jnp.clip(jnp.cumsum(back) - 1, 0)]
        obj_pos = jnp.where(back, cells, state.obj_pos)
        state = GridState(pos, obj_pos, present | back, state.time + 1)
        truncated = state.time >= level.max_steps

        done = terminated | truncated
        reset_obs, reset_state = self.reset(key_reset, level)
        obs = jnp.where(done, reset_obs, self._obs(state, level))
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), reset_state, state)
        return obs, state, reward, terminated, truncated, {}

    def _obs(self, state: GridState, level: Level) -> jax.Array:
        cells = self.spec.grid**2
        time = jnp.full((1,), 0.001 * state.time, jnp.float32)
        if self.spec.tabular:
            bits = jnp.sum(state.present * 2 ** jnp.arange(self.spec.num_objects))
            index = state.pos * 2**self.spec.num_objects + bits
            onehot = jax.nn.one_hot(index, cells * 2**self.spec.num_objects)
            return jnp.concatenate([onehot, time])
        agent = jax.nn.one_hot(state.pos, cells)
        per_object = jax.nn.one_hot(state.obj_pos, cells) * state.present[:, None]
        types = jax.nn.one_hot(level.obj_type, self.spec.num_types)  # (n, k)
        return jnp.concatenate([agent, (types.T @ per_object).ravel(), time])
