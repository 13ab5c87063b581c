"""OPEN's per-parameter input features (Goldie et al. 2024, arXiv 2407.07082, §2.3).

Every scalar parameter of the agent gets 19 features, in this order:

====  ================================  ===========
idx   feature                           normalised
====  ================================  ===========
0     parameter value                   yes
1-6   sign of the 6 momenta             yes
7-12  log(|momentum| + 1e-13)           yes
13    sign of the gradient              yes
14    log(|gradient| + 1e-13)           yes
15    training_prop                     no
16    layer_prop                        no
17    batch_prop                        no
18    dormancy                          no
====  ================================  ===========

The features come in *groups* (:data:`FEATURE_GROUPS`): ``param``, ``momentum``
(rows 1-12), ``gradient`` (rows 13-14) and the four RL features ``training_prop``,
``layer_prop``, ``batch_prop`` and ``dormancy``. An ablated optimizer reads a subset
of the groups (:func:`feature_columns`): the removed rows are not built into its
input at all, so its network has fewer input columns.

The first 15 channels are divided by their root mean square over the elements of
their own tensor (each kernel and each bias separately). The sign/log split of
gradient and momentum is the "gradient conditioning" of Optim4RL (Lan et al. 2024).
The four scalar features are appended after normalisation, as they are.

Terms used across lopt:

- ``training_prop``: index of the current rollout/update of the inner RL run divided
  by (number of updates - 1), so 0 on the first update and 1 on the last; constant
  within one update.
- ``batch_prop``: index of the current epoch over the rollout batch divided by
  (number of epochs - 1).
- ``layer_prop``: index of the parameter's layer within its network divided by
  (number of layers - 1); see :mod:`lopt.optim.tree_paths`.
- ``dormancy``: the normalised activation score of the neuron a parameter feeds;
  see :mod:`lopt.optim.dormancy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Decays of the six momentum EMAs, in feature order.
MOMENTUM_DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)

#: Names of the 19 input features, in the order the network reads them.
FEATURE_NAMES = (
    "param",
    *(f"momentum_sign_{b}" for b in MOMENTUM_DECAYS),
    *(f"momentum_log_{b}" for b in MOMENTUM_DECAYS),
    "grad_sign",
    "grad_log",
    "training_prop",
    "layer_prop",
    "batch_prop",
    "dormancy",
)

#: Input feature groups, each a tuple of FEATURE_NAMES, in FEATURE_NAMES order.
FEATURE_GROUPS = {
    "param": FEATURE_NAMES[0:1],
    "momentum": FEATURE_NAMES[1:13],
    "gradient": FEATURE_NAMES[13:15],
    "training_prop": ("training_prop",),
    "layer_prop": ("layer_prop",),
    "batch_prop": ("batch_prop",),
    "dormancy": ("dormancy",),
}
ALL_FEATURES = tuple(FEATURE_GROUPS)
#: What every learned optimizer sees: parameter, gradient and momenta.
BASIC_FEATURES = ("param", "momentum", "gradient")
#: OPEN's RL-specific groups, which an ablation may remove (§8.6).
RL_FEATURES = ("training_prop", "layer_prop", "batch_prop", "dormancy")


class UnknownFeatureError(ValueError):
    """A feature group that does not exist."""


def feature_columns(groups: tuple[str, ...]) -> tuple[int, ...]:
    """Rows of the 19-feature input that the groups ``groups`` keep, in order.

    Raises:
      UnknownFeatureError: a name that is not in :data:`FEATURE_GROUPS`.
    """
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise UnknownFeatureError(
            f"unknown feature group(s) {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(FEATURE_GROUPS)}"
        )
    kept = {name for g in groups for name in FEATURE_GROUPS[g]}
    return tuple(i for i, name in enumerate(FEATURE_NAMES) if name in kept)


NUM_NORMALISED = 15
LOG_EPS = 1e-13
NORM_EPS = 1e-5


def update_momentum(momentum: jax.Array, grad: jax.Array) -> jax.Array:
    """One step of the six gradient EMAs, without bias correction.

    Args:
      momentum: shape ``(6, ...)``, the EMAs before this step (zeros at start).
      grad: shape ``(...)``, the (clipped) gradient of this step.

    Returns:
      shape ``(6, ...)``: ``b * momentum + (1 - b) * grad`` for each decay ``b``.
    """
    decays = jnp.asarray(MOMENTUM_DECAYS, momentum.dtype).reshape(
        (-1,) + (1,) * grad.ndim
    )
    return decays * momentum + (1.0 - decays) * grad


def second_moment_normalise(x: jax.Array) -> jax.Array:
    """Divides each channel (row) of ``x`` by its RMS over the row.

    Args:
      x: shape ``(channels, n)``: the features of the n elements of one tensor.

    Returns:
      ``x * rsqrt(1e-5 + mean(x**2, axis=1))``, same shape.
    """
    return x * jax.lax.rsqrt(NORM_EPS + jnp.mean(jnp.square(x), axis=1, keepdims=True))


def tensor_features(
    param: jax.Array, grad: jax.Array, momentum: jax.Array
) -> jax.Array:
    """The 15 normalised features of one tensor.

    Args:
      param: any shape ``S``: the parameter tensor.
      grad: shape ``S``: its clipped gradient.
      momentum: shape ``(6,) + S``: its momenta, already updated with ``grad``.

    Returns:
      shape ``(15, size(S))``: channels 0-14 of the table in this module's
      docstring (rows), elements in row-major order (columns), each channel
      normalised over this tensor.
    """
    p = param.reshape(1, -1)
    g = grad.reshape(1, -1)
    m = momentum.reshape(len(MOMENTUM_DECAYS), -1)
    raw = jnp.concatenate(
        [
            p,
            jnp.sign(m),
            jnp.log(jnp.abs(m) + LOG_EPS),
            jnp.sign(g),
            jnp.log(jnp.abs(g) + LOG_EPS),
        ],
        axis=0,
    )
    return second_moment_normalise(raw)


def schedule_features(
    num_elements: int,
    training_prop: jax.Array,
    layer_prop: jax.Array,
    batch_prop: jax.Array,
    dormancy: jax.Array,
) -> jax.Array:
    """Channels 15-18 (unnormalised) for ``num_elements`` parameters.

    ``training_prop`` and ``batch_prop`` are scalars; ``layer_prop`` is a scalar
    or one value per element; ``dormancy`` has shape ``(num_elements,)``.
    Returns shape ``(4, num_elements)``.
    """
    ones = jnp.ones((num_elements,), jnp.float32)
    return jnp.stack(
        [ones * training_prop, ones * layer_prop, ones * batch_prop, dormancy]
    )
