"""OPEN's step as one fused CPU kernel (C++ through the XLA FFI), and how a step
chooses between it and the pure-JAX reference.

The reference step (:func:`lopt.optim.open_opt.open_step`) builds the 19 features
and every activation of the recurrent cell and the MLP as full ``(num_params,)``
arrays. The fused kernel (``csrc/open_step.cc``, built by ``pip install``) reads
each parameter's gradient, value, momenta, carry and dormancy once and writes its
momenta, carry and update (or the deterministic part and the noise apart) once, in
two passes per tensor (the per-tensor RMS normalisation needs its sums of squares
first). Gradients and parameters are read from their own leaves (no concatenated
copy), each leaf's dormancy from a vector of its neurons (element j of a leaf
reads entry j mod period), and the kernel also returns the update's sum, so the
mean shift needs no pass of its own. It also folds the
normalisation into the input kernel's rows and the tensor-constant features
(``training_prop``, ``layer_prop``, ``batch_prop``) into the gates' bias, and
tabulates the seven sign features' part of each gate by sign pattern, once per
tensor. Results equal the reference's up to float rounding (tests hold every
output to a relative difference of 1e-5).

Which step runs: ``open_optimizer(..., implementation=...)``, else the environment
variable ``LOPT_OPEN_STEP``, else ``"auto"``:

- ``"auto"``: the fused kernel where it covers the step (a GRU network of the
  small (8, 16) or large (16, 32) size, any feature subset, with or without
  noise, shared or separate actor/critic meta-parameters, run on CPU), the
  reference otherwise: on GPUs and TPUs (chosen when the step is lowered), for an
  LSTM cell or another size, or when the kernel was not built (with a warning
  saying why).
- ``"fused"``: as ``"auto"`` but an error where the kernel is missing or does not
  cover the configuration (on a non-CPU backend the reference still runs).

The kernel has no partitioning rule: lopt's executor shards a population with
``shard_map``, so each device runs it on its own members; under plain ``jit``
sharding XLA would gather its inputs onto each device (correct, but slower).
- ``"reference"``: always the pure-JAX step.

``LOPT_OPEN_THREADS`` caps the threads the kernel uses (default: XLA's CPU thread
pool). The result does not depend on it: work is split in fixed chunks whose
partial sums are added in a fixed order, so the step is deterministic.
"""

from __future__ import annotations

import ctypes
import functools
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lopt.optim.features import FEATURE_NAMES, feature_columns
from lopt.optim.network import OPENConfig, centred_dense, gru_kernels

IMPLEMENTATIONS = ("auto", "fused", "reference")
ENV_STEP = "LOPT_OPEN_STEP"
ENV_THREADS = "LOPT_OPEN_THREADS"
#: (cell_features, hidden_size) the kernel is compiled for.
SIZES = ((8, 16), (16, 32))
_TARGET = "lopt_open_step"
_LIBRARY = "_open_step_kernel"


class FusedStepUnavailableError(RuntimeError):
    """The fused step was asked for but cannot run this configuration here."""


def _library_path() -> Path | None:
    override = os.environ.get("LOPT_OPEN_KERNEL")
    if override:
        return Path(override)
    found = sorted(Path(__file__).parent.glob(f"{_LIBRARY}*.so"))
    return found[0] if found else None


@functools.cache
def kernel_error() -> str | None:
    """Why the compiled kernel cannot be used, or None once it is registered."""
    path = _library_path()
    if path is None:
        return (
            f"lopt's fused OPEN kernel ({_LIBRARY}*.so) is not built; reinstall lopt "
            "with a C++17 compiler (`pip install -e .`) to build it"
        )
    try:
        library = ctypes.cdll.LoadLibrary(str(path))
        handler = library.LoptOpenStep
    except (OSError, AttributeError) as err:
        return f"lopt's fused OPEN kernel at {path} cannot be loaded: {err}"
    jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(handler), platform="cpu")
    return None


def config_error(config: OPENConfig) -> str | None:
    """Why the fused kernel does not cover ``config``, or None."""
    if config.cell != "gru":
        return f"the fused OPEN step has no {config.cell} cell"
    if (config.cell_features, config.hidden_size) not in SIZES:
        return (
            f"the fused OPEN step is built for networks of sizes {SIZES}, not "
            f"({config.cell_features}, {config.hidden_size})"
        )
    return None


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(f"{message}; OPEN runs its reference step", stacklevel=3)


def choose(implementation: str | None, config: OPENConfig) -> str:
    """``"fused"`` or ``"reference"`` for ``config``; see the module docstring.

    Raises:
      ValueError: an unknown implementation name.
      FusedStepUnavailableError: ``"fused"`` asked for where it cannot run.
    """
    name = implementation or os.environ.get(ENV_STEP) or "auto"
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"unknown OPEN step implementation {name!r}; choose from "
            f"{', '.join(IMPLEMENTATIONS)}"
        )
    if name == "reference":
        return name
    error = config_error(config) or kernel_error()
    if error is None:
        return "fused"
    if name == "fused":
        raise FusedStepUnavailableError(error)
    _warn_once(error)
    return "reference"


def _pack(meta_params: dict, config: OPENConfig) -> jax.Array:
    """One meta-parameter set in the kernel's layout (csrc/open_step.cc,
    ``Layout``): shape ``(packed_size,)``."""
    w_i, b_i, w_h = gru_kernels(meta_params["gru_params"]["params"])
    # Rows of the features this variant does not read stay zero.
    rows = np.asarray(feature_columns(config.features))
    w_full = jnp.zeros((len(FEATURE_NAMES), w_i.shape[1]), jnp.float32)
    parts = [w_full.at[rows].set(w_i), b_i, w_h]
    parts.append(meta_params["gru_params"]["params"]["hn"]["bias"])
    mlp = meta_params["params"]["params"]
    for dense, norm in (("layers_0", "layers_1"), ("layers_3", "layers_4")):
        kernel, bias = centred_dense(mlp[dense])
        parts += [kernel, bias, mlp[norm]["scale"], mlp[norm]["bias"]]
    pad = 3 - config.num_outputs  # the head is packed with 3 outputs
    parts.append(jnp.pad(mlp["layers_6"]["kernel"], ((0, 0), (0, pad))))
    parts.append(jnp.pad(mlp["layers_6"]["bias"], (0, pad)))
    return jnp.concatenate([jnp.ravel(p).astype(jnp.float32) for p in parts])


def _threads() -> int:
    value = os.environ.get(ENV_THREADS, "0")
    try:
        return max(0, int(value))
    except ValueError as err:
        raise ValueError(f"{ENV_THREADS} must be an integer, got {value!r}") from err


def _dormancy_periods(
    param_leaves: list, dormancy_leaves: list
) -> tuple[jax.Array, np.ndarray]:
    """Each leaf's dormancy as a vector of its period: element j of the leaf (in
    row-major order) reads entry j mod period. A leaf's value broadcasts to the
    parameter, so a scalar has period 1, a vector over the last axis (a layer's
    neurons) the last axis's length; any other shape is broadcast in full.

    Returns:
      ``(values, periods)``: the vectors concatenated, shape ``(sum(periods),)``,
      and the periods, one per leaf (trace-time NumPy).
    """
    values, periods = [], []
    for p, d in zip(param_leaves, dormancy_leaves, strict=True):
        d = jnp.asarray(d, jnp.float32)
        shape = tuple(np.shape(p))
        if d.size == 1:
            period = 1
        elif shape and d.shape[-1:] == shape[-1:] and d.size == shape[-1]:
            period = shape[-1]
        else:
            period = int(np.prod(shape, dtype=np.int64))
            d = jnp.broadcast_to(d, shape)
        values.append(jnp.ravel(d))
        periods.append(period)
    return jnp.concatenate(values), np.asarray(periods, np.int64)


def fused_step(
    meta_params: dict,
    config: OPENConfig,
    *,
    momentum: jax.Array,
    carry: jax.Array,
    grads: list,
    params: list,
    dormancy: list,
    layer_prop: jax.Array,
    training_prop: jax.Array,
    batch_prop: jax.Array,
    key_pair: jax.Array,
    noise_flags: np.ndarray,
    actor_flags: np.ndarray,
    parts: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None, jax.Array]:
    """One OPEN step by the fused kernel (before the zero-mean shift).

    Args:
      meta_params: one meta-parameter tree, or ``{"actor": ..., "critic": ...}``
        with ``config.separate_actor_critic``.
      momentum: shape ``(6, num_params)``; carry: ``(carry_size, num_params)``.
      grads, params: the leaves, in leaf order (each read where it lies: no
        concatenated copy); dormancy: one value per leaf broadcasting to it.
      layer_prop: shape ``(num_tensors,)``; training_prop, batch_prop: scalars.
      key_pair: the noise's Threefry key words, ``(2,)`` uint32.
      noise_flags, actor_flags: per tensor (trace-time NumPy): whether the noise
        applies, whether the actor's meta-parameters apply.
      parts: return the deterministic part and the noise apart; else their sum
        alone (one array less to write and read back).

    Returns:
      ``(momentum, carry, deterministic, noise, total)``: the first four shaped as
      the state and ``(num_params,)`` (noise zero where it does not apply), and
      ``total`` the sum of ``deterministic + noise``, shape ``()`` (for the mean
      shift, so no pass over the update is needed to find it). Without ``parts``:
      ``(momentum, carry, deterministic + noise, None, total)``.
    """
    if config.separate_actor_critic:
        weights = jnp.stack(
            [_pack(meta_params[k], config) for k in ("actor", "critic")]
        )
        sets = np.where(actor_flags, 0, 1).astype(np.int32)
    else:
        weights = _pack(meta_params, config)[None]
        sets = np.zeros(len(params), np.int32)
    sizes = np.asarray([int(np.prod(np.shape(p), dtype=np.int64)) for p in params])
    num_params = int(sizes.sum())
    use_dormancy = "dormancy" in config.features
    if use_dormancy:
        dormancy_values, periods = _dormancy_periods(params, dormancy)
    else:
        dormancy_values, periods = jnp.zeros((1,), jnp.float32), np.ones_like(sizes)
    f32 = jnp.float32
    outputs = (
        jax.ShapeDtypeStruct(momentum.shape, f32),
        jax.ShapeDtypeStruct(carry.shape, f32),
        jax.ShapeDtypeStruct((num_params,), f32),
        jax.ShapeDtypeStruct((num_params if config.noise and parts else 1,), f32),
        jax.ShapeDtypeStruct((), f32),
    )
    # Momenta and carry are updated in place where XLA can give up the inputs
    # (the kernel reads each element before writing it).
    call = jax.ffi.ffi_call(
        _TARGET,
        outputs,
        vmap_method="broadcast_all",
        input_output_aliases={0: 0, 1: 1},
    )
    momentum, carry, det, noise, total = call(
        momentum,
        carry,
        dormancy_values,
        weights,
        jnp.asarray(layer_prop, f32),
        jnp.stack([jnp.asarray(training_prop, f32), jnp.asarray(batch_prop, f32)]),
        key_pair,
        *[jnp.asarray(g, f32) for g in grads],
        *[jnp.asarray(p, f32) for p in params],
        sizes=sizes.astype(np.int64),
        dormancy_periods=periods,
        noise_flags=np.asarray(noise_flags, np.int32),
        sets=sets,
        cell_features=np.int32(config.cell_features),
        hidden_size=np.int32(config.hidden_size),
        noise=bool(config.noise),
        use_dormancy=use_dormancy,
        parts=bool(parts),
        step_mult=np.float32(config.step_mult),
        exp_mult=np.float32(config.exp_mult),
        threads=np.int32(_threads()),
    )
    if not parts:
        return momentum, carry, det, None, total
    if not config.noise:
        noise = jnp.zeros_like(det)
    return momentum, carry, det, noise, total
