"""Optimizers named by a string, as the command line takes them.

``adam``, ``rmsprop``, ``lion`` and ``sgd`` are optax's, with hyperparameters from
the caller (a task preset's tuned values) and optional overrides; ``open:PATH``
loads a learned OPEN optimizer from a ``.npy`` file (:mod:`lopt.optim.files`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lopt.optim.family import HANDCRAFTED, Optimizer, open_family
from lopt.optim.files import load_open

LEARNED_PREFIXES = ("open",)


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
      spec: ``adam``, ``rmsprop``, ``lion``, ``sgd`` or ``open:PATH``.
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
        meta_params, config = load_open(path)
        optimizer = open_family(
            meta_params,
            config,
            name=f"open:{Path(path).stem}",
            track_noise=track_noise,
            **({} if noise_mask is None else {"noise_mask": noise_mask}),
        )
        return _with_spec(optimizer, f"{name}:{Path(path).resolve()}")
    raise OptimizerSpecError(f"unknown optimizer {spec!r}; choose from {known_specs()}")


def _with_spec(optimizer: Optimizer, spec: str) -> Optimizer:
    return dataclasses.replace(
        optimizer, description={"spec": spec, **optimizer.description}
    )
