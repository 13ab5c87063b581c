"""Run directories: refuse to clobber results, write JSON atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lopt.atomic import atomic_write


class RunDirectoryError(ValueError):
    """A run directory that cannot be used as asked."""


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Creates ``path``; refuses an existing non-empty one unless ``overwrite``.

    With ``overwrite`` the files of the new run replace those of the same name;
    nothing else in the directory is deleted.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise RunDirectoryError(
            f"{path} already holds results; choose another --out, or pass "
            "--overwrite to replace them"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_default)
    atomic_write(Path(path), lambda f: f.write((text + "\n").encode()))


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
