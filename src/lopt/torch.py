"""OPEN (its ablations and No-Features too) and Optim4RL as ``torch.optim`` optimizers.

The same files lopt writes (and the paper's released ``.npy`` files) load here and
run the same step as :mod:`lopt.optim.open_opt` and :mod:`lopt.optim.optim4rl`,
written in PyTorch: no JAX runs inside ``step``. A test checks the two agree to
1e-5 relative on the same inputs and noise. Needs ``pip install 'lopt[torch]'``.

Example, a PPO loop with a separate actor and critic (OPEN §3.1)::

    from lopt.torch import OPEN, DormancyRecorder, actor_critic_groups, training_prop

    opt = OPEN(actor_critic_groups(actor, critic), "breakout_OPEN.npy")
    recorder = DormancyRecorder(actor, critic)  # forward hooks
    ...
    loss.backward()  # the minibatch's forward pass recorded the activations
    clip_grad_norm_(actor.parameters(), 0.5); clip_grad_norm_(critic.parameters(), 0.5)
    opt.step(
        training_prop=training_prop(iteration, epochs * num_minibatches, num_updates),
        batch_prop=batch_prop(iteration, num_minibatches, epochs),
        dormancy=recorder.scores(),
        generator=generator,  # the actor's learned noise; or noise=... (a tensor)
    )

Parameter groups say which parameters are the actor's (``"actor": True``): they get
the learned noise (override with ``"noise"``) and, for an optimizer with separate
actor and critic meta-parameters, the actor's set. ``"layer_props"`` gives one
``layer_prop`` per parameter of the group; by default it follows the parameter order
(a bias after its weight is the same layer); :func:`actor_critic_groups` derives it
from each module's layers instead.

Layouts: the optimizer works on the concatenation of every parameter that has a
gradient, in group order, each flattened row-major; a noise vector passed to
``step`` is in that order. Its state per parameter holds ``momentum`` of shape
``(numel, 6)`` and ``carry`` of shape ``(numel, carry_size)`` (element-major, the
transpose of the optax state's per-element columns).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as err:  # pragma: no cover - exercised without torch only
    raise ImportError(
        "lopt.torch needs PyTorch; install it with: pip install 'lopt[torch]'"
    ) from err

from lopt.optim.dormancy import SCORE_EPS
from lopt.optim.features import LOG_EPS, MOMENTUM_DECAYS, NORM_EPS
from lopt.optim.network import LN_EPS, OPENConfig
from lopt.optim.optim4rl import Optim4RLConfig

LearnedConfig = OPENConfig | Optim4RLConfig
#: A meta-parameter tree: nested dicts of tensors (or NumPy/JAX arrays), flax layout.
MetaParams = Any

__all__ = [
    "OPEN",
    "DormancyRecorder",
    "OPENNetwork",
    "Optim4RL",
    "Optim4RLNetwork",
    "actor_critic_groups",
    "batch_prop",
    "layer_props",
    "layer_props_from_order",
    "learned_optimizer",
    "load",
    "training_prop",
]


# LOADING -------------------------------------------------------------------------


def _to_torch(tree: MetaParams) -> MetaParams:
    if isinstance(tree, Mapping):
        return {k: _to_torch(v) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return tree.detach().to(torch.float32).clone()
    return torch.tensor(np.asarray(tree, dtype=np.float32))


def load(path: str | os.PathLike) -> tuple[MetaParams, LearnedConfig]:
    """Reads a learned optimizer file (lopt's, or a released ``.npy``).

    Returns:
      ``(meta_params, config)``: the flax-layout tree of float32 tensors and an
      :class:`~lopt.optim.network.OPENConfig` or
      :class:`~lopt.optim.optim4rl.Optim4RLConfig`.

    Raises:
      OptimizerFileError: as :func:`lopt.optim.files.load_learned`.
    """
    from lopt.optim.files import load_learned

    meta_params, config = load_learned(path)
    return _to_torch(meta_params), config


def _resolve(
    meta_params: str | os.PathLike | MetaParams,
    config: LearnedConfig | None,
    kind: type,
) -> tuple[MetaParams, LearnedConfig]:
    """Meta-parameters (a tree or a file) and their configuration, checked."""
    if isinstance(meta_params, str | os.PathLike):
        tree, found = load(meta_params)
        if config is not None and config != found:
            raise ValueError(f"{meta_params} holds {found}, not the given {config}")
        config = found
    else:
        if config is None:
            raise ValueError(
                "meta-parameters given as a tree need their config "
                "(OPENConfig or Optim4RLConfig); a file path needs none"
            )
        tree = _to_torch(meta_params)
    if not isinstance(config, kind):
        other = "Optim4RL" if isinstance(config, Optim4RLConfig) else "OPEN"
        raise ValueError(
            f"this is a {config.variant} optimizer; load it with lopt.torch.{other} "
            "or lopt.torch.learned_optimizer"
        )
    return tree, config


# NETWORKS ------------------------------------------------------------------------


def _t(x: torch.Tensor) -> torch.Tensor:
    """A flax kernel ``(in, out)`` as a torch weight ``(out, in)``."""
    return x.T.contiguous()


def _set(param: nn.Parameter, value: torch.Tensor) -> None:
    if param.shape != value.shape:
        raise ValueError(f"expected shape {tuple(param.shape)}, got {value.shape}")
    param.data.copy_(value)


@contextlib.contextmanager
def _layout_of(config: LearnedConfig):
    """Turns a missing or misshapen meta-parameter into one clear error."""
    try:
        yield
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"meta-parameters do not have the layout of {config}: {err!r}"
        ) from err


def _load_gru(cell: nn.GRUCell, p: Mapping) -> None:
    """flax GRUCell weights into ``nn.GRUCell``: same gates (r, z, n) and formula,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``; flax has no bias on hr, hz."""
    _set(cell.weight_ih, _t(torch.cat([p[k]["kernel"] for k in ("ir", "iz", "in")], 1)))
    _set(cell.bias_ih, torch.cat([p[k]["bias"] for k in ("ir", "iz", "in")]))
    _set(cell.weight_hh, _t(torch.cat([p[k]["kernel"] for k in ("hr", "hz", "hn")], 1)))
    zeros = torch.zeros_like(p["hn"]["bias"])
    _set(cell.bias_hh, torch.cat([zeros, zeros, p["hn"]["bias"]]))


def _load_lstm(cell: nn.LSTMCell, p: Mapping) -> None:
    """flax LSTMCell weights into ``nn.LSTMCell``: gates (i, f, g, o) in both; flax
    has biases on the hidden kernels only."""
    gates = ("i", "f", "g", "o")
    _set(cell.weight_ih, _t(torch.cat([p[f"i{k}"]["kernel"] for k in gates], 1)))
    _set(cell.weight_hh, _t(torch.cat([p[f"h{k}"]["kernel"] for k in gates], 1)))
    _set(cell.bias_ih, torch.zeros_like(cell.bias_ih))
    _set(cell.bias_hh, torch.cat([p[f"h{k}"]["bias"] for k in gates]))


class OPENNetwork(nn.Module):
    """OPEN's per-parameter network (one meta-parameter set): a GRU or LSTM cell
    followed by Dense-LayerNorm-ReLU x 2 and Dense (OPEN §2.4)."""

    def __init__(self, config: OPENConfig):
        super().__init__()
        g, h = config.cell_features, config.hidden_size
        cell = nn.GRUCell if config.cell == "gru" else nn.LSTMCell
        self.cell_type = config.cell
        self.cell = cell(config.num_inputs, g)
        self.mlp = nn.Sequential(
            nn.Linear(g, h),
            nn.LayerNorm(h, eps=LN_EPS),
            nn.ReLU(),
            nn.Linear(h, h),
            nn.LayerNorm(h, eps=LN_EPS),
            nn.ReLU(),
            nn.Linear(h, config.num_outputs),
        )
        self.requires_grad_(False)

    @classmethod
    def from_flax(cls, tree: MetaParams, config: OPENConfig) -> OPENNetwork:
        """The network holding ``tree`` (lopt's layout, :mod:`lopt.optim.network`)."""
        net = cls(config)
        with _layout_of(config):
            cell = tree[config.cell_key]["params"]
            if config.cell == "gru":
                _load_gru(net.cell, cell)
            else:
                _load_lstm(net.cell, cell)
            mlp = tree["params"]["params"]
            for i in (0, 3, 6):
                _set(net.mlp[i].weight, _t(mlp[f"layers_{i}"]["kernel"]))
                _set(net.mlp[i].bias, mlp[f"layers_{i}"]["bias"])
            for i in (1, 4):
                _set(net.mlp[i].weight, mlp[f"layers_{i}"]["scale"])
                _set(net.mlp[i].bias, mlp[f"layers_{i}"]["bias"])
        return net

    def forward(
        self, carry: torch.Tensor, inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``carry`` ``(n, carry_size)`` (LSTM: c then h), ``inputs`` ``(n,
        num_inputs)`` -> ``(new_carry, outputs)``, outputs ``(n, num_outputs)``:
        columns m, e and, with noise, delta."""
        if self.cell_type == "gru":
            carry = h = self.cell(inputs, carry)
        else:
            g = carry.shape[1] // 2
            h, c = self.cell(inputs, (carry[:, g:], carry[:, :g]))
            carry = torch.cat([c, h], 1)
        return carry, self.mlp(h)


class Optim4RLNetwork(nn.Module):
    """Optim4RL's two GRU cells and linear heads (:mod:`lopt.optim.optim4rl`)."""

    def __init__(self, config: Optim4RLConfig):
        super().__init__()
        g = config.cell_features
        self.rnn1, self.rnn2 = nn.GRUCell(1, g), nn.GRUCell(1, g)
        self.mlp1, self.mlp2 = nn.Linear(g, 1), nn.Linear(g, 1)
        self.requires_grad_(False)

    @classmethod
    def from_flax(cls, tree: MetaParams, config: Optim4RLConfig) -> Optim4RLNetwork:
        net = cls(config)
        with _layout_of(config):
            p = tree["params"]
            _load_gru(net.rnn1, p["rnn1"])
            _load_gru(net.rnn2, p["rnn2"])
            for name in ("mlp1", "mlp2"):
                dense = p[name]["layers_0"]
                _set(getattr(net, name).weight, _t(dense["kernel"]))
                _set(getattr(net, name).bias, dense["bias"])
        return net


# SCHEDULE AND LAYER FEATURES ------------------------------------------------------


def training_prop(iteration: int, steps_per_update: int, num_updates: int) -> float:
    """Index of the current update over (updates - 1), from the count of optimizer
    steps done; ``steps_per_update`` is epochs x minibatches for PPO (OPEN §2.3;
    :mod:`lopt.rl.progress`)."""
    update = iteration // steps_per_update
    return update / max(num_updates - 1, 1)


def batch_prop(iteration: int, steps_per_epoch: int, num_epochs: int) -> float:
    """Index of the current epoch over the batch over (epochs - 1);
    ``steps_per_epoch`` is the number of minibatches for PPO."""
    epoch = (iteration // steps_per_epoch) % num_epochs
    return epoch / max(num_epochs - 1, 1)


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


def layer_props(module: nn.Module) -> dict[nn.Parameter, float]:
    """``layer_prop`` of every parameter of ``module``: the index of its layer
    over (layers - 1), shared by a layer's weight and bias (OPEN §2.3).

    A layer is a sub-module holding parameters directly, in registration order (for
    ``nn.Sequential`` the order of its list). A parameter held by ``module`` itself,
    such as a Gaussian actor's ``log_std``, is a layer of its own after the
    sub-modules, as OPEN counts ``log_std`` as the actor's last layer.
    """
    named = list(module.named_parameters())
    owners = [_owner(n) for n, _ in named]
    layers = list(dict.fromkeys(o for o in owners if o))
    layers += [n for n, o in zip((n for n, _ in named), owners, strict=True) if not o]
    index = {layer: i for i, layer in enumerate(layers)}
    last = max(len(layers) - 1, 1)
    return {
        p: index[o or n] / last if len(layers) > 1 else 0.0
        for (n, p), o in zip(named, owners, strict=True)
    }


def layer_props_from_order(params: Sequence[torch.Tensor]) -> list[float]:
    """Layers from parameter order: a 1-D parameter right after a weight whose
    first dimension it matches is that weight's bias; anything else starts a layer."""
    layer, ids = -1, []
    for i, p in enumerate(params):
        prev = params[i - 1] if i else None
        is_bias = (
            prev is not None
            and p.dim() == 1
            and prev.dim() >= 2
            and prev.shape[0] == p.shape[0]
            and ids.count(layer) == 1
        )
        layer += 0 if is_bias else 1
        ids.append(layer)
    last = max(layer, 1)
    return [i / last if layer > 0 else 0.0 for i in ids]


def actor_critic_groups(actor: nn.Module, critic: nn.Module) -> list[dict]:
    """Parameter groups for OPEN: the actor's (noise, actor meta-parameters) and
    the critic's, each with ``layer_props`` from its module's layers."""
    groups = []
    for module, is_actor in ((actor, True), (critic, False)):
        props = layer_props(module)
        params = list(props)
        groups.append(
            {
                "params": params,
                "actor": is_actor,
                "layer_props": [props[p] for p in params],
            }
        )
    return groups


# DORMANCY ------------------------------------------------------------------------


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == "torch.nn.modules.activation" and not any(
        True for _ in module.parameters()
    )


def _channel_axis(layer: nn.Module) -> int:
    return 1 if isinstance(layer, nn.modules.conv._ConvNd) else -1


class DormancyRecorder:
    """Records each layer's mean ``|h|`` per output neuron through forward hooks,
    and gives OPEN's ``dormancy`` input (Sokar et al. 2023; OPEN §2.3).

    A layer is a sub-module holding parameters (``nn.Linear``, ``nn.Conv2d``, ...).
    Its neurons' outputs are read after the activation modules that follow it in an
    ``nn.Sequential`` (``nn.ReLU``, ``nn.Tanh``, ...), or raw for a final layer;
    an activation applied as a function inside ``forward`` is not seen. Each
    forward pass replaces the layer's record, so call :meth:`scores` after the
    minibatch's loss (OPEN uses the current parameters on the minibatch).
    """

    def __init__(self, *modules: nn.Module):
        self._mean_abs: dict[nn.Module, torch.Tensor] = {}
        self._layers: list[nn.Module] = []
        self._handles = []
        for module in modules:
            self._attach(module)

    def _attach(self, root: nn.Module) -> None:
        for parent in root.modules():
            children = list(parent.children())
            for i, layer in enumerate(children):
                if not any(True for _ in layer.parameters(recurse=False)):
                    continue
                out = layer
                if isinstance(parent, nn.Sequential):
                    for follower in children[i + 1 :]:
                        if not _is_activation(follower):
                            break
                        out = follower
                self._hook(layer, out)
        # The root itself may be a layer (a bare nn.Linear).
        if any(True for _ in root.parameters(recurse=False)) and isinstance(
            root, nn.Linear | nn.modules.conv._ConvNd
        ):
            self._hook(root, root)

    def _hook(self, layer: nn.Module, out: nn.Module) -> None:
        if layer in self._layers:
            return
        self._layers.append(layer)
        axis = _channel_axis(layer)

        def record(_module, _inputs, output):
            h = output.detach().abs().movedim(axis, -1)
            self._mean_abs[layer] = h.reshape(-1, h.shape[-1]).float().mean(0)

        self._handles.append(out.register_forward_hook(record))

    def mean_abs(self) -> dict[nn.Module, torch.Tensor]:
        """The last recorded mean ``|h|`` per layer, shape ``(neurons,)``."""
        return dict(self._mean_abs)

    def scores(self) -> dict[nn.Parameter, torch.Tensor]:
        """OPEN's ``dormancy`` input: for every parameter of a recorded layer, the
        normalised scores ``s_j = (a_j + 1e-11) / sum_k |a_k + 1e-11| * N`` of the
        neuron it feeds, shaped to broadcast along its first dimension (a weight's
        output axis in torch). Parameters absent from the result get 1."""
        out = {}
        for layer, a in self._mean_abs.items():
            a = a + SCORE_EPS
            s = a / a.abs().sum() * a.shape[0]
            for p in layer.parameters(recurse=False):
                if p.dim() >= 1 and p.shape[0] == s.shape[0]:
                    out[p] = s.reshape(-1, *([1] * (p.dim() - 1)))
        return out

    def remove(self) -> None:
        """Removes the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


# OPTIMIZERS ----------------------------------------------------------------------


class _Learned(torch.optim.Optimizer):
    """Shared plumbing: parameters with gradients as one flat float32 vector."""

    def _active(self) -> list[tuple[torch.Tensor, dict]]:
        return [
            (p, group)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]

    def _flat_state(
        self, params: list[torch.Tensor], name: str, width: int
    ) -> torch.Tensor:
        for p in params:
            if p not in self.state or name not in self.state[p]:
                self.state[p][name] = torch.zeros(
                    p.numel(), width, dtype=torch.float32, device=p.device
                )
                self.state[p].setdefault("step", 0)
        return torch.cat([self.state[p][name] for p in params])

    def _store(self, params, name: str, flat: torch.Tensor, sizes) -> None:
        for p, chunk in zip(params, flat.split(sizes), strict=True):
            self.state[p][name] = chunk

    @staticmethod
    def _apply(params, update: torch.Tensor, sizes) -> None:
        """``p <- p - update`` for each parameter's slice of ``update``."""
        for p, u in zip(params, update.split(sizes), strict=True):
            p.sub_(u.view_as(p).to(p.dtype))


def _warn_noise(config: OPENConfig, groups: list[dict]) -> None:
    if config.noise and not any(_noised(g) for g in groups):
        warnings.warn(
            "no parameter group is marked as the actor's, so OPEN's learned noise is "
            "added nowhere; mark the actor's group with actor=True (see "
            "lopt.torch.actor_critic_groups) or set noise=True on a group",
            stacklevel=3,
        )


def _noised(group: dict) -> bool:
    return group["actor"] if group["noise"] is None else bool(group["noise"])


class OPEN(_Learned):
    """OPEN (Goldie et al. 2024), an ablation of it or No-Features, as a
    ``torch.optim.Optimizer``; the step of :func:`lopt.optim.open_opt.open_optimizer`.

    Args:
      params: parameters or parameter groups. Group options: ``actor`` (bool,
        default False): the actor's parameters, which get the noise and, with
        ``separate_actor_critic``, the actor's meta-parameters; ``noise`` (bool
        or None): overrides whether the group gets the noise; ``layer_props``
        (one float per parameter; default from parameter order).
      meta_params: a file path, or a meta-parameter tree (flax layout; torch,
        NumPy or JAX arrays) with ``config``.
      config: the architecture; read from the file when a path is given.

    ``step`` needs ``training_prop``, ``batch_prop`` and ``dormancy``, and draws the
    actor's noise from ``generator`` (torch's global generator if None) unless
    ``noise`` is given. After a step, :attr:`last_update` holds the flat step
    ``u`` just applied (``p <- p - u``), in the parameters' flat order.
    """

    def __init__(
        self,
        params: Iterable,
        meta_params: str | os.PathLike | MetaParams,
        config: OPENConfig | None = None,
    ):
        tree, config = _resolve(meta_params, config, OPENConfig)
        defaults = {"actor": False, "noise": None, "layer_props": None}
        super().__init__(params, defaults)
        self.config = config
        if config.separate_actor_critic:
            self.networks = {
                k: OPENNetwork.from_flax(tree[k], config) for k in ("actor", "critic")
            }
        else:
            self.networks = {"shared": OPENNetwork.from_flax(tree, config)}
        self._columns = torch.tensor(config.input_columns)
        self._decays = torch.tensor(MOMENTUM_DECAYS, dtype=torch.float32)
        self.last_update: torch.Tensor | None = None
        for group in self.param_groups:
            props = group["layer_props"]
            if props is not None and len(props) != len(group["params"]):
                raise ValueError(
                    f"layer_props has {len(props)} values for a group of "
                    f"{len(group['params'])} parameters"
                )
        _warn_noise(config, self.param_groups)

    def _layer_props(self, active) -> torch.Tensor:
        props = {}
        for group in self.param_groups:
            values = group["layer_props"] or layer_props_from_order(group["params"])
            props.update(zip(map(id, group["params"]), values, strict=True))
        return torch.tensor([float(props[id(p)]) for p, _ in active])

    @staticmethod
    def _dormancy(active, dormancy, device) -> torch.Tensor:
        if isinstance(dormancy, Mapping):
            values = [dormancy.get(p, 1.0) for p, _ in active]
        else:
            values = [dormancy] * len(active)
        flat = []
        for i, ((p, _), d) in enumerate(zip(active, values, strict=True)):
            d = torch.as_tensor(d, dtype=torch.float32, device=device)
            try:
                flat.append(torch.broadcast_to(d, p.shape).reshape(-1))
            except RuntimeError as err:
                raise ValueError(
                    f"dormancy of parameter {i} (shape {tuple(p.shape)}) has shape "
                    f"{tuple(d.shape)}, which does not broadcast to it"
                ) from err
        return torch.cat(flat)

    def _features(
        self,
        params: list[torch.Tensor],
        sizes: list[int],
        grad: torch.Tensor,
        momentum: torch.Tensor,
        schedule: list[torch.Tensor],
    ) -> torch.Tensor:
        """The network's input ``(n, num_inputs)``: 15 channels normalised per
        tensor, then training_prop, layer_prop, batch_prop and dormancy (§2.3)."""
        p = torch.cat([q.detach().reshape(-1) for q in params]).float()
        raw = torch.cat(
            [
                p[:, None],
                momentum.sign(),
                torch.log(momentum.abs() + LOG_EPS),
                grad.sign()[:, None],
                torch.log(grad.abs() + LOG_EPS)[:, None],
            ],
            1,
        )
        # Each channel over its own tensor's elements (each weight, each bias).
        scale = torch.stack(
            [
                torch.rsqrt(NORM_EPS + chunk.square().mean(0))
                for chunk in raw.split(sizes)
            ]
        )
        n = raw.shape[0]
        counts = torch.tensor(sizes, device=raw.device)
        normalised = raw * scale.repeat_interleave(counts, 0, output_size=n)
        columns = [normalised, *(s.reshape(n, 1) for s in schedule)]
        inputs = torch.cat(columns, 1)
        if len(self._columns) < inputs.shape[1]:
            inputs = inputs[:, self._columns.to(inputs.device)]
        return inputs

    def _network(self, carry, inputs, actor: torch.Tensor):
        if not self.config.separate_actor_critic:
            return self.networks["shared"](carry, inputs)
        out = torch.empty(
            inputs.shape[0], self.config.num_outputs, device=inputs.device
        )
        new_carry = torch.empty_like(carry)
        for name, rows in (("actor", actor), ("critic", ~actor)):
            idx = rows.nonzero().squeeze(1)
            new_carry[idx], out[idx] = self.networks[name](carry[idx], inputs[idx])
        return new_carry, out

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], Any] | None = None,
        *,
        training_prop: float,
        batch_prop: float,
        dormancy: Mapping[torch.Tensor, Any] | float,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> Any:
        """One OPEN step on every parameter that has a gradient.

        Args:
          closure: re-evaluates the loss (torch's convention); optional.
          training_prop, batch_prop: floats in [0, 1] (see :func:`training_prop`).
          dormancy: ``{parameter: scores}`` with scores broadcasting to the
            parameter (:meth:`DormancyRecorder.scores`; absent ones get 1), or one
            number for all (1.0 when no activations are recorded).
          generator: draws the N(0, 1) noise of the noised groups.
          noise: instead, the N(0, 1) draws, shape ``(n,)`` over all active
            parameters in flat order (entries outside noised groups are unused).

        Returns:
          The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        active = self._active()
        if not active:
            return loss
        params = [p for p, _ in active]
        sizes = [p.numel() for p in params]
        device = params[0].device
        config = self.config
        for net in self.networks.values():
            net.to(device)
        counts = torch.tensor(sizes, device=device)
        n = sum(sizes)

        def per_element(values: list) -> torch.Tensor:
            return torch.tensor(values, device=device).repeat_interleave(
                counts, output_size=n
            )

        # MOMENTUM, updated before the features so it includes this gradient
        grad = torch.cat([p.grad.reshape(-1) for p in params]).float()
        decays = self._decays.to(device)
        momentum = (
            decays * self._flat_state(params, "momentum", 6)
            + (1.0 - decays) * grad[:, None]
        )

        # FEATURES AND NETWORK
        ones = torch.ones(n, device=device)
        schedule = [
            ones * float(training_prop),
            self._layer_props(active)
            .to(device)
            .repeat_interleave(counts, output_size=n),
            ones * float(batch_prop),
            self._dormancy(active, dormancy, device),
        ]
        inputs = self._features(params, sizes, grad, momentum, schedule)
        actor = per_element([bool(g["actor"]) for _, g in active]).bool()
        carry = self._flat_state(params, "carry", config.carry_size)
        carry, out = self._network(carry, inputs, actor)

        # UPDATE: deterministic part, the actor's noise, then the zero mean
        update = config.step_mult * out[:, 0] * torch.exp(config.exp_mult * out[:, 1])
        if config.noise:
            mask = per_element([float(_noised(g)) for _, g in active])
            if noise is None:
                noise = torch.randn(n, generator=generator, device=device)
            elif noise.shape != (n,):
                raise ValueError(
                    f"noise has shape {tuple(noise.shape)}; expected ({n},), one "
                    "draw per element of the parameters with gradients"
                )
            noise = noise.to(device=device, dtype=torch.float32)
            update = update + config.step_mult * out[:, 2] * mask * noise
        update = update - update.mean()

        self._apply(params, update, sizes)
        self._store(params, "momentum", momentum, sizes)
        self._store(params, "carry", carry, sizes)
        for p in params:
            self.state[p]["step"] += 1
        self.last_update = update
        return loss


class Optim4RL(_Learned):
    """Optim4RL (Lan et al. 2024) as a ``torch.optim.Optimizer``; the step of
    :func:`lopt.optim.optim4rl.optim4rl_optimizer`:
    ``p <- p - lr * sign(g) * exp(o1) / sqrt(exp(o2) + eps)``.

    ``step`` accepts and ignores OPEN's extra inputs, so one training loop can run
    either. Its state per parameter holds ``carry`` of shape ``(numel, 2 *
    cell_features)``: the two GRUs' states, the gradient's then its square's.
    """

    def __init__(
        self,
        params: Iterable,
        meta_params: str | os.PathLike | MetaParams,
        config: Optim4RLConfig | None = None,
    ):
        tree, config = _resolve(meta_params, config, Optim4RLConfig)
        super().__init__(params, {})
        self.config = config
        self.network = Optim4RLNetwork.from_flax(tree, config)
        self.last_update: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, **ignored: Any) -> Any:
        """One Optim4RL step on every parameter that has a gradient; keyword
        arguments (OPEN's ``training_prop``, ...) are ignored."""
        del ignored
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for p, _ in self._active()]
        if not params:
            return loss
        sizes = [p.numel() for p in params]
        config, net = self.config, self.network.to(params[0].device)
        g = torch.cat([p.grad.reshape(-1) for p in params]).float()
        if config.grad_clip > 0:
            g = g.clamp(-config.grad_clip, config.grad_clip)
        width = config.cell_features
        carry = self._flat_state(params, "carry", 2 * width)
        h1 = net.rnn1(g[:, None], carry[:, :width])
        h2 = net.rnn2(g.square()[:, None], carry[:, width:])
        m = g.sign() * torch.exp(net.mlp1(h1)[:, 0])
        v = torch.exp(net.mlp2(h2)[:, 0])
        step = config.learning_rate * m * torch.rsqrt(v + config.eps)
        self._apply(params, step, sizes)
        self._store(params, "carry", torch.cat([h1, h2], 1), sizes)
        for p in params:
            self.state[p]["step"] += 1
        self.last_update = step
        return loss


def learned_optimizer(
    params: Iterable,
    meta_params: str | os.PathLike | MetaParams,
    config: LearnedConfig | None = None,
) -> OPEN | Optim4RL:
    """:class:`OPEN` or :class:`Optim4RL`, as the file (or ``config``) says."""
    if isinstance(meta_params, str | os.PathLike):
        meta_params, config = load(meta_params)
    if isinstance(config, Optim4RLConfig):
        return Optim4RL(params, meta_params, config)
    return OPEN(params, meta_params, config)
