"""Reading and writing learned optimizers as flat ``.npy`` vectors.

The paper's released optimizers are 1-D float32 ``.npy`` files in jax pytree order:
1,211 values for the small architecture, 3,571 for the large one. lopt writes the
same layout, plus a sidecar ``<name>.json`` holding the optimizer's kind
(``"format"``: ``lopt-open`` for OPEN and its variants, ``lopt-optim4rl``) and its
configuration, so that files of other architectures (an LSTM cell, an ablation, the
No-Features or Optim4RL baselines) load without flags. A file without a sidecar must
be one of the two released sizes, and is full OPEN.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lopt.atomic import atomic_write
from lopt.optim.card import OptimizerCard, card_to_dict
from lopt.optim.learned import (
    LearnedConfig,
    check_meta_params,
    unravel_meta_params,
)
from lopt.optim.network import MetaParams, OPENConfig, ravel_meta_params
from lopt.optim.optim4rl import Optim4RLConfig

#: The architectures of the paper's released files, by their number of values.
RELEASED_SIZES = {1211: "small", 3571: "large"}
#: The sidecar's "format" of each kind of learned optimizer.
FORMATS: dict[str, type] = {"lopt-open": OPENConfig, "lopt-optim4rl": Optim4RLConfig}


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


def _config_from_sidecar(sidecar: Path) -> LearnedConfig:
    try:
        meta = json.loads(sidecar.read_text())
        kind = meta.get("format", "lopt-open")
        cls = FORMATS[kind]
        return cls(**meta["config"])
    except KeyError as err:
        raise OptimizerFileError(
            f'{sidecar}: no {err} entry; expected "format" (one of '
            f'{", ".join(FORMATS)}) and "config"'
        ) from err
    except (json.JSONDecodeError, TypeError, AttributeError, ValueError) as err:
        raise OptimizerFileError(f"{sidecar}: not a valid description ({err})") from err


def read_config(path: str | os.PathLike, size: int) -> LearnedConfig:
    """The architecture of the file at ``path`` holding ``size`` values."""
    path = Path(path)
    sidecar = _sidecar(path)
    if sidecar.exists():
        config = _config_from_sidecar(sidecar)
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


def load_learned(path: str | os.PathLike) -> tuple[MetaParams, LearnedConfig]:
    """Loads any learned optimizer (OPEN, a variant of it, Optim4RL) from a
    ``.npy`` file and its sidecar.

    Returns:
      ``(meta_params, config)``: an :class:`~lopt.optim.network.OPENConfig` or an
      :class:`~lopt.optim.optim4rl.Optim4RLConfig`.

    Raises:
      OptimizerFileError: the file is missing, not a ``.npy`` file, truncated,
        holds an object, non-float or non-flat array, NaN or infinite values, or
        a number of values that matches no known architecture; or its sidecar is
        unreadable.
    """
    vector = _read_vector(Path(path))
    config = read_config(path, vector.size)
    return unravel_meta_params(vector, config), config


def load_open(path: str | os.PathLike) -> tuple[MetaParams, OPENConfig]:
    """Loads an OPEN optimizer (or an ablation of it) from a ``.npy`` file.

    Raises:
      OptimizerFileError: as :func:`load_learned`, or the file holds another
        kind of learned optimizer.
    """
    meta_params, config = load_learned(path)
    if not isinstance(config, OPENConfig):
        raise OptimizerFileError(
            f"{path}: holds a {config.variant} optimizer, not OPEN; load it as "
            f"{config.variant}:PATH or learned:PATH"
        )
    return meta_params, config


def save_learned(
    path: str | os.PathLike,
    meta_params: MetaParams,
    config: LearnedConfig,
    *,
    card: OptimizerCard | None = None,
    **info: Any,
) -> Path:
    """Writes ``meta_params`` as a flat float32 ``.npy`` (jax pytree order, the
    released layout for OPEN) and its kind and configuration as ``<name>.json``,
    each atomically (temporary file, then rename).

    ``card`` (:mod:`lopt.optim.card`: what the optimizer was meta-trained on) goes
    into the sidecar under ``"card"``; ``info`` entries go in as they are."""
    check_meta_params(meta_params, config)
    path = Path(path)
    vector = np.asarray(ravel_meta_params(meta_params), np.float32)
    atomic_write(path, lambda f: np.save(f, vector))
    kind = next(k for k, cls in FORMATS.items() if isinstance(config, cls))
    sidecar = {
        "format": kind,
        "variant": config.variant,
        "config": dataclasses.asdict(config),
        **info,
        **({} if card is None else {"card": card_to_dict(card)}),
    }
    atomic_write(
        _sidecar(path), lambda f: f.write(json.dumps(sidecar, indent=2).encode())
    )
    return path


#: The name lopt has always used; it writes any learned optimizer.
save_open = save_learned
