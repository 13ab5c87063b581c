"""Reading and writing learned optimizers as flat ``.npy`` vectors.

The paper's released optimizers are 1-D float32 ``.npy`` files in jax pytree order:
1,211 values for the small architecture, 3,571 for the large one. lopt writes the
same layout, plus a sidecar ``<name>.json`` holding the architecture, so that files
of other architectures (an LSTM cell, say) load without flags. A file without a
sidecar must be one of the two released sizes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lopt.atomic import atomic_write
from lopt.optim.network import (
    MetaParams,
    OPENConfig,
    check_meta_params,
    ravel_meta_params,
    unravel_meta_params,
)

#: The architectures of the paper's released files, by their number of values.
RELEASED_SIZES = {1211: "small", 3571: "large"}


class OptimizerFileError(ValueError):
    """A learned-optimizer file that cannot be used, with what was wrong."""


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _expected() -> str:
    return "expected a .npy file holding a flat float32 vector"


def _read_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a .npy file, or a clear error."""
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic != b"\x93NUMPY":
            raise OptimizerFileError(
                f"{path}: not a .npy file (it does not start with NumPy's magic "
                f"bytes); {_expected()}"
            )
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(f)
        except ValueError as err:
            raise OptimizerFileError(
                f"{path}: unreadable .npy header ({err}); {_expected()}"
            ) from err
        return shape, dtype, f.tell()


def _read_vector(path: Path) -> np.ndarray:
    if not path.is_file():
        raise OptimizerFileError(f"{path}: no such file; {_expected()}")
    shape, dtype, offset = _read_header(path)
    if dtype.hasobject:
        raise OptimizerFileError(
            f"{path}: holds an object array, which lopt never unpickles; {_expected()}"
        )
    if not np.issubdtype(dtype, np.floating):
        raise OptimizerFileError(f"{path}: holds {dtype} values; {_expected()}")
    if len(shape) != 1:
        raise OptimizerFileError(
            f"{path}: holds an array of shape {shape}; {_expected()}"
        )
    expected_bytes = offset + int(np.prod(shape)) * dtype.itemsize
    actual_bytes = path.stat().st_size
    if actual_bytes < expected_bytes:
        raise OptimizerFileError(
            f"{path}: truncated: its header announces {shape[0]} values "
            f"({expected_bytes} bytes) but the file has {actual_bytes} bytes"
        )
    array = np.load(path, allow_pickle=False)
    bad = ~np.isfinite(array)
    if bad.any():
        raise OptimizerFileError(
            f"{path}: {int(bad.sum())} of {array.size} values are NaN or infinite "
            f"(first at index {int(np.argmax(bad))}); expected finite values"
        )
    return array.astype(np.float32)


def read_config(path: str | os.PathLike, size: int) -> OPENConfig:
    """The architecture of the file at ``path`` holding ``size`` values."""
    path = Path(path)
    sidecar = _sidecar(path)
    if sidecar.exists():
        meta = json.loads(sidecar.read_text())
        config = OPENConfig(**meta["config"])
        expected = config.num_meta_params
        if size != expected:
            raise OptimizerFileError(
                f"{path}: holds {size} values but its {sidecar.name} describes "
                f"{config}, which has {expected}"
            )
        return config
    if size not in RELEASED_SIZES:
        known = " or ".join(f"{n} ({name})" for n, name in RELEASED_SIZES.items())
        raise OptimizerFileError(
            f"{path}: holds {size} values; expected {known}, or a {sidecar.name} "
            "file beside it describing another architecture"
        )
    return getattr(OPENConfig, RELEASED_SIZES[size])()


def load_open(path: str | os.PathLike) -> tuple[MetaParams, OPENConfig]:
    """Loads an OPEN optimizer from a ``.npy`` file.

    Returns:
      ``(meta_params, config)``.

    Raises:
      OptimizerFileError: the file is missing, not a ``.npy`` file, truncated,
        holds an object, non-float or non-flat array, NaN or infinite values, or
        a number of values that matches no known architecture.
    """
    vector = _read_vector(Path(path))
    config = read_config(path, vector.size)
    return unravel_meta_params(vector, config), config


def save_open(
    path: str | os.PathLike, meta_params: MetaParams, config: OPENConfig, **info: Any
) -> Path:
    """Writes ``meta_params`` as a flat float32 ``.npy`` (released layout) and its
    architecture as ``<name>.json``, each atomically (temporary file, then rename)."""
    check_meta_params(meta_params, config)
    path = Path(path)
    vector = np.asarray(ravel_meta_params(meta_params), np.float32)
    atomic_write(path, lambda f: np.save(f, vector))
    sidecar = {"format": "lopt-open", "config": dataclasses.asdict(config), **info}
    atomic_write(
        _sidecar(path), lambda f: f.write(json.dumps(sidecar, indent=2).encode())
    )
    return path
