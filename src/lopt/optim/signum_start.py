"""OPEN meta-parameters that step like signum (sign of momentum): a starting
point for meta-training.

The paper starts ES from all-zero meta-parameters, whose optimizer does not
move the agent at all; on a short meta-training (the ``cpu`` preset's 40
generations) ES spends half its generations learning to take a step before it
can learn a better one. :func:`signum_start` gives instead meta-parameters whose
deterministic update is ``lr * sign(m_beta)`` (before OPEN's zero-mean shift;
the agent then moves by ``-lr * sign(m_beta)``), with ``m_beta`` the momentum
of decay ``beta`` among OPEN's six, no noise and no other input used: a
hand-crafted optimizer from which ES only has to learn the differences.

How the network carries the sign through (every other weight zero):

- GRU: the update gate's bias is -20, so ``z ~ 0`` and the new carry is the
  candidate ``n = tanh(W x)``: ``n_0 = tanh(3 s)`` and ``n_1 = -n_0`` for the
  normalised sign feature ``s`` (in {-1, 0, 1} divided by its RMS over the
  tensor, which is positive).
- Each Dense + LayerNorm + ReLU layer turns ``(a, -a, 0, ...)`` into
  ``sqrt(H / 2) * (relu(sign a), relu(-sign a), 0, ...)`` (LayerNorm removes the
  magnitude; a zero input stays zero).
- The head's first output (``m`` in ``m * step_mult * exp(e * exp_mult)``) is
  ``lr / step_mult * sign(m_beta)``; ``e`` and the noise output stay zero.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lopt.optim.features import FEATURE_NAMES, MOMENTUM_DECAYS, feature_columns
from lopt.optim.network import MetaParams, OPENConfig, zeros_meta_params

#: ``MetaTrainConfig.init_from`` values of the form ``signum:LR`` start here.
PREFIX = "signum:"
#: The update gate's bias: sigmoid(-20) ~ 2e-9, so the carry is replaced.
_Z_BIAS = -20.0
#: tanh(3) = 0.995: the candidate saturates, whatever the sign feature's RMS.
_GAIN = 3.0


def signum_error(config: object) -> str | None:
    """Why :func:`signum_start` cannot build ``config``'s meta-parameters, or None."""
    if not isinstance(config, OPENConfig):
        return f"a signum start is built for OPEN, not {type(config).__name__}"
    if config.cell != "gru":
        return f"a signum start is built for OPEN's GRU cell, not {config.cell}"
    if "momentum" not in config.features:
        return "a signum start reads the momentum features, which this variant lacks"
    if config.cell_features < 2 or config.hidden_size < 2:
        return "a signum start needs cell_features and hidden_size of 2 or more"
    return None


def parse_signum(init_from: str) -> float | None:
    """The learning rate of a ``signum:LR`` start, or None for other values.

    Raises:
      ValueError: ``signum:`` followed by anything but a finite number > 0.
    """
    if not init_from.startswith(PREFIX):
        return None
    text = init_from[len(PREFIX) :]
    try:
        lr = float(text)
    except ValueError:
        lr = float("nan")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(
            f"--init-from {init_from}: the signum start's learning rate must be a "
            f"number > 0, e.g. {PREFIX}3e-3"
        )
    return lr


def _one_set(config: OPENConfig, lr: float, beta: float) -> MetaParams:
    single = dataclasses.replace(config, separate_actor_critic=False)
    m = jax.tree.map(np.array, zeros_meta_params(single))
    columns = feature_columns(config.features)
    row = columns.index(FEATURE_NAMES.index(f"momentum_sign_{beta}"))
    gru = m["gru_params"]["params"]
    gru["iz"]["bias"][:] = _Z_BIAS
    gru["in"]["kernel"][row, :2] = (_GAIN, -_GAIN)
    mlp = m["params"]["params"]
    mlp["layers_0"]["kernel"][:2, :2] = np.eye(2)
    mlp["layers_3"]["kernel"][:2, :2] = ((1.0, -1.0), (-1.0, 1.0))
    for norm in ("layers_1", "layers_4"):
        mlp[norm]["scale"][:] = 1.0
    # After the second layer one of the two units is sqrt(H / 2), the other 0.
    weight = lr / config.step_mult / np.sqrt(config.hidden_size / 2)
    mlp["layers_6"]["kernel"][:2, 0] = (weight, -weight)
    return jax.tree.map(jnp.asarray, m)


def signum_start(config: OPENConfig, lr: float, beta: float = 0.9) -> MetaParams:
    """Meta-parameters of ``config`` whose update is ``lr * sign(m_beta)``.

    Args:
      config: OPEN or an ablation of it with a GRU cell and the momentum
        features; with ``separate_actor_critic`` both sets are the same.
      lr: the step size (> 0), e.g. a tuned Lion learning rate.
      beta: which momentum's sign, one of ``MOMENTUM_DECAYS``.

    Returns:
      A meta-parameter tree shaped like ``zeros_meta_params(config)``.

    Raises:
      ValueError: a configuration :func:`signum_error` refuses, ``lr <= 0`` or an
        unknown ``beta``.
    """
    error = signum_error(config)
    if error is not None:
        raise ValueError(error)
    if not lr > 0:
        raise ValueError(f"the signum start's learning rate must be > 0, got {lr}")
    if beta not in MOMENTUM_DECAYS:
        raise ValueError(f"beta must be one of OPEN's momenta {MOMENTUM_DECAYS}")
    if config.separate_actor_critic:
        single = _one_set(config, lr, beta)
        return {"actor": single, "critic": single}
    return _one_set(config, lr, beta)
