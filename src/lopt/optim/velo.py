"""VeLO (Metz et al. 2022, "VeLO: Training Versatile Learned Optimizers by Scaling Up",
arXiv 2211.09760) as an optax transformation, and its released checkpoint format.

The architecture is learned_optimization's ``HyperV2`` (Apache-2.0) with the settings
of the released VeLO (``aug12_continue_on_bigger_2xbs_200kstep_bigproblem_v2_5620``,
whose ``config.gin`` sets ``lstm_hidden_size = 512``, ``param_inits = 256`` and
``use_bugged_loss_features = False``; every other setting is HyperV2's default).
Written from its description; the names of the meta-parameter tree are the
checkpoint's, so a downloaded file loads as it is. Each step:

1. *Per-tensor LSTM* (one row per parameter tensor, shared weights). Its 30 inputs
   (:data:`LSTM_INPUT_NAMES`, in this order): a tanh embedding of the fraction of
   training done at 9 timescales; 9 loss features (exponential moving averages of
   the loss at 10 timescales, each relative to its running minimum); the log of the
   mean second moment, the one-hot rank (number of axes longer than 1, 5 classes),
   the log variance of the 3 momenta and of the second moment about the momenta's
   mean (HyperV2's formula, kept because the weights were trained with it); tensors
   are first divided by the RMS of their parameters. A mixing layer adds the
   element-wise maximum over all tensors of ``relu(Linear(x))`` to ``Linear(x)``,
   then the LSTM (512 units, forget-gate bias 1) gives per tensor 256 *controls*
   and a step multiplier ``lr_mult``.
2. *Per-parameter MLP*: its weights are ``100 * mean_k(control_k * bank_k)`` over a
   bank of 256 MLPs (30 -> 4 -> 4 -> 3, ReLU), so each tensor gets its own MLP. Its
   30 inputs (:data:`MLP_INPUT_NAMES`) are the gradient (raw and clipped to
   ±0.1), the parameter, momenta at decays 0.9/0.99/0.999, the second moment at
   0.999 and quantities derived from them, and Adafactor-style row and column
   second moments at 0.9/0.99/0.999; each input channel is divided by its RMS over
   the tensor.
3. *Update*: ``-direction * exp(0.001 * magnitude) * 0.001 * lr_mult * rms(p)``
   with ``direction, magnitude`` the MLP's first two outputs.

VeLO reads the loss: ``update`` needs the keyword ``loss`` (lopt's PPO passes its
total loss on the minibatch). Its only setting is the step budget, the
``num_steps`` of :func:`velo_optimizer`. The released wrapper (``prefab``)
accumulates gradients when the budget exceeds 150,000 steps; lopt does not, so
longer runs are beyond VeLO's meta-training horizon.

The released weights (about 9 MB) are not bundled with lopt; see
:func:`load_velo` for the formats it reads.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.atomic import atomic_write
from lopt.optim.optimizer import Optimizer

MOMENTUM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAYS = (0.999,)
ADAFACTOR_DECAYS = (0.9, 0.99, 0.999)
FF_HIDDEN_SIZE = 4
FF_HIDDEN_LAYERS = 2
FF_OUTPUTS = 3
EXP_MULT = 1e-3
STEP_MULT = 1e-3
NUM_LOSS_DECAYS = 10
FRACTION_TIMESCALES = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
MAX_TRAINING_STEPS = 150_000
"""the released wrapper's horizon; beyond it, it accumulates gradients"""

_M, _R, _F = len(MOMENTUM_DECAYS), len(RMS_DECAYS), len(ADAFACTOR_DECAYS)

#: Inputs of the per-parameter MLP (one weight block ``w0__i`` each) and widths.
MLP_INPUT_NAMES = (
    ("g", 1),
    ("g_clipped", 1),
    ("p", 1),
    ("momentum", _M),
    ("rms", _R),
    ("momentum_over_rms", _M),
    ("rsqrt_rms", _R),
    ("adafactor_g", _F),
    ("g_over_rms", _R),
    ("row", _F),
    ("col", _F),
    ("rsqrt_row", _F),
    ("rsqrt_col", _F),
    ("adafactor_momentum", _F),
)
NUM_MLP_INPUTS = sum(w for _, w in MLP_INPUT_NAMES)  # 30

#: Inputs of the per-tensor LSTM (HyperV2 concatenates them sorted by name).
LSTM_INPUT_NAMES = (
    ("fraction_left", len(FRACTION_TIMESCALES)),
    ("loss_features", NUM_LOSS_DECAYS - 1),
    ("mean_rms", _R),
    ("rank", 5),
    ("var_m", _M),
    ("var_rms", _M),
)
NUM_LSTM_INPUTS = sum(w for _, w in LSTM_INPUT_NAMES)  # 30

RNN_MODULES = ("linear", "linear_1", "linear_2", "rnn/linear")
"""haiku's names: ``linear`` (a mixing layer whose output HyperV2 never uses),
``linear_1`` (mixing, max-pooled over tensors), ``linear_2`` (mixing), the LSTM's
gates ``rnn/linear``; then ``rnn_to_controls`` and ``step_size``"""

MetaParams = dict


class VeLOFileError(ValueError):
    """A VeLO weights file that cannot be used, with what was wrong."""


@dataclasses.dataclass(frozen=True)
class VeLOConfig:
    """The sizes a VeLO checkpoint fixes (the released one: 512 and 256)."""

    lstm_hidden_size: int = 512
    param_inits: int = 256
    """size of the bank of per-parameter MLPs the LSTM mixes"""

    @property
    def num_meta_params(self) -> int:
        h, k = self.lstm_hidden_size, self.param_inits
        mixing = 3 * (NUM_LSTM_INPUTS * h + h)
        lstm = (2 * h) * (4 * h) + 4 * h  # gates read [mixed input, hidden]
        heads = (h * k + k) + (h + 1)
        return mixing + lstm + heads + 2 * h + k * _mlp_size()


def _mlp_size() -> int:
    sizes = [NUM_MLP_INPUTS, *[FF_HIDDEN_SIZE] * FF_HIDDEN_LAYERS, FF_OUTPUTS]
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def config_of(meta_params: MetaParams) -> VeLOConfig:
    """The sizes of a meta-parameter tree."""
    h = np.shape(meta_params["lstm_init_state"]["hidden"])[-1]
    k = np.shape(meta_params["rnn_params"]["rnn_to_controls"]["b"])[-1]
    return VeLOConfig(int(h), int(k))


def _shapes(config: VeLOConfig) -> dict:
    """The meta-parameter tree of ``config``: leaf shapes, checkpoint names."""
    h, k = config.lstm_hidden_size, config.param_inits
    rnn = {name: {"w": (NUM_LSTM_INPUTS, h), "b": (h,)} for name in RNN_MODULES[:3]}
    rnn["rnn/linear"] = {"w": (2 * h, 4 * h), "b": (4 * h,)}
    rnn["rnn_to_controls"] = {"w": (h, k), "b": (k,)}
    rnn["step_size"] = {"w": (h, 1), "b": (1,)}
    mlp = {
        f"w0__{i}": (k, w, FF_HIDDEN_SIZE) for i, (_, w) in enumerate(MLP_INPUT_NAMES)
    }
    sizes = [FF_HIDDEN_SIZE] * FF_HIDDEN_LAYERS + [FF_OUTPUTS]
    mlp["b0"] = (k, sizes[0])
    for i in range(1, len(sizes)):
        mlp[f"w{i}"] = (k, sizes[i - 1], sizes[i])
        mlp[f"b{i}"] = (k, sizes[i])
    return {
        "lstm_init_state": {"hidden": (1, h), "cell": (1, h)},
        "rnn_params": rnn,
        "ff_mod_stack": {"~": mlp},
    }


def velo_random(key: jax.Array, config: VeLOConfig = VeLOConfig()) -> MetaParams:
    """Random meta-parameters with VeLO's shapes and HyperV2's initialisers.

    Weights are truncated normal with standard deviation ``1 / sqrt(fan_in)``
    (the MLP bank's first layer uses the MLP's whole input width as fan-in),
    biases and the LSTM's initial state are zero. For tests and shape checks:
    an untrained VeLO takes arbitrary steps.
    """
    shapes = _shapes(config)
    paths, treedef = jax.tree.flatten_with_path(
        shapes, is_leaf=lambda x: isinstance(x, tuple)
    )
    sizes = [int(np.prod(shape)) for _, shape in paths]
    # One draw for every leaf (one compilation), cut into leaves.
    draws = np.split(
        np.asarray(jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes),))),
        np.cumsum(sizes)[:-1],
    )
    leaves = []
    for (path, shape), draw in zip(paths, draws, strict=True):
        name = path[-1].key
        if name.startswith("w"):
            fan_in = NUM_MLP_INPUTS if name.startswith("w0__") else shape[-2]
            leaves.append(jnp.asarray(draw.reshape(shape) / np.sqrt(fan_in)))
        else:
            leaves.append(jnp.zeros(shape, jnp.float32))
    return jax.tree.unflatten(treedef, leaves)


def check_meta_params(meta_params: Any, config: VeLOConfig | None = None) -> None:
    """Raises :class:`VeLOFileError` unless ``meta_params`` has VeLO's tree and
    shapes."""
    config = config or config_of(meta_params)
    want = _shapes(config)
    want_flat = dict(_flat_items(want, is_leaf=lambda x: isinstance(x, tuple)))
    have_flat = dict(_flat_items(meta_params))
    missing = sorted(set(want_flat) - set(have_flat))
    extra = sorted(set(have_flat) - set(want_flat))
    if missing or extra:
        raise VeLOFileError(
            "not a VeLO (HyperV2) parameter tree: "
            + (f"missing {', '.join(missing[:5])}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {', '.join(extra[:5])}" if extra else "")
        )
    for name, shape in want_flat.items():
        got = tuple(np.shape(have_flat[name]))
        # Under jax.vmap a population of meta_params has a leading axis; accept it.
        if got[-len(shape) :] != shape:
            raise VeLOFileError(
                f"{name} has shape {got}, expected {shape} for LSTM width "
                f"{config.lstm_hidden_size} and {config.param_inits} MLPs"
            )


def _flat_items(tree: Any, is_leaf=None) -> list[tuple[str, Any]]:
    """``("group/module/leaf", value)`` pairs; haiku module names keep their ``/``."""
    items = jax.tree.flatten_with_path(tree, is_leaf=is_leaf)[0]
    return [("/".join(str(p.key) for p in path), v) for path, v in items]


# CHECKPOINT FILES ------------------------------------------------------------


def _namedtuple_fields(node: dict, path: Path) -> dict:
    """haiku's ``LSTMState(hidden, cell)`` as flax wrote it: ``{hidden, cell}``
    (flax >= 0.4), or ``{name, fields, values}`` (earlier flax)."""
    if {"hidden", "cell"} <= set(node):
        return {"hidden": node["hidden"], "cell": node["cell"]}
    if {"fields", "values"} <= set(node):
        names = {str(v): k for k, v in node["fields"].items()}
        if {"hidden", "cell"} <= set(names):
            return {n: node["values"][names[n]] for n in ("hidden", "cell")}
    raise VeLOFileError(
        f"{path}: lstm_init_state holds {sorted(node)}, not an LSTM state "
        "(hidden, cell)"
    )


def _from_checkpoint_dict(state: Any, path: Path) -> MetaParams:
    if not isinstance(state, dict):
        raise VeLOFileError(f"{path}: holds a {type(state).__name__}, not a tree")
    meta_params = state.get(
        "params", state
    )  # a ParameterCheckpoint, or bare meta_params
    if not isinstance(meta_params, dict) or not {
        "lstm_init_state",
        "rnn_params",
        "ff_mod_stack",
    } <= set(meta_params):
        found = sorted(meta_params) if isinstance(meta_params, dict) else meta_params
        raise VeLOFileError(
            f"{path}: no lstm_init_state, rnn_params and ff_mod_stack at the top "
            f"(found {found!r}); "
            "expected VeLO's (HyperV2's) params"
        )
    out = {
        "lstm_init_state": _namedtuple_fields(meta_params["lstm_init_state"], path),
        "rnn_params": meta_params["rnn_params"],
        "ff_mod_stack": meta_params["ff_mod_stack"],
    }
    return jax.tree.map(lambda x: np.asarray(x, np.float32), out)


def _read_msgpack(path: Path) -> MetaParams:
    from flax import serialization

    try:
        state = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types
        raise VeLOFileError(
            f"{path}: not a flax msgpack checkpoint ({type(err).__name__}: {err}); "
            "expected VeLO's released 'params' file or an .npz"
        ) from err
    return _from_checkpoint_dict(state, path)


def _read_npz(path: Path) -> MetaParams:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise VeLOFileError(f"{path}: not a readable .npz ({err})") from err
    meta_params: dict = {}
    with archive:
        for key in archive.files:
            group, _, rest = key.partition("/")
            module, _, leaf = rest.rpartition("/")
            if not rest:
                raise VeLOFileError(
                    f"{path}: key {key!r} is not 'group/module/leaf' (e.g. "
                    "'rnn_params/rnn/linear/w', 'lstm_init_state/hidden')"
                )
            node = meta_params.setdefault(group, {})
            if module:
                node = node.setdefault(module, {})
            node[leaf] = archive[key]
    return _from_checkpoint_dict(meta_params, path)


def _check_gin(path: Path, config: VeLOConfig) -> None:
    """Checks the ``config.gin`` beside a released ``params`` file, if any."""
    gin = path.parent / "config.gin"
    if path.name != "params" or not gin.is_file():
        return
    supported = {
        "lstm_hidden_size": str(config.lstm_hidden_size),
        "param_inits": str(config.param_inits),
        "use_bugged_loss_features": "False",
    }
    for line in gin.read_text().replace("\\\n", "").splitlines():
        found = re.match(r"^\s*(?:[\w/]*/)?HyperV2\.(\w+)\s*=\s*(.+?)\s*$", line)
        if not found:
            continue
        name, value = found.groups()
        if supported.get(name) != value:
            raise VeLOFileError(
                f"{gin}: sets HyperV2.{name} = {value}; lopt's VeLO supports only "
                + ", ".join(f"{k} = {v}" for k, v in supported.items())
            )


def load_velo(path: str | Path) -> MetaParams:
    """Reads VeLO's meta-parameters.

    Accepted: the released checkpoint, i.e. the file ``params`` (a flax msgpack
    ``ParameterCheckpoint(params, gen_id, step)``) or the folder holding it and
    its ``config.gin`` (then checked: only HyperV2's ``lstm_hidden_size``,
    ``param_inits`` and ``use_bugged_loss_features = False`` may be set); or an
    ``.npz`` whose keys are the tree paths, e.g. ``rnn_params/rnn/linear/w``,
    ``ff_mod_stack/~/w0__0``, ``lstm_init_state/hidden`` (see :func:`save_velo`).

    Raises:
      VeLOFileError: a missing or unreadable file, or a tree that is not VeLO's.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "params"
    if not path.is_file():
        raise VeLOFileError(
            f"{path}: no such file; download VeLO's 'params' (and 'config.gin') "
            "from https://storage.googleapis.com/gresearch/learned_optimization/"
            "pretrained_lopts/aug12_continue_on_bigger_2xbs_200kstep_bigproblem_v2_5620/"
        )
    meta_params = _read_npz(path) if path.suffix == ".npz" else _read_msgpack(path)
    config = config_of(meta_params)
    check_meta_params(meta_params, config)
    _check_gin(path, config)
    return meta_params


def save_velo(path: str | Path, meta_params: MetaParams) -> Path:
    """Writes meta-parameters as ``.npz`` (suffix ``.npz``) or, for any other
    name, in the released checkpoint's msgpack format."""
    path = Path(path)
    check_meta_params(meta_params)
    arrays = {k: np.asarray(v, np.float32) for k, v in _flat_items(meta_params)}
    if path.suffix == ".npz":
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path
    from flax import serialization

    tree = jax.tree.map(lambda x: np.asarray(x, np.float32), meta_params)
    data = serialization.msgpack_serialize({"params": tree, "gen_id": "", "step": 0})
    atomic_write(path, lambda f: f.write(data))
    return path


# THE OPTIMIZER ---------------------------------------------------------------


class VeLOState(NamedTuple):
    """VeLO's state; per-parameter accumulators have a trailing decay axis."""

    iteration: jax.Array  # shape=(), int32: updates applied so far
    momentum: Any  # leaves p.shape + (3,): gradient EMAs at MOMENTUM_DECAYS
    rms: Any  # leaves p.shape + (1,): squared-gradient EMA at RMS_DECAYS
    row: Any  # leaves: Adafactor row second moments, shape (0, 3) if unfactored
    col: Any  # leaves: Adafactor column second moments, shape (0, 3) if unfactored
    diag: Any  # leaves p.shape + (3,) where unfactored, else shape (0, 3)
    lstm_hidden: jax.Array  # shape=(num_tensors, lstm_hidden_size)
    lstm_cell: jax.Array  # shape=(num_tensors, lstm_hidden_size)
    loss_means: jax.Array  # shape=(10,): loss EMAs (no bias correction)
    loss_min: jax.Array  # shape=(10,): running minimum of the corrected EMAs


def factored_dims(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(d1, d0)``: the second-largest and largest axes (ties by NumPy's argsort),
    for tensors of rank >= 2; ``None`` otherwise (Adafactor's choice)."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    return int(order[-2]), int(order[-1])


def loss_decays(num_steps: int) -> np.ndarray:
    """Decays of the 10 loss EMAs: half-lives log-spaced from 10 to ``num_steps``."""
    halflife = np.logspace(1, np.log10(max(num_steps, 1)), NUM_LOSS_DECAYS)
    return np.exp(-1.0 / halflife).astype(np.float32)


def _safe_rsqrt(x):
    return jax.lax.rsqrt(jnp.maximum(x, 1e-9))


def _clip_log_abs(v, scale=1.0):
    return jnp.clip(jnp.log(1e-8 + jnp.abs(v * scale)), -5.0, 5.0) * 0.5


def _rms_normalise(x, axes):
    return x * jax.lax.rsqrt(1e-5 + jnp.mean(jnp.square(x), axis=axes, keepdims=True))


def _init_leaf(p):
    shape = p.shape
    dims = factored_dims(shape)
    empty = jnp.zeros((0, _F), jnp.float32)
    if dims is None:
        return empty, empty, jnp.zeros((*shape, _F), jnp.float32)
    d1, d0 = dims
    row = jnp.zeros((*np.delete(shape, d0), _F), jnp.float32)
    col = jnp.zeros((*np.delete(shape, d1), _F), jnp.float32)
    return row, col, empty


def _update_adafactor(g, row, col, diag):
    """New ``(row, col, diag)`` and the Adafactor-preconditioned gradient per decay."""
    d = jnp.asarray(ADAFACTOR_DECAYS, jnp.float32)
    g2 = jnp.square(g) + 1e-30
    dims = factored_dims(g.shape)
    if dims is None:
        diag = d * diag + (1 - d) * g2[..., None]
        return row, col, diag, g[..., None] * _safe_rsqrt(diag + 1e-9)
    d1, d0 = dims
    row = d * row + (1 - d) * jnp.mean(g2, axis=d0)[..., None]
    col = d * col + (1 - d) * jnp.mean(g2, axis=d1)[..., None]
    row_factor, col_factor = _adafactor_factors(row, col, d1, d0)
    fac_g = (
        g[..., None] * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1)
    )
    return row, col, diag, fac_g


def _adafactor_factors(row, col, d1, d0):
    reduced_d1 = d1 - 1 if d1 > d0 else d1
    row_mean = jnp.mean(row, axis=reduced_d1, keepdims=True)
    return _safe_rsqrt(row / (row_mean + 1e-9)), _safe_rsqrt(col)


def _lstm_inputs(p, g, m, rms, fraction_trained, loss_features):
    """The 30 LSTM inputs of one tensor (:data:`LSTM_INPUT_NAMES`), shape (30,)."""
    scale = jax.lax.rsqrt(jnp.maximum(1e-9, jnp.mean(jnp.square(p))))
    m, rms = m * scale, rms * scale
    axes = tuple(range(p.ndim))
    fraction = jnp.tanh(
        (fraction_trained - jnp.asarray(FRACTION_TIMESCALES, jnp.float32)) * 10
    )
    mean_m = jnp.mean(m, axis=axes, keepdims=True)
    var_m = jnp.mean(jnp.square(m - mean_m), axis=axes)
    mean_rms = jnp.mean(rms, axis=axes).reshape(_R)
    # HyperV2 centres the second moment on the momenta's mean (3 values): kept.
    var_rms = jnp.mean(jnp.square(rms - mean_m), axis=axes)
    rank = jax.nn.one_hot(int(np.sum(np.asarray(p.shape) > 1)), 5)
    return jnp.concatenate(
        [
            fraction,
            loss_features,
            _clip_log_abs(mean_rms, 10.0),
            rank,
            _clip_log_abs(var_m, 10.0),
            _clip_log_abs(var_rms, 10.0),
        ]
    )


def _mlp_inputs(p, g, m, rms, fac_g, row, col, diag):
    """The per-parameter MLP's inputs (:data:`MLP_INPUT_NAMES`), each of shape
    ``p.shape + (width,)``."""
    gx = g[..., None]
    rsqrt = jax.lax.rsqrt(rms + 1e-6)
    inputs = [gx, jnp.clip(gx, -0.1, 0.1), p[..., None], m, rms, m * rsqrt, rsqrt]
    inputs += [fac_g, gx * rsqrt]
    dims = factored_dims(p.shape)
    if dims is None:
        inputs += [diag, diag, jax.lax.rsqrt(diag + 1e-8), jax.lax.rsqrt(diag + 1e-8)]
        inputs.append(m * diag**-0.5)
    else:
        d1, d0 = dims
        full = (*p.shape, _F)
        row_feat = jnp.broadcast_to(jnp.expand_dims(row, d0), full)
        col_feat = jnp.broadcast_to(jnp.expand_dims(col, d1), full)
        inputs += [row_feat, col_feat]
        inputs += [jax.lax.rsqrt(row_feat + 1e-8), jax.lax.rsqrt(col_feat + 1e-8)]
        row_factor, col_factor = _adafactor_factors(row, col, d1, d0)
        inputs.append(
            m * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1)
        )
    return inputs


def _apply_mlp(weights: dict, inputs: list, axes: tuple) -> jax.Array:
    """The per-parameter MLP on RMS-normalised inputs; shape ``p.shape + (3,)``.

    Each input channel is normalised on its own, so the inputs are concatenated
    and the first layer's blocks ``w0__i`` stacked: one matrix product."""
    x = _rms_normalise(jnp.concatenate(inputs, axis=-1), axes)
    w0 = jnp.concatenate([weights[f"w0__{i}"] for i in range(len(inputs))], axis=0)
    h = x @ w0 + weights["b0"]
    for i in range(1, FF_HIDDEN_LAYERS + 1):
        h = jax.nn.relu(h) @ weights[f"w{i}"] + weights[f"b{i}"]
    return h


def _rnn(rnn: dict, x: jax.Array, hidden: jax.Array, cell: jax.Array):
    """Mixing layers and the LSTM over tensors; ``x`` shape (num_tensors, 30)."""

    def linear(name, v):
        return v @ rnn[name]["w"] + rnn[name]["b"]

    pooled = jnp.max(jax.nn.relu(linear("linear_1", x)), axis=0, keepdims=True)
    x = linear("linear_2", x) + pooled
    gates = linear("rnn/linear", jnp.concatenate([x, hidden], axis=-1))
    i, g, f, o = jnp.split(gates, 4, axis=-1)
    cell = jax.nn.sigmoid(f + 1.0) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
    hidden = jax.nn.sigmoid(o) * jnp.tanh(cell)
    controls = linear("rnn_to_controls", hidden)
    lr_mult = linear("step_size", hidden)[:, 0]
    return controls, lr_mult, hidden, cell


def _loss_step(state: VeLOState, loss: jax.Array, decays: np.ndarray):
    """Updates the loss EMAs; returns them, the running minimum and 9 features."""
    t = state.iteration.astype(jnp.float32)
    loss = jnp.asarray(loss, jnp.float32)
    corrected = state.loss_means / (1 - decays ** (t + 1))
    approx_max = jnp.where(state.iteration == 0, loss, jnp.max(corrected))
    loss = jnp.minimum(jnp.abs(approx_max) * 2, loss)  # tames loss spikes
    means = state.loss_means * decays + loss * (1 - decays)
    corrected = means / (1 - decays ** (t + 1))
    loss_min = jnp.minimum(state.loss_min, corrected)
    # Each EMA against the next-longer one, relative to its running minimum.
    spread = jnp.maximum(1e-8, corrected[1:] - loss_min[:-1])
    features = jnp.clip((corrected[:-1] - loss_min[:-1]) / spread - 1.0, -1.0, 1.0)
    features = jnp.where(state.iteration + 1 <= 2, 0.0, features)
    return means, loss_min, features


def velo_optimizer(
    meta_params: MetaParams, num_steps: int
) -> optax.GradientTransformationExtraArgs:
    """VeLO for a run of ``num_steps`` updates, as an optax transformation.

    Args:
      meta_params: meta-parameters (:func:`load_velo`, :func:`velo_random`); may be a
        tracer, so a population can be vmapped.
      num_steps: the step budget (VeLO's only setting): the fraction of training
        done, an LSTM input, is ``updates so far / num_steps``.

    Returns:
      A transformation whose ``update(grads, state, params, *, loss)`` needs the
      current params and the scalar loss whose gradient ``grads`` is; other extra
      arguments are ignored.
    """
    if num_steps < 1:
        raise ValueError(f"VeLO needs a positive step budget, got {num_steps}")
    decays = loss_decays(num_steps)
    hidden_size = np.shape(meta_params["lstm_init_state"]["hidden"])[-1]

    def init_fn(params: Any) -> VeLOState:
        leaves, treedef = jax.tree.flatten(params)
        accumulators = [_init_leaf(p) for p in leaves]
        n = len(leaves)

        def per_leaf(width):
            return jax.tree.unflatten(
                treedef, [jnp.zeros((*p.shape, width), jnp.float32) for p in leaves]
            )

        def tile(x):
            return jnp.broadcast_to(jnp.reshape(x, (1, hidden_size)), (n, hidden_size))

        return VeLOState(
            iteration=jnp.zeros((), jnp.int32),
            momentum=per_leaf(_M),
            rms=per_leaf(_R),
            row=jax.tree.unflatten(treedef, [a[0] for a in accumulators]),
            col=jax.tree.unflatten(treedef, [a[1] for a in accumulators]),
            diag=jax.tree.unflatten(treedef, [a[2] for a in accumulators]),
            lstm_hidden=tile(meta_params["lstm_init_state"]["hidden"]).astype(
                jnp.float32
            ),
            lstm_cell=tile(meta_params["lstm_init_state"]["cell"]).astype(jnp.float32),
            loss_means=jnp.zeros((NUM_LOSS_DECAYS,), jnp.float32),
            loss_min=jnp.full((NUM_LOSS_DECAYS,), 1e12, jnp.float32),
        )

    def update_fn(
        updates: Any,
        state: VeLOState,
        params: Any = None,
        *,
        loss: jax.Array,
        **extra_args: Any,
    ) -> tuple[Any, VeLOState]:
        del extra_args  # OPEN's inputs (key, training_prop, ...) are not VeLO's
        if params is None:
            raise ValueError(
                "velo_optimizer needs the current params: call "
                "update(grads, state, params, loss=...)"
            )
        treedef = jax.tree.structure(params)
        p_leaves = [jnp.asarray(p, jnp.float32) for p in treedef.flatten_up_to(params)]
        g_leaves = [
            jnp.clip(jnp.asarray(g, jnp.float32), -1000.0, 1000.0)
            for g in treedef.flatten_up_to(updates)
        ]

        def leaves(tree):
            return treedef.flatten_up_to(tree)

        loss_means, loss_min, loss_features = _loss_step(state, loss, decays)
        fraction_trained = state.iteration / jnp.float32(num_steps)

        # PER-TENSOR LSTM (on the accumulators before this step, as HyperV2)
        lstm_in = jnp.stack(
            [
                _lstm_inputs(p, g, m, r, fraction_trained, loss_features)
                for p, g, m, r in zip(
                    p_leaves,
                    g_leaves,
                    leaves(state.momentum),
                    leaves(state.rms),
                    strict=True,
                )
            ]
        )
        controls, lr_mult, hidden, cell = _rnn(
            meta_params["rnn_params"], lstm_in, state.lstm_hidden, state.lstm_cell
        )

        # PER-PARAMETER MLP
        # Each tensor's MLP: 100 * the control-weighted mean of the bank's MLPs.
        mixed = jax.tree.map(
            lambda w: jnp.tensordot(controls, w, axes=1) * (100.0 / controls.shape[-1]),
            meta_params["ff_mod_stack"]["~"],
        )
        new = {k: [] for k in ("momentum", "rms", "row", "col", "diag", "step")}
        for i, (p, g, m, r, row, col, diag) in enumerate(
            zip(
                p_leaves,
                g_leaves,
                leaves(state.momentum),
                leaves(state.rms),
                leaves(state.row),
                leaves(state.col),
                leaves(state.diag),
                strict=True,
            )
        ):
            m = (
                jnp.asarray(MOMENTUM_DECAYS) * m
                + (1 - jnp.asarray(MOMENTUM_DECAYS)) * g[..., None]
            )
            r = (
                jnp.asarray(RMS_DECAYS) * r
                + (1 - jnp.asarray(RMS_DECAYS)) * (jnp.square(g)[..., None])
            )
            row, col, diag, fac_g = _update_adafactor(g, row, col, diag)
            for name, value in zip(
                ("momentum", "rms", "row", "col", "diag"),
                (m, r, row, col, diag),
                strict=True,
            ):
                new[name].append(value)
            # A scalar parameter is treated as a vector of one, as HyperV2 does.
            q, gq = p.reshape(p.shape or (1,)), g.reshape(g.shape or (1,))
            mq, rq = m.reshape((*q.shape, _M)), r.reshape((*q.shape, _R))
            fq = fac_g.reshape((*q.shape, _F))
            dq = diag if p.shape else diag.reshape((1, _F))
            weights = jax.tree.map(lambda w, i=i: w[i], mixed)
            out = _apply_mlp(
                weights,
                _mlp_inputs(q, gq, mq, rq, fq, row, col, dq),
                tuple(range(q.ndim)),
            )
            direction, magnitude = out[..., 0], out[..., 1]
            param_scale = jnp.sqrt(jnp.mean(jnp.square(q)) + 1e-9)
            step = (
                direction * param_scale * jnp.exp(magnitude * EXP_MULT) * STEP_MULT
            ) * lr_mult[i]
            new["step"].append(-step.reshape(p.shape))

        def tree(name):
            return jax.tree.unflatten(treedef, new[name])

        out_updates = jax.tree.map(
            lambda u, p: u.astype(jnp.asarray(p).dtype), tree("step"), params
        )
        return out_updates, VeLOState(
            iteration=state.iteration + 1,
            momentum=tree("momentum"),
            rms=tree("rms"),
            row=tree("row"),
            col=tree("col"),
            diag=tree("diag"),
            lstm_hidden=hidden,
            lstm_cell=cell,
            loss_means=loss_means,
            loss_min=loss_min,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def velo_family(meta_params: MetaParams, *, name: str = "velo") -> Optimizer:
    """VeLO with ``meta_params`` as its (vmappable) parameters; ``build(meta_params,
    num_steps)`` takes the run's optimizer steps as VeLO's step budget."""
    config = config_of(meta_params)
    return Optimizer(
        name=name,
        build=velo_optimizer,
        params=jax.tree.map(jnp.asarray, meta_params),
        description={"name": name, **dataclasses.asdict(config)},
        learned=True,
    )
