"""Run directories: claimed by one run at a time, checked before work starts.

:func:`prepare_run_dir` creates a run's directory, checks that files can be
written into it (so a run never trains to the end and then fails to save), and
claims it for this process with an exclusive lock on ``.lopt-lock`` inside it,
held until :func:`release_run_dir` or the process ends: a second run aimed at the
same directory is refused at once, naming the process that holds it. A non-empty
directory is refused unless the caller overwrites (or resumes) it;
:func:`set_aside` moves an old run's files out of the way first, so nothing of it
can be mixed into or resumed by the new one.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

#: The lock file every run holds in its directory (not a result).
LOCK_NAME = ".lopt-lock"
#: Where :func:`set_aside` moves an old run's files: ``replaced-<time>``.
SET_ASIDE_PREFIX = "replaced-"

_held: dict[Path, int] = {}  # claimed directory -> the lock file's descriptor


class RunDirectoryError(ValueError):
    """A run directory that cannot be used as asked."""


def prepare_run_dir(path: Path, overwrite: bool, *, resume: bool = False) -> Path:
    """Creates ``path``, checks it can be written and claims it for this process.

    Args:
      overwrite: accept a directory that already holds results (the new run's
        files replace those of the same name; see :func:`set_aside`).
      resume: the directory holds the run to continue (no emptiness check).

    Raises:
      RunDirectoryError: ``path`` (or a parent) is a file, cannot be created or
        written, is claimed by another running process, or already holds results
        and neither ``overwrite`` nor ``resume`` is set.
    """
    path = Path(path)
    _make_dir(path)
    _check_writable(path)
    claim_run_dir(path)
    try:
        if not (overwrite or resume) and results_in(path):
            raise RunDirectoryError(
                f"{path} already holds results; choose another --out, or pass "
                "--overwrite to replace them"
            )
    except BaseException:
        release_run_dir(path)
        raise
    return path


def results_in(path: Path) -> list[Path]:
    """What a directory holds besides the lock file."""
    return sorted(p for p in Path(path).iterdir() if p.name != LOCK_NAME)


def set_aside(path: Path) -> Path | None:
    """Moves everything in ``path`` (but the lock and earlier set-aside folders)
    into a new ``replaced-<time>`` folder inside it; returns that folder, or None
    when there was nothing to move. Nothing is deleted."""
    path = Path(path)
    old = [p for p in results_in(path) if not p.name.startswith(SET_ASIDE_PREFIX)]
    if not old:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path / f"{SET_ASIDE_PREFIX}{stamp}"
    for n in range(1, 1000):
        try:
            target.mkdir()
            break
        except FileExistsError:
            target = path / f"{SET_ASIDE_PREFIX}{stamp}-{n}"
    for p in old:
        os.replace(p, target / p.name)
    return target


def claim_run_dir(path: Path) -> None:
    """Takes the exclusive lock on ``path/.lopt-lock`` (kept until released).

    Raises:
      RunDirectoryError: another process holds it.
    """
    path = Path(path).resolve()
    if path in _held:
        return
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise RunDirectoryError(
            f"cannot write to {path} ({err.strerror}); choose another --out"
        ) from err
    if not _try_lock(fd):
        holder = _read_holder(fd)
        os.close(fd)
        raise RunDirectoryError(
            f"{path} is in use by another lopt run{holder}; wait for it to end or "
            "choose another --out"
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {' '.join(sys.argv)}\n".encode())
    _held[path] = fd


def release_run_dir(path: Path | None = None) -> None:
    """Releases the claim on ``path`` (None: every directory this process holds)."""
    paths = list(_held) if path is None else [Path(path).resolve()]
    for p in paths:
        fd = _held.pop(p, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases its lock


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except (OSError, AttributeError):
        return ""
    pid, _, command = text.partition(" ")
    return f" (process {pid}: {command})" if pid.isdigit() else ""


def _make_dir(path: Path) -> None:
    """Creates ``path`` and its parents, with an error naming what is in the way."""
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(
            f"{path} exists and is not a directory; choose another --out"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        blocking = next(
            (p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None
        )
        where = f"{blocking} is a file" if blocking else str(err.strerror)
        raise RunDirectoryError(
            f"cannot create {path}: {where}; choose another --out"
        ) from err
    except OSError as err:
        raise RunDirectoryError(
            f"cannot create {path} ({err.strerror}); choose another --out"
        ) from err


def _check_writable(path: Path) -> None:
    """Writes and removes a file in ``path``, as a run will write its results."""
    try:
        fd, name = tempfile.mkstemp(prefix=".lopt-check-", dir=path)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise RunDirectoryError(
            f"cannot write to {path} ({err.strerror}); choose another --out"
        ) from err
