"""Checkpoints of the whole ES state, written atomically.

A checkpoint is ``checkpoints/es_state_gen<G>.npz``: every leaf of the evosax state
after generation G, and G itself. Files are written to a temporary name and then
renamed, so a run killed at any moment leaves either a complete checkpoint or none
for that generation, and resuming picks the newest complete one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lopt.atomic import atomic_write

_NAME = re.compile(r"es_state_gen(\d{6})\.npz$")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the run it is resumed into."""


def checkpoint_path(run_dir: Path, generation: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"es_state_gen{generation:06d}.npz"


def save_checkpoint(run_dir: Path, generation: int, state: Any) -> Path:
    """Writes the ES ``state`` reached after ``generation`` generations."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    arrays = {f"leaf_{i:04d}": leaf for i, leaf in enumerate(leaves)}
    path = checkpoint_path(run_dir, generation)
    atomic_write(path, lambda f: np.savez(f, generation=np.int64(generation), **arrays))
    return path


def _newest(run_dir: Path) -> tuple[int, Path | None]:
    """``(generation, path)`` of the checkpoint with the most generations, or
    ``(0, None)``."""
    found = [
        (int(m.group(1)), p)
        for p in (Path(run_dir) / "checkpoints").glob("es_state_gen*.npz")
        if (m := _NAME.search(p.name))
    ]
    return max(found) if found else (0, None)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the most generations, or None."""
    return _newest(run_dir)[1]


def resume_generation(run_dir: Path) -> int:
    """The generation a resumed run starts from: the newest checkpoint's, or 0."""
    return _newest(run_dir)[0]


def load_checkpoint(path: Path, template: Any) -> tuple[int, Any]:
    """``(generation, state)`` from ``path``, with ``template``'s tree structure."""
    leaves, treedef = jax.tree.flatten(template)
    with np.load(path) as data:
        stored = sorted(k for k in data.files if k.startswith("leaf_"))
        if len(stored) != len(leaves):
            raise CheckpointError(
                f"{path}: holds {len(stored)} arrays but this run's ES state has "
                f"{len(leaves)}; was it written by another strategy or optimizer?"
            )
        restored = []
        for key, leaf in zip(stored, leaves, strict=True):
            value = data[key]
            if value.shape != np.shape(leaf):
                raise CheckpointError(
                    f"{path}: {key} has shape {value.shape}, expected {np.shape(leaf)}"
                )
            restored.append(jax.numpy.asarray(value, dtype=np.asarray(leaf).dtype))
        generation = int(data["generation"])
    return generation, jax.tree.unflatten(treedef, restored)
