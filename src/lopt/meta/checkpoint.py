"""Checkpoints of the whole ES state, written atomically and verified before use.

A checkpoint is ``checkpoints/es_state_gen<G>.npz``: every leaf of the evosax state
after generation G, and G itself; beside it, ``es_state_gen<G>.npz.json`` holds
its size and SHA-256. Both are written to a temporary name and then renamed (the
checksum last), so a run killed at any moment leaves complete checkpoints. A
resumed run takes the newest checkpoint whose size and checksum match and that
loads; a damaged one (truncated, altered, empty, or without its checksum while
its siblings have one) is reported and the one before it is used. Checkpoints
written before checksums existed are trusted if they load.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lopt.atomic import atomic_write, write_json

_NAME = re.compile(r"es_state_gen(\d{6})\.npz$")
CHECKSUM_SUFFIX = ".json"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the run it is resumed into, or a run whose
    every checkpoint is damaged."""


def checkpoint_path(run_dir: Path, generation: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"es_state_gen{generation:06d}.npz"


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def save_checkpoint(run_dir: Path, generation: int, state: Any) -> Path:
    """Writes the ES ``state`` reached after ``generation`` generations, then its
    size and checksum."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    arrays = {f"leaf_{i:04d}": leaf for i, leaf in enumerate(leaves)}
    buffer = io.BytesIO()
    np.savez(buffer, generation=np.int64(generation), **arrays)
    data = buffer.getvalue()
    path = checkpoint_path(run_dir, generation)
    atomic_write(path, lambda f: f.write(data))
    write_json(
        _checksum_path(path),
        {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    )
    return path


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Every checkpoint file in ``run_dir`` as ``(generation, path)``, newest
    first (unverified)."""
    found = [
        (int(m.group(1)), p)
        for p in (Path(run_dir) / "checkpoints").glob("es_state_gen*.npz")
        if (m := _NAME.search(p.name))
    ]
    return sorted(found, reverse=True)


def verify_checkpoint(path: Path, legacy: bool = False) -> str | None:
    """What is wrong with the checkpoint at ``path``, or None if its size and
    checksum match the ones written beside it.

    Args:
      legacy: the run wrote no checksums (an older lopt): a checkpoint without
        one is not reported (:func:`load_latest` still checks that it loads).
    """
    path = Path(path)
    sidecar = _checksum_path(path)
    if not sidecar.exists():
        return None if legacy else "its checksum was never written"
    try:
        expected = json.loads(sidecar.read_text())
        size, digest = int(expected["bytes"]), str(expected["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"its checksum file {sidecar.name} is unreadable"
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"it cannot be read ({err.strerror})"
    if len(data) != size:
        return f"it has {len(data)} bytes, {size} were written (truncated?)"
    if hashlib.sha256(data).hexdigest() != digest:
        return "its contents do not match the checksum written with it (damaged)"
    return None


def copy_checkpoint(source_dir: Path, run_dir: Path, generation: int) -> Path:
    """Copies ``source_dir``'s verified checkpoint of ``generation`` (and its
    checksum) into ``run_dir``, atomically.

    Raises:
      CheckpointError: that checkpoint is missing or damaged.
    """
    source = checkpoint_path(source_dir, generation)
    problem = verify_checkpoint(source)
    if problem is not None:
        raise CheckpointError(f"{source}: {problem}")
    data = source.read_bytes()
    path = checkpoint_path(run_dir, generation)
    atomic_write(path, lambda f: f.write(data))
    atomic_write(
        _checksum_path(path), lambda f: f.write(_checksum_path(source).read_bytes())
    )
    return path


def _legacy(run_dir: Path) -> bool:
    """A run from before checksums: no checkpoint has one."""
    return not any(_checksum_path(p).exists() for _, p in checkpoints(run_dir))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint whose checksum matches, or None."""
    legacy = _legacy(run_dir)
    for _, path in checkpoints(run_dir):
        if verify_checkpoint(path, legacy) is None:
            return path
    return None


def resume_generation(run_dir: Path) -> int:
    """The generation a resumed run starts from: the newest verified
    checkpoint's, or 0."""
    path = latest_checkpoint(run_dir)
    return 0 if path is None else int(_NAME.search(path.name).group(1))


def load_latest(
    run_dir: Path, template: Any, report: Callable[[str], None] | None = None
) -> tuple[int, Any]:
    """``(generation, state)`` from the newest checkpoint that verifies and loads,
    or ``(0, template)`` when the run has none; each damaged newer one is passed
    to ``report`` (a sentence) and skipped.

    Raises:
      CheckpointError: a checkpoint that verifies but does not fit ``template``
        (another strategy or optimizer), or checkpoints that are all damaged.
    """
    found = checkpoints(run_dir)
    legacy = _legacy(run_dir)
    problems = []
    for generation, path in found:
        problem = verify_checkpoint(path, legacy)
        if problem is None:
            try:
                return load_checkpoint(path, template)
            except CheckpointError:
                raise
            except (
                OSError,
                ValueError,
                KeyError,
                EOFError,
                zlib.error,
                zipfile.BadZipFile,
            ) as err:
                problem = f"it does not load ({type(err).__name__}: {err})"
        problems.append(f"{path}: {problem}")
        if report is not None:
            report(
                f"checkpoint of generation {generation} skipped: {problems[-1]}; "
                "trying the one before it"
            )
    if problems:
        raise CheckpointError(
            "no checkpoint can be resumed from: " + "; ".join(problems)
        )
    return 0, template


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
