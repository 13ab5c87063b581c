"""The fused OPEN step (C++ kernel) against the pure-JAX reference step.

Every output of the step (deterministic update, noise, momenta, carry) must agree
to a relative difference of 1e-5 (largest absolute difference over the largest
reference value), for random inputs of several sizes, every variant the kernel
covers, and the released optimizers; variants it does not cover fall back to the
reference.
"""

import functools
import itertools
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.optim import fused
from lopt.optim.files import load_open
from lopt.optim.learned import make_config
from lopt.optim.network import OPENConfig, unravel_meta_params
from lopt.optim.open_opt import open_optimizer, open_step

from tiny import PRETRAINED

TOLERANCE = 1e-5
needs_kernel = pytest.mark.skipif(
    fused.kernel_error() is not None,
    reason=f"fused kernel not built: {fused.kernel_error()}",
)


def _agent(key, widths=(5, 7, 3), actions=2, extra=()):
    """Actor and critic MLPs of odd widths (tiles with tails); ``extra`` adds
    lone leaves (a log_std of that many elements) to the actor."""
    shapes = {}
    for name, out in (("actor", actions), ("critic", 1)):
        dims = (*widths, out)
        layers = {
            f"Dense_{i}": {"kernel": (a, b), "bias": (b,)}
            for i, (a, b) in enumerate(itertools.pairwise(dims))
        }
        shapes[name] = {"params": layers}
    for n in extra:
        shapes["actor"]["params"]["log_std"] = (n,)
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)],
    )


def _inputs(params, config, key):
    """A state part-way through training, gradients, dormancy and a noise key."""
    k = jax.random.split(key, 6)
    n = sum(p.size for p in jax.tree.leaves(params))
    state = open_optimizer(_meta(config, k[0]), config).init(params)
    state = state._replace(
        momentum=0.01 * jax.random.normal(k[1], state.momentum.shape),
        carry=0.5 * jax.random.normal(k[2], state.carry.shape),
    )
    leaf_keys = iter(jax.random.split(k[3], 2 * len(jax.tree.leaves(params))))
    grads = jax.tree.map(
        lambda p: 0.02 * jax.random.normal(next(leaf_keys), p.shape), params
    )
    # One score per output neuron (kernels' last axis), as dormancy_tree gives.
    dormancy = jax.tree.map(
        lambda p: jnp.abs(jax.random.normal(next(leaf_keys), p.shape[-1:])), params
    )
    assert n > 0
    return state, grads, dormancy, k[4]


def _meta(config, key, scale=0.5):
    flat = scale * jax.random.normal(key, (config.num_meta_params,))
    return unravel_meta_params(flat, config)


@functools.partial(jax.jit, static_argnames=("config", "implementation", "parts"))
def _step(
    meta, state, grads, params, dormancy, key, *, config, implementation, parts=True
):
    step = open_step(
        meta,
        config,
        state,
        grads,
        params,
        key=key,
        training_prop=0.3,
        batch_prop=2 / 3,
        dormancy=dormancy,
        implementation=implementation,
        parts=parts,
    )
    outputs = {
        "update": step.update,
        "momentum": step.state.momentum,
        "carry": step.state.carry,
        "mean": step.mean,
    }
    if parts:
        outputs.update(deterministic=step.deterministic, noise=step.noise)
    else:
        assert step.deterministic is None and step.noise is None
    return outputs


def _relative(ours, ref):
    ref = np.asarray(ref)
    scale = max(np.abs(ref).max(), 1e-30)
    return np.abs(np.asarray(ours) - ref).max() / scale


def _assert_outputs_close(ours, ref):
    for name in ref:
        if name == "mean":  # a sum with cancellation: on the update's scale
            scale = np.abs(np.asarray(ref["deterministic"]) + ref["noise"]).max()
            rel = abs(float(ours[name]) - float(ref[name])) / max(scale, 1e-30)
        else:
            rel = _relative(ours[name], ref[name])
        assert rel <= TOLERANCE, f"{name}: relative difference {rel:.2e}"


def _assert_close(meta, config, params, key):
    state, grads, dormancy, noise_key = _inputs(params, config, key)
    args = (meta, state, grads, params, dormancy, noise_key)
    ref = _step(*args, config=config, implementation="reference")
    ours = _step(*args, config=config, implementation="fused")
    for name in ref:
        assert np.abs(np.asarray(ref[name])).max() > 0 or name == "noise", name
    u = np.asarray(ours["deterministic"]) + np.asarray(ours["noise"])
    np.testing.assert_allclose(ours["mean"], u.mean(), atol=1e-6 * np.abs(u).max())
    _assert_outputs_close(ours, ref)
    if config.noise:  # the noise is drawn on the actor, and only there
        assert np.count_nonzero(np.asarray(ours["noise"])) > 0
    else:
        np.testing.assert_array_equal(ours["noise"], 0.0)
    return ours


@needs_kernel
@pytest.mark.parametrize(
    ("widths", "extra"),
    [((1, 1), ()), ((5, 7, 3), (3,)), ((17, 33), ()), ((40, 70, 31), (1,))],
)
def test_fused_matches_reference_on_random_inputs(widths, extra):
    params = _agent(jax.random.key(0), widths, extra=extra)
    config = OPENConfig.small()
    _assert_close(_meta(config, jax.random.key(1)), config, params, jax.random.key(2))


@needs_kernel
@pytest.mark.parametrize(
    "variant",
    [
        "large",
        "no-features",
        "no-dormancy",
        "no-noise",
        "no-rl-features",
        "separate-actor-critic",
        "no-features-separate",
    ],
)
def test_fused_matches_reference_on_variants(variant):
    configs = {
        "large": OPENConfig.large(),
        "no-features": make_config("no-features"),
        "no-dormancy": make_config("open", ablate=("dormancy",)),
        "no-noise": make_config("open", ablate=("noise",)),
        "no-rl-features": make_config(
            "open", ablate=("training_prop", "layer_prop", "batch_prop", "dormancy")
        ),
        "separate-actor-critic": make_config("open", separate_actor_critic=True),
        "no-features-separate": make_config("no-features", separate_actor_critic=True),
    }
    config = configs[variant]
    assert fused.choose("auto", config) == "fused"
    params = _agent(jax.random.key(3), (9, 20, 6))
    _assert_close(_meta(config, jax.random.key(4)), config, params, jax.random.key(5))


RELEASED = sorted(PRETRAINED.glob("*_OPEN.npy"))


@needs_kernel
@pytest.mark.skipif(not RELEASED, reason="released optimizers not available")
@pytest.mark.parametrize("path", RELEASED, ids=lambda p: Path(p).stem)
def test_fused_matches_reference_on_released_optimizers(path):
    meta, config = load_open(path)
    # Breakout's agent layout: 400 inputs, two hidden layers of 64 (59,908).
    params = _agent(jax.random.key(6), (400, 64, 64), actions=3)
    _assert_close(meta, config, params, jax.random.key(7))


@needs_kernel
def test_fused_update_matches_reference_over_steps():
    """Three optax updates from zero state: the same updates and states."""
    config = OPENConfig.small()
    meta = _meta(config, jax.random.key(8))
    params = _agent(jax.random.key(9), (12, 16), extra=(2,))
    dormancy = jax.tree.map(lambda p: jnp.ones(p.shape[-1:]), params)
    results = {}
    for implementation in ("reference", "fused"):
        tx = open_optimizer(meta, config, implementation=implementation)
        p, state = params, tx.init(params)
        update = jax.jit(
            lambda g, s, p, key, tx=tx: tx.update(
                g, s, p, key=key, training_prop=0.5, batch_prop=0.0, dormancy=dormancy
            )
        )
        for i in range(3):
            grads = jax.tree.map(lambda x, i=i: 0.1 * jnp.sin(x * (i + 1)), p)
            updates, state = update(grads, state, p, jax.random.key(i))
            p = optax.apply_updates(p, updates)
        results[implementation] = (updates, state, p)
    ref, ours = results["reference"], results["fused"]
    for a, b in zip(jax.tree.leaves(ours[0]), jax.tree.leaves(ref[0]), strict=True):
        assert _relative(a, b) <= 1e-4
    assert _relative(ours[1].carry, ref[1].carry) <= TOLERANCE
    assert _relative(ours[1].momentum, ref[1].momentum) <= TOLERANCE
    assert int(ours[1].count) == 3


@needs_kernel
def test_fused_step_under_vmap_over_seeds_and_population():
    """vmap over seeds (shared meta-parameters) and over a population (batched
    meta-parameters) gives each member's own step."""
    config = OPENConfig.small()
    params = _agent(jax.random.key(10), (6, 11))
    state, grads, dormancy, _ = _inputs(params, config, jax.random.key(11))
    metas = jax.vmap(lambda k: _meta(config, k))(
        jax.random.split(jax.random.key(12), 3)
    )
    keys = jax.random.split(jax.random.key(13), 3)
    grads3 = jax.tree.map(lambda g: jnp.stack([g, 2 * g, -g]), grads)

    def run(implementation, meta_axis):
        fn = functools.partial(_step, config=config, implementation=implementation)
        return jax.vmap(fn, in_axes=(meta_axis, None, 0, None, None, 0))(
            metas if meta_axis == 0 else jax.tree.map(lambda m: m[0], metas),
            state,
            grads3,
            params,
            dormancy,
            keys,
        )

    for meta_axis in (None, 0):
        ref, ours = run("reference", meta_axis), run("fused", meta_axis)
        for name in ref:
            for i in range(3):
                assert _relative(ours[name][i], ref[name][i]) <= TOLERANCE, name
    # a member computed alone equals the same member in the batch
    alone = _step(
        jax.tree.map(lambda m: m[1], metas),
        state,
        jax.tree.map(lambda g: g[1], grads3),
        params,
        dormancy,
        keys[1],
        config=config,
        implementation="fused",
    )
    batched = run("fused", 0)
    for name in alone:
        np.testing.assert_array_equal(alone[name], batched[name][1])


@needs_kernel
def test_fused_matches_reference_where_gradients_and_momenta_are_zero():
    """sign(0) = 0: the kernel looks the sign features up by sign bit, which holds
    only where no momentum or gradient is exactly 0 (dead units, the first step);
    tiles with a zero must still match, scattered zeros and whole zero tiles."""
    config = OPENConfig.small()
    params = _agent(jax.random.key(19), (40, 70, 31))
    meta = _meta(config, jax.random.key(20))
    state, grads, dormancy, key = _inputs(params, config, jax.random.key(21))

    def scatter_zeros(x):  # every 37th element, and the leaf's first 40 in a row
        flat = x.reshape(-1)
        flat = flat.at[::37].set(0.0).at[:40].set(0.0)
        return flat.reshape(x.shape)

    grads = jax.tree.map(scatter_zeros, grads)
    # the first leaf's first 40 (gradient 0 too): every new momentum is 0 there
    momentum = state.momentum.at[:, :40].set(0.0).at[2, ::37].set(-0.0)
    state = state._replace(momentum=momentum)
    args = (meta, state, grads, params, dormancy, key)
    ref = _step(*args, config=config, implementation="reference")
    ours = _step(*args, config=config, implementation="fused")
    assert np.count_nonzero(np.asarray(ref["momentum"])[:, :40]) == 0
    _assert_outputs_close(ours, ref)


@needs_kernel
def test_fused_matches_reference_for_every_dormancy_shape():
    """Dormancy reaches the kernel as one vector per leaf, read with a period (a
    scalar, a layer's neurons, the whole leaf): widths of 32 and 48 neurons (whole
    tiles), 3 and 5 (per lane), a scalar leaf, and a leaf with full dormancy."""
    config = OPENConfig()
    params = _agent(jax.random.key(11), widths=(20, 32, 48), actions=3)
    params["actor"]["params"]["log_std"] = jnp.linspace(-1.0, 1.0, 5)
    params["critic"]["params"]["scale"] = jnp.asarray(0.7)
    state, grads, dormancy, noise_key = _inputs(params, config, jax.random.key(12))
    leaf_keys = iter(jax.random.split(jax.random.key(13), 8))
    d = dormancy["actor"]["params"]
    d["Dense_0"]["kernel"] = jnp.abs(jax.random.normal(next(leaf_keys), (20, 32)))
    d["Dense_1"]["kernel"] = jnp.abs(jax.random.normal(next(leaf_keys), (1, 48)))
    d["Dense_2"]["bias"] = jnp.asarray(0.25)
    dormancy["critic"]["params"]["Dense_1"]["kernel"] = jnp.asarray([[0.5]])
    args = (_meta(config, jax.random.key(14)), state, grads, params, dormancy)
    ref = _step(*args, noise_key, config=config, implementation="reference")
    ours = _step(*args, noise_key, config=config, implementation="fused")
    _assert_outputs_close(ours, ref)


@needs_kernel
@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_update_alone_is_the_sum_of_the_parts(implementation):
    """open_step(parts=False), as the optimizer's update runs it (the kernel then
    writes one array), gives deterministic + noise of the step with parts."""
    config = OPENConfig()
    params = _agent(jax.random.key(21), widths=(9, 33))
    state, grads, dormancy, key = _inputs(params, config, jax.random.key(22))
    args = (_meta(config, jax.random.key(23)), state, grads, params, dormancy, key)
    alone = _step(*args, config=config, implementation=implementation, parts=False)
    split = _step(*args, config=config, implementation=implementation)
    assert np.count_nonzero(np.asarray(split["noise"])) > 0
    parts_sum = np.asarray(split["deterministic"]) + np.asarray(split["noise"])
    assert _relative(split["update"], parts_sum) <= 1e-6
    # (XLA may fuse the reference's sum differently: equal up to rounding)
    for name in alone:
        assert _relative(alone[name], split[name]) <= 1e-6, name


@needs_kernel
def test_fused_step_is_deterministic_across_threads(monkeypatch):
    config = OPENConfig.small()
    params = _agent(jax.random.key(14), (300, 64))  # several chunks per tensor
    state, grads, dormancy, key = _inputs(params, config, jax.random.key(15))
    meta = _meta(config, jax.random.key(16))
    results = []
    for threads in ("0", "1", "2", "0"):
        monkeypatch.setenv(fused.ENV_THREADS, threads)
        step = jax.jit(
            lambda s, g, p, k, d: open_step(
                meta,
                config,
                s,
                g,
                p,
                key=k,
                training_prop=0.1,
                batch_prop=0.0,
                dormancy=d,
                implementation="fused",
            )
        )
        out = step(state, grads, params, key, dormancy)
        results.append(jax.tree.leaves(out))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@needs_kernel
def test_zero_meta_parameters_give_zero_fused_update():
    config = OPENConfig.small()
    params = _agent(jax.random.key(17), (5, 4))
    meta = _meta(config, jax.random.key(0), scale=0.0)
    _, grads, dormancy, key = _inputs(params, config, jax.random.key(18))
    tx = open_optimizer(meta, config, implementation="fused")
    updates, _ = tx.update(
        grads,
        tx.init(params),
        params,
        key=key,
        training_prop=0.2,
        batch_prop=0.0,
        dormancy=dormancy,
    )
    for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, 0.0)


def test_lstm_falls_back_to_reference():
    config = OPENConfig(cell="lstm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused._warn_once.cache_clear()
        assert fused.choose("auto", config) == "reference"
    assert any("no lstm cell" in str(w.message) for w in caught)
    assert fused.choose("reference", OPENConfig()) == "reference"
    with pytest.raises(fused.FusedStepUnavailableError, match="lstm"):
        fused.choose("fused", config)
    with pytest.raises(fused.FusedStepUnavailableError, match="sizes"):
        fused.choose("fused", OPENConfig(cell_features=4, hidden_size=16))
    # auto's fallback computes exactly the reference step
    params = _agent(jax.random.key(19), (4, 3))
    meta = _meta(config, jax.random.key(20))
    state, grads, dormancy, key = _inputs(params, config, jax.random.key(21))
    args = (meta, state, grads, params, dormancy, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = _step(*args, config=config, implementation="auto")
    ref = _step(*args, config=config, implementation="reference")
    for name in ref:
        np.testing.assert_array_equal(auto[name], ref[name])


def test_missing_kernel_falls_back_with_a_message(monkeypatch):
    monkeypatch.setattr(fused, "kernel_error", lambda: "kernel not built (test)")
    fused._warn_once.cache_clear()
    with pytest.warns(UserWarning, match="kernel not built.*reference step"):
        assert fused.choose(None, OPENConfig()) == "reference"
    with pytest.raises(fused.FusedStepUnavailableError, match="not built"):
        fused.choose("fused", OPENConfig())


def test_implementation_from_environment(monkeypatch):
    monkeypatch.setenv(fused.ENV_STEP, "reference")
    assert fused.choose(None, OPENConfig()) == "reference"
    monkeypatch.setenv(fused.ENV_STEP, "fastest")
    with pytest.raises(ValueError, match="unknown OPEN step implementation"):
        open_optimizer(_meta(OPENConfig(), jax.random.key(0)))
