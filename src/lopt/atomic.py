"""Atomic file writes: a reader sees the old file or the new one, never a part."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it, so
    that ``path`` is either the old or the complete new file, never a partial one.

    The file gets the usual permissions (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Writes ``data`` as indented JSON (:func:`json_text`), atomically."""
    text = json_text(data, indent=2)
    atomic_write(Path(path), lambda f: f.write((text + "\n").encode()))


def json_text(data: Any, indent: int | None = None) -> str:
    """``data`` as strict JSON: NaN and infinities (a diverged run's numbers)
    become ``null``, never the bare ``NaN`` other readers reject; NumPy values
    become lists and numbers, paths strings."""
    return json.dumps(_plain(data), indent=indent, allow_nan=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str | int):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
