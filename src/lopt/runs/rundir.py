"""Run directories: refuse to clobber results."""

from __future__ import annotations

from pathlib import Path


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
