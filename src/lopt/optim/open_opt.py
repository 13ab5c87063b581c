"""OPEN as an optax transformation (Goldie et al. 2024, arXiv 2407.07082, §2).

For every scalar parameter, with clipped gradient g:

1. the six momenta are updated with g (no bias correction);
2. 19 features are built (:mod:`lopt.optim.features`);
3. the recurrent cell and MLP give (m, e, delta);
4. ``u = 1e-3 * m * exp(1e-3 * e) + mask * 1e-3 * delta * N(0, 1)``, with the mask
   1 on the actor's leaves only (learned exploration noise);
5. the mean of ``u`` over every element of the whole tree is subtracted.

Ablated variants (:class:`~lopt.optim.network.OPENConfig`) read a subset of the
features, have no noise term, or run the actor's elements through one meta-parameter
set and the critic's through another.

The transformation returns ``-u`` (optax adds updates). Parameters are processed as
one concatenated vector, so the network runs once per step on all of them, and the
state stores momenta and recurrent carries flat, in the params' leaf order.

Steps 1-4 run either in pure JAX (the reference, below) or in one fused CPU kernel
(:mod:`lopt.optim.fused`), which agrees with it up to float rounding; the
``implementation`` argument or ``LOPT_OPEN_STEP`` chooses, by default the kernel
where it is built and covers the configuration.

Example::

    tx = open_optimizer(meta_params)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params, key=key, training_prop=tp,
                               batch_prop=bp, dormancy=dormancy_tree(params, acts))
    params = optax.apply_updates(params, updates)
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.optim import fused, tree_paths
from lopt.optim.features import (
    ALL_FEATURES,
    MOMENTUM_DECAYS,
    feature_columns,
    schedule_features,
    tensor_features,
    update_momentum,
)
from lopt.optim.network import (
    MetaParams,
    OPENConfig,
    apply_network,
    check_meta_params,
)
from lopt.optim.noise import key_pair
from lopt.optim.noise import normal as threefry_normal


class OPENState(NamedTuple):
    """State of :func:`open_optimizer`."""

    momentum: jax.Array  # shape=(6, num_params): gradient EMAs at MOMENTUM_DECAYS
    carry: jax.Array  # shape=(carry_size, num_params): recurrent state per parameter
    count: jax.Array  # shape=(), int32: updates applied so far
    # shape=(): sum |noise| / sum |p| over the noised (actor) elements at the last
    # step, the paper's normalised noise weight |alpha_3 delta eps| / |p|; kept
    # only with track_noise (NaN otherwise), since it costs two more passes
    noise_magnitude: jax.Array


class OPENStep(NamedTuple):
    """One step of OPEN, before the zero-mean shift, as flat vectors."""

    update: jax.Array  # shape=(num_params,): deterministic + noise
    mean: jax.Array  # shape=(): the mean of update (the shift)
    # shape=(num_params,): 1e-3 * m * exp(1e-3 * e), and mask * 1e-3 * delta *
    # N(0, 1); None where open_step was asked for the update alone (parts=False)
    deterministic: jax.Array | None
    noise: jax.Array | None
    state: OPENState  # the state after this step


def _check_leaves(grad_leaves: list, param_leaves: list, dormancy_leaves: list):
    """Raises ValueError unless grads, params and dormancy have as many leaves."""
    if not len(grad_leaves) == len(param_leaves) == len(dormancy_leaves):
        raise ValueError(
            "grads, params and dormancy must have the same tree structure; got "
            f"{len(grad_leaves)}, {len(param_leaves)} and {len(dormancy_leaves)} leaves"
        )


def _element_mask(mask: Any, params: Any) -> jax.Array:
    """1.0 on the elements of masked leaves, 0.0 elsewhere: shape (num_params,)."""
    return tree_paths.per_element(tree_paths.resolve(mask, params), params)


def _dormancy_flat(param_leaves: list, dormancy_leaves: list) -> jax.Array:
    """Each leaf's dormancy broadcast to its parameter: shape ``(num_params,)``."""
    return tree_paths.flatten(
        [
            jnp.broadcast_to(jnp.asarray(d, jnp.float32), p.shape)
            for p, d in zip(param_leaves, dormancy_leaves, strict=True)
        ]
    )


def _per_tensor(values: Any, params: Any) -> np.ndarray:
    """One trace-time value per parameter leaf (a tree or a function of params)."""
    leaves = jax.tree.leaves(tree_paths.resolve(values, params))
    return np.asarray([float(v) for v in leaves], np.float32)


def open_inputs(
    momentum: jax.Array,
    grads: Any,
    params: Any,
    *,
    training_prop: jax.Array,
    batch_prop: jax.Array,
    dormancy: Any,
    layer_props: Any = tree_paths.layer_props,
    features: tuple[str, ...] = ALL_FEATURES,
) -> tuple[jax.Array, jax.Array]:
    """Updates the momenta and builds the network's input features.

    Args:
      momentum: shape ``(6, num_params)``: momenta before this step.
      grads, params: trees of the same structure (``num_params`` elements).
      training_prop, batch_prop: scalars.
      dormancy: a tree shaped like ``params``; leaves broadcast to their parameter.
      layer_props: a tree of floats shaped like ``params`` or a function of params.
      features: the feature groups to keep (default: all 19 features).

    Returns:
      ``(inputs, momentum)``: shape ``(num_inputs, num_params)`` (rows: the kept
      features in :data:`~lopt.optim.features.FEATURE_NAMES` order; columns in
      leaf order, row-major within a leaf) and the updated momenta.
    """
    grad_leaves = [g.astype(jnp.float32) for g in jax.tree.leaves(grads)]
    param_leaves = [p.astype(jnp.float32) for p in jax.tree.leaves(params)]
    dormancy_leaves = jax.tree.leaves(dormancy)
    _check_leaves(grad_leaves, param_leaves, dormancy_leaves)

    # MOMENTUM, updated before the features so it includes this gradient
    momentum = update_momentum(momentum, tree_paths.flatten(grad_leaves))

    # FEATURES: 15 normalised per tensor, then the 4 unnormalised ones
    normalised, start = [], 0
    for p, g in zip(param_leaves, grad_leaves, strict=True):
        normalised.append(tensor_features(p, g, momentum[:, start : start + p.size]))
        start += p.size
    dormancy_flat = _dormancy_flat(param_leaves, dormancy_leaves)
    layer_prop = tree_paths.per_element(tree_paths.resolve(layer_props, params), params)
    schedule = schedule_features(
        start, training_prop, layer_prop, batch_prop, dormancy_flat
    )
    inputs = jnp.concatenate([jnp.concatenate(normalised, axis=1), schedule], axis=0)
    columns = feature_columns(features)
    if len(columns) < inputs.shape[0]:
        # Static rows: XLA never computes what the dropped rows alone needed.
        inputs = inputs[np.asarray(columns)]
    return inputs, momentum


def _apply_per_network(
    meta_params: MetaParams, carry: jax.Array, inputs: jax.Array, actor: np.ndarray
) -> tuple[jax.Array, jax.Array]:
    """The network with the actor's meta-parameters on the columns where ``actor``
    is true and the critic's on the others (``actor``: shape ``(num_params,)``)."""
    order = np.concatenate([np.flatnonzero(actor), np.flatnonzero(~actor)])
    permuted = not np.array_equal(order, np.arange(order.size))
    if permuted:  # the usual {"actor", "critic"} tree needs no gather
        carry, inputs = carry[:, order], inputs[:, order]
    split = int(actor.sum())
    carry_a, out_a = apply_network(
        meta_params["actor"], carry[:, :split], inputs[:, :split]
    )
    carry_c, out_c = apply_network(
        meta_params["critic"], carry[:, split:], inputs[:, split:]
    )
    carry = jnp.concatenate([carry_a, carry_c], axis=1)
    out = jnp.concatenate([out_a, out_c], axis=1)
    if permuted:
        inverse = np.argsort(order)
        carry, out = carry[:, inverse], out[:, inverse]
    return carry, out


def open_step(
    meta_params: MetaParams,
    config: OPENConfig,
    state: OPENState,
    grads: Any,
    params: Any,
    *,
    key: jax.Array,
    training_prop: jax.Array,
    batch_prop: jax.Array,
    dormancy: Any,
    noise_mask: Any = tree_paths.actor_mask,
    layer_props: Any = tree_paths.layer_props,
    actor_mask: Any = tree_paths.actor_mask,
    track_noise: bool = False,
    implementation: str | None = None,
    parts: bool = True,
) -> OPENStep:
    """The deterministic and stochastic parts of one OPEN step (no mean shift).

    Args: as :func:`open_optimizer` and its ``update``; ``parts=False`` computes
    the update alone (``deterministic`` and ``noise`` None; the fused kernel then
    writes one array instead of two).
    """
    parts = parts or track_noise
    mask = _element_mask(noise_mask, params)
    inputs = dict(
        key=key,
        training_prop=training_prop,
        batch_prop=batch_prop,
        dormancy=dormancy,
        layer_props=layer_props,
        actor_mask=actor_mask,
    )
    step_args = (meta_params, config, state, grads, params)
    reference = functools.partial(_reference_outputs, *step_args, mask=mask, **inputs)
    if not parts:
        reference = functools.partial(_sum_parts, reference)
    if fused.choose(implementation, config) == "fused":
        fused_outputs = functools.partial(
            _fused_outputs, *step_args, noise_mask=noise_mask, parts=parts, **inputs
        )
        # The kernel is registered for CPU only; elsewhere the reference runs.
        momentum, carry, deterministic, noise, total = jax.lax.platform_dependent(
            cpu=fused_outputs, default=reference
        )
    else:
        momentum, carry, deterministic, noise, total = reference()
    update = deterministic + noise if parts else deterministic
    if track_noise:
        scale = jnp.sum(mask * jnp.abs(tree_paths.flatten(params).astype(jnp.float32)))
        noise_magnitude = jnp.sum(jnp.abs(noise)) / jnp.maximum(scale, 1e-12)
    else:
        noise_magnitude = state.noise_magnitude
    new_state = OPENState(
        momentum=momentum,
        carry=carry,
        count=state.count + 1,
        noise_magnitude=noise_magnitude,
    )
    return OPENStep(
        update=update,
        mean=total / update.size,
        deterministic=deterministic if parts else None,
        noise=noise,
        state=new_state,
    )


def _sum_parts(outputs):
    """``outputs()``'s deterministic part and noise as one update, as the fused
    kernel gives them without parts: ``(momentum, carry, update, None, total)``."""
    momentum, carry, deterministic, noise, total = outputs()
    return momentum, carry, deterministic + noise, None, total


def _fused_outputs(
    meta_params,
    config,
    state,
    grads,
    params,
    *,
    key,
    training_prop,
    batch_prop,
    dormancy,
    noise_mask,
    layer_props,
    actor_mask,
    parts,
):
    """``(momentum, carry, deterministic, noise, total)`` from the fused kernel
    (without ``parts``: the update in place of the deterministic part, no noise)."""
    param_leaves = jax.tree.leaves(params)
    grad_leaves = jax.tree.leaves(grads)
    dormancy_leaves = jax.tree.leaves(dormancy)
    _check_leaves(grad_leaves, param_leaves, dormancy_leaves)
    return fused.fused_step(
        meta_params,
        config,
        momentum=state.momentum,
        carry=state.carry,
        grads=grad_leaves,
        params=param_leaves,
        dormancy=dormancy_leaves,
        layer_prop=jnp.stack(
            [
                jnp.asarray(v, jnp.float32)
                for v in jax.tree.leaves(tree_paths.resolve(layer_props, params))
            ]
        ),
        training_prop=training_prop,
        batch_prop=batch_prop,
        key_pair=key_pair(key),
        noise_flags=_per_tensor(noise_mask, params) > 0,
        actor_flags=_per_tensor(actor_mask, params) > 0,
        parts=parts,
    )


def _reference_outputs(
    meta_params,
    config,
    state,
    grads,
    params,
    *,
    key,
    training_prop,
    batch_prop,
    dormancy,
    mask,
    layer_props,
    actor_mask,
):
    """``(momentum, carry, deterministic, noise, total)`` from the pure-JAX step."""
    inputs, momentum = open_inputs(
        state.momentum,
        grads,
        params,
        training_prop=training_prop,
        batch_prop=batch_prop,
        dormancy=dormancy,
        layer_props=layer_props,
        features=config.features,
    )
    if config.separate_actor_critic:
        actor = _element_mask(actor_mask, params) > 0
        carry, out = _apply_per_network(meta_params, state.carry, inputs, actor)
    else:
        carry, out = apply_network(meta_params, state.carry, inputs)
    deterministic = config.step_mult * out[0] * jnp.exp(config.exp_mult * out[1])
    if config.noise:
        # Every element is drawn and the mask multiplies: one branch-free kernel,
        # several times faster on CPU than drawing the masked elements alone.
        noise = config.step_mult * out[2] * mask * threefry_normal(key, mask.size)
    else:
        noise = jnp.zeros_like(deterministic)
    return momentum, carry, deterministic, noise, jnp.sum(deterministic + noise)


def open_optimizer(
    meta_params: MetaParams,
    config: OPENConfig = OPENConfig(),
    *,
    noise_mask: Any = tree_paths.actor_mask,
    layer_props: Any = tree_paths.layer_props,
    actor_mask: Any = tree_paths.actor_mask,
    track_noise: bool = False,
    implementation: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    """OPEN, the learned optimizer for RL, as an optax transformation.

    Args:
      meta_params: the optimizer's meta-parameters (a tree with ``config``'s
        layout; see :mod:`lopt.optim.network`). May be a tracer, so the
        transformation can be built inside ``jax.vmap`` over a population.
      config: the architecture.
      noise_mask: a tree of bools shaped like the params, or a function of the
        params returning one: where the learned noise is added. Default: every
        leaf under the top-level key ``"actor"``.
      layer_props: a tree of floats shaped like the params, or a function of the
        params: the ``layer_prop`` feature. Default: from tree paths
        (:func:`lopt.optim.tree_paths.layer_props`).
      actor_mask: like ``noise_mask``: the leaves that use the actor's
        meta-parameters when ``config.separate_actor_critic`` (the others use the
        critic's). Default: every leaf under ``"actor"``.
      track_noise: keep ``state.noise_magnitude`` up to date (for analysis).
      implementation: ``"auto"``, ``"fused"`` or ``"reference"``: which code
        computes the step (:mod:`lopt.optim.fused`); None reads the environment
        variable ``LOPT_OPEN_STEP`` (default ``"auto"``: the fused CPU kernel
        where it covers ``config``). A runtime choice, not part of the
        architecture: the results agree up to float rounding.

    Returns:
      A transformation whose ``update(grads, state, params, *, key,
      training_prop, batch_prop, dormancy)`` needs every keyword: ``key`` for the
      noise, ``training_prop`` and ``batch_prop`` scalars in [0, 1], and
      ``dormancy`` a tree shaped like params whose leaves broadcast to their
      parameter (:func:`lopt.optim.dormancy.dormancy_tree`).
    """
    check_meta_params(meta_params, config)
    fused.choose(implementation, config)  # an unknown name fails here, not in jit

    def init_fn(params: Any) -> OPENState:
        num_params = sum(jnp.size(p) for p in jax.tree.leaves(params))
        return OPENState(
            momentum=jnp.zeros((len(MOMENTUM_DECAYS), num_params), jnp.float32),
            carry=jnp.zeros((config.carry_size, num_params), jnp.float32),
            count=jnp.zeros((), jnp.int32),
            noise_magnitude=jnp.full((), 0.0 if track_noise else jnp.nan, jnp.float32),
        )

    def update_fn(
        updates: Any,
        state: OPENState,
        params: Any = None,
        *,
        key: jax.Array,
        training_prop: jax.Array,
        batch_prop: jax.Array,
        dormancy: Any,
        **extra_args: Any,
    ) -> tuple[Any, OPENState]:
        del extra_args
        if params is None:
            raise ValueError(
                "open_optimizer needs the current params: call "
                "update(grads, state, params, key=..., ...)"
            )
        step = open_step(
            meta_params,
            config,
            state,
            updates,
            params,
            key=key,
            training_prop=training_prop,
            batch_prop=batch_prop,
            dormancy=dormancy,
            noise_mask=noise_mask,
            layer_props=layer_props,
            actor_mask=actor_mask,
            track_noise=track_noise,
            implementation=implementation,
            parts=False,  # the update alone (track_noise asks for the noise)
        )
        return tree_paths.unflatten(-(step.update - step.mean), params), step.state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
