"""Optimizers named by a string, as the command line takes them.

``adam``, ``rmsprop``, ``lion`` and ``sgd`` are optax's, with hyperparameters from
the caller (a task preset's tuned values) and optional overrides. A learned
optimizer is read from a ``.npy`` file and its sidecar (:mod:`lopt.optim.files`),
which say what it is, so no flags are needed: ``open:PATH`` loads OPEN or any
ablation of it (No-Features included), ``optim4rl:PATH`` an Optim4RL optimizer,
and ``learned:PATH`` either. ``velo:PATH`` loads VeLO's released weights
(:func:`lopt.optim.velo.load_velo`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lopt.optim.files import load_learned
from lopt.optim.handcrafted import HANDCRAFTED
from lopt.optim.learned import learned_family
from lopt.optim.network import OPENConfig
from lopt.optim.optim4rl import Optim4RLConfig
from lopt.optim.optimizer import Optimizer
from lopt.optim.velo import load_velo, velo_family

#: Prefixes of learned-optimizer specs and the configurations each accepts.
LEARNED_PREFIXES = {
    "open": OPENConfig,
    "optim4rl": Optim4RLConfig,
    "learned": (OPENConfig, Optim4RLConfig),
    "velo": None,  # VeLO's own checkpoint format, no sidecar
}


class OptimizerSpecError(ValueError):
    """An optimizer string that names nothing lopt can build."""


def known_specs() -> str:
    return ", ".join([*HANDCRAFTED, *(f"{p}:PATH" for p in LEARNED_PREFIXES)])


def from_spec(
    spec: str,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    track_noise: bool = False,
    noise_mask: Any = None,
    **overrides: Any,
) -> Optimizer:
    """Builds the optimizer ``spec`` names.

    Args:
      spec: ``adam``, ``rmsprop``, ``lion``, ``sgd``, ``open:PATH``,
        ``optim4rl:PATH``, ``learned:PATH`` or ``velo:PATH``.
      defaults: hyperparameters per hand-crafted optimizer name, e.g. a preset's
        ``{"adam": {"learning_rate": 1e-2, "b1": 0.9, "b2": 0.99, "anneal": True}}``.
      **overrides: hyperparameters that replace the defaults (``None`` values are
        ignored), e.g. ``learning_rate=3e-4``.
      track_noise: a learned optimizer keeps its noise magnitude in its state.
      noise_mask: which parameters a learned optimizer's noise may touch (a tree
        or a function of the params; default: OPEN's, the actor's).

    Raises:
      OptimizerSpecError: an unknown name, or hyperparameters given to a learned
        optimizer. :class:`~lopt.optim.files.OptimizerFileError` for a bad file.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    name, _, path = spec.partition(":")
    name = name.strip().lower()
    if name in HANDCRAFTED and not path:
        hyperparams = {**dict((defaults or {}).get(name, {})), **overrides}
        try:
            optimizer = HANDCRAFTED[name](**hyperparams)
        except TypeError as err:
            raise OptimizerSpecError(f"bad hyperparameters for {name}: {err}") from err
        return _with_spec(optimizer, spec)
    if name in LEARNED_PREFIXES and path:
        if overrides:
            raise OptimizerSpecError(
                f"{spec} is a learned optimizer: it has no {', '.join(overrides)} "
                "to set (hyperparameters apply to adam, rmsprop, lion and sgd)"
            )
        if name == "velo":
            optimizer = velo_family(load_velo(path), name=f"velo:{file_label(path)}")
            return _with_spec(optimizer, f"{name}:{Path(path).resolve()}")
        meta_params, config = load_learned(path)
        if not isinstance(config, LEARNED_PREFIXES[name]):
            right = "optim4rl" if isinstance(config, Optim4RLConfig) else "open"
            raise OptimizerSpecError(
                f"{path} holds a {config.variant} optimizer, which {name}:PATH does "
                f"not load; use {right}:PATH or learned:PATH"
            )
        optimizer = learned_family(
            meta_params,
            config,
            name=f"{config.variant}:{file_label(path)}",
            track_noise=track_noise,
            **({} if noise_mask is None else {"noise_mask": noise_mask}),
        )
        return _with_spec(optimizer, f"{name}:{Path(path).resolve()}")
    raise OptimizerSpecError(f"unknown optimizer {spec!r}; choose from {known_specs()}")


def file_label(path: str) -> str:
    """An optimizer file's name in tables: its stem, or its folder's name for the
    files every run of a kind writes under one name (VeLO's ``<checkpoint>/params``,
    ``lopt meta-train``'s ``<run>/optimizer.npy``), so two runs' files differ."""
    where = Path(path)
    generic = where.name == "params" or where.stem == "optimizer"
    return where.parent.resolve().name if generic else where.stem


def _with_spec(optimizer: Optimizer, spec: str) -> Optimizer:
    return dataclasses.replace(
        optimizer, description={"spec": spec, **optimizer.description}
    )
