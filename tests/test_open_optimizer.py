"""OPEN as an optax transformation, against a plain NumPy reference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.optim import tree_paths
from lopt.optim.dormancy import dormancy_tree
from lopt.optim.network import (
    OPENConfig,
    apply_network,
    init_meta_params,
    ravel_meta_params,
    unravel_meta_params,
    zeros_meta_params,
)
from lopt.optim.noise import normal
from lopt.optim.open_opt import open_optimizer, open_step

import reference
from tiny import BREAKOUT, tiny_activations, tiny_agent


def random_vector(config, key, scale=0.5):
    return scale * jax.random.normal(key, (config.num_meta_params,))


def test_meta_parameter_counts_and_layout():
    assert OPENConfig.small().num_meta_params == 1211
    assert OPENConfig.large().num_meta_params == 3571
    paths = [
        "/".join(tree_paths.path_names(p))
        for p, _ in jax.tree_util.tree_flatten_with_path(zeros_meta_params())[0]
    ]
    assert paths[:3] == [
        "gru_params/params/hn/bias",
        "gru_params/params/hn/kernel",
        "gru_params/params/hr/kernel",
    ]
    assert paths[-2:] == [
        "params/params/layers_6/bias",
        "params/params/layers_6/kernel",
    ]
    assert len(paths) == 20


@pytest.mark.parametrize("config", [OPENConfig.small(), OPENConfig.large()])
def test_network_matches_numpy_reference_from_flat_vector(config):
    flat = random_vector(config, jax.random.key(1))
    meta = unravel_meta_params(flat, config)
    n = 7
    carry = 0.5 * jax.random.normal(jax.random.key(2), (config.cell_features, n))
    x = jax.random.normal(jax.random.key(3), (19, n))
    new_carry, out = apply_network(meta, carry, x)
    w = reference.unpack(
        np.asarray(flat, np.float64), config.cell_features, config.hidden_size
    )
    for i in range(n):
        c_ref, o_ref = reference.network(
            w, np.asarray(carry[:, i]), np.asarray(x[:, i])
        )
        np.testing.assert_allclose(new_carry[:, i], c_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[:, i], o_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_network_matches_flax_modules(cell):
    config = OPENConfig(cell=cell)
    meta = init_meta_params(jax.random.key(0), config)
    # Non-trivial LayerNorm parameters, as in the released files.
    meta = jax.tree.map(
        lambda p: p + 0.3 * jax.random.normal(jax.random.key(7), p.shape), meta
    )
    n = 5
    x = jax.random.normal(jax.random.key(1), (n, 19))
    cell_mod = (nn.GRUCell if cell == "gru" else nn.LSTMCell)(features=8)
    mlp = nn.Sequential(
        [
            nn.Dense(16),
            nn.LayerNorm(epsilon=1e-6),
            nn.relu,
            nn.Dense(16),
            nn.LayerNorm(epsilon=1e-6),
            nn.relu,
            nn.Dense(3),
        ]
    )
    if cell == "gru":
        carry = 0.3 * jax.random.normal(jax.random.key(2), (n, 8))
        flax_carry, h = cell_mod.apply(meta["gru_params"], carry, x)
        ours_carry = carry.T
    else:
        c = 0.3 * jax.random.normal(jax.random.key(2), (n, 8))
        h0 = 0.3 * jax.random.normal(jax.random.key(3), (n, 8))
        (fc, fh), h = cell_mod.apply(meta["lstm_params"], (c, h0), x)
        flax_carry = jnp.concatenate([fc, fh], axis=1)
        ours_carry = jnp.concatenate([c, h0], axis=1).T
    flax_out = mlp.apply(meta["params"], h)
    new_carry, out = apply_network(meta, ours_carry, x.T)
    np.testing.assert_allclose(new_carry.T, flax_carry, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.T, flax_out, rtol=1e-4, atol=1e-5)


def test_flat_vector_round_trip():
    config = OPENConfig.small()
    flat = random_vector(config, jax.random.key(0))
    np.testing.assert_array_equal(
        ravel_meta_params(unravel_meta_params(flat, config)), flat
    )
    with pytest.raises(ValueError, match="1211"):
        unravel_meta_params(flat[:-1], config)


def _reference_inputs(params, grads, acts, key):
    """Per-tensor inputs of reference.open_step and the noise lopt will draw: one
    N(0, 1) per parameter element, in leaf order (lopt.optim.noise.normal)."""
    dorm = dormancy_tree(params, acts)
    props = tree_paths.layer_props(params)
    mask = tree_paths.actor_mask(params)
    leaves = jax.tree.leaves(params)
    normals = np.asarray(normal(key, sum(p.size for p in leaves)))
    tensors, start = [], 0
    for p, g, d, lp, m in zip(
        leaves,
        jax.tree.leaves(grads),
        jax.tree.leaves(dorm),
        jax.tree.leaves(props),
        jax.tree.leaves(mask),
        strict=True,
    ):
        eps = normals[start : start + p.size].reshape(p.shape)
        start += p.size
        tensors.append(
            {
                "p": np.asarray(p),
                "g": np.asarray(g),
                "d": np.asarray(d),
                "lp": lp,
                "actor": m,
                "eps": eps,
            }
        )
    return tensors, dorm


@pytest.mark.parametrize("source", ["random", "breakout"])
def test_two_steps_match_numpy_reference(source):
    config = OPENConfig.small()
    if source == "breakout":
        if not BREAKOUT.exists():
            pytest.skip("released optimizers not available")
        flat = jnp.asarray(np.load(BREAKOUT))
    else:
        flat = random_vector(config, jax.random.key(11))
    meta = unravel_meta_params(flat, config)
    tx = open_optimizer(meta, config)
    params = tiny_agent(jax.random.key(0))
    state = tx.init(params)
    sizes = [p.size for p in jax.tree.leaves(params)]
    carries = [np.zeros((n, 8)) for n in sizes]
    momenta = [np.zeros((n, 6)) for n in sizes]
    for step, (tp, bp) in enumerate([(0.0, 0.0), (0.5, 1 / 3)]):
        grads = jax.tree.map(
            lambda p, s=step: (
                0.1 * jax.random.normal(jax.random.key(100 + s), p.shape) * p
            ),
            params,
        )
        acts = tiny_activations(jax.random.key(200 + step))
        key = jax.random.key(300 + step)
        tensors, dorm = _reference_inputs(params, grads, acts, key)
        ref_updates, carries, momenta, _, _ = reference.open_step(
            flat, 8, 16, tensors, carries, momenta, tp, bp
        )
        updates, state = tx.update(
            grads,
            state,
            params,
            key=key,
            training_prop=tp,
            batch_prop=bp,
            dormancy=dorm,
        )
        for ours, ref in zip(jax.tree.leaves(updates), ref_updates, strict=True):
            np.testing.assert_allclose(ours, ref, rtol=2e-3, atol=1e-7)
        np.testing.assert_allclose(
            state.carry.T, np.concatenate(carries), rtol=1e-4, atol=1e-6
        )
        params = optax.apply_updates(params, updates)
    assert int(state.count) == 2


def _update(meta, params, key=jax.random.key(0), **kwargs):
    tx = open_optimizer(meta, **kwargs)
    grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
    dorm = dormancy_tree(params, tiny_activations(jax.random.key(1)))
    return tx.update(
        grads,
        tx.init(params),
        params,
        key=key,
        training_prop=0.3,
        batch_prop=0.0,
        dormancy=dorm,
    )[0]


def test_zero_meta_parameters_give_zero_update():
    updates = _update(zeros_meta_params(), tiny_agent(jax.random.key(0)))
    for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, 0.0)


def test_update_has_zero_global_mean_and_params_structure():
    params = tiny_agent(jax.random.key(0))
    meta = unravel_meta_params(
        random_vector(OPENConfig(), jax.random.key(3)), OPENConfig()
    )
    updates = _update(meta, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, params)
    flat = np.concatenate([np.ravel(u) for u in jax.tree.leaves(updates)])
    assert np.abs(flat).max() > 1e-5
    assert abs(flat.mean()) < 1e-6 * np.abs(flat).max() * flat.size


def test_noise_reaches_actor_leaves_only():
    params = tiny_agent(jax.random.key(0))
    meta = unravel_meta_params(
        random_vector(OPENConfig(), jax.random.key(3)), OPENConfig()
    )
    tx = open_optimizer(meta)
    grads = jax.tree.map(lambda p: 0.1 * p, params)
    dorm = dormancy_tree(params, tiny_activations(jax.random.key(1)))
    steps = [
        open_step(
            meta,
            OPENConfig(),
            tx.init(params),
            grads,
            params,
            key=jax.random.key(k),
            training_prop=0.1,
            batch_prop=0.0,
            dormancy=dorm,
        )
        for k in (1, 2)
    ]
    sizes = [p.size for p in jax.tree.leaves(params["actor"])]
    actor_size = sum(sizes)
    for step in steps:
        assert np.all(np.asarray(step.noise[actor_size:]) == 0.0)
        assert np.all(np.asarray(step.noise[:actor_size]) != 0.0)
    np.testing.assert_array_equal(steps[0].deterministic, steps[1].deterministic)
    # In the full update the critic moves only by the shared mean shift.
    u1, u2 = (_update(meta, params, key=jax.random.key(k)) for k in (1, 2))
    critic_diff = np.concatenate(
        [
            np.ravel(a - b)
            for a, b in zip(
                jax.tree.leaves(u1["critic"]),
                jax.tree.leaves(u2["critic"]),
                strict=True,
            )
        ]
    )
    np.testing.assert_allclose(critic_diff, critic_diff[0], atol=1e-9)
    actor_diff = np.concatenate(
        [
            np.ravel(a - b)
            for a, b in zip(
                jax.tree.leaves(u1["actor"]), jax.tree.leaves(u2["actor"]), strict=True
            )
        ]
    )
    assert np.std(actor_diff) > 1e-6


def test_noise_mask_can_be_overridden_by_path():
    params = tiny_agent(jax.random.key(0))
    meta = unravel_meta_params(
        random_vector(OPENConfig(), jax.random.key(3)), OPENConfig()
    )
    mask = tree_paths.prefix_mask(["critic"])
    u1 = _update(meta, params, key=jax.random.key(1), noise_mask=mask)
    u2 = _update(meta, params, key=jax.random.key(2), noise_mask=mask)
    diff = np.concatenate(
        [
            np.ravel(a - b)
            for a, b in zip(
                jax.tree.leaves(u1["actor"]), jax.tree.leaves(u2["actor"]), strict=True
            )
        ]
    )
    np.testing.assert_allclose(diff, diff[0], atol=1e-9)


def test_missing_extra_argument_raises():
    params = tiny_agent(jax.random.key(0))
    tx = open_optimizer(zeros_meta_params())
    state = tx.init(params)
    with pytest.raises(TypeError, match="dormancy"):
        tx.update(
            params,
            state,
            params,
            key=jax.random.key(0),
            training_prop=0.0,
            batch_prop=0.0,
        )
    with pytest.raises(TypeError, match="key"):
        tx.update(
            params, state, params, training_prop=0.0, batch_prop=0.0, dormancy=params
        )
    with pytest.raises(ValueError, match="params"):
        tx.update(
            params,
            state,
            key=jax.random.key(0),
            training_prop=0.0,
            batch_prop=0.0,
            dormancy=params,
        )


def test_wrong_meta_parameters_are_refused():
    with pytest.raises(ValueError, match="do not match"):
        open_optimizer(zeros_meta_params(OPENConfig.large()), OPENConfig.small())


def test_vmap_over_population_equals_loop():
    params = tiny_agent(jax.random.key(0))
    config = OPENConfig()
    population = jax.vmap(
        lambda k: unravel_meta_params(random_vector(config, k), config)
    )(jax.random.split(jax.random.key(5), 3))
    batched = jax.jit(jax.vmap(lambda m: _update(m, params)))(population)
    for i in range(3):
        member = jax.tree.map(lambda x, i=i: x[i], population)
        single = _update(member, params)
        for b, s in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-8)


def test_jit_and_chain_with_clipping():
    params = tiny_agent(jax.random.key(0))
    meta = unravel_meta_params(
        random_vector(OPENConfig(), jax.random.key(3)), OPENConfig()
    )
    tx = optax.chain(optax.clip_by_global_norm(0.5), open_optimizer(meta))
    state = tx.init(params)
    dorm = dormancy_tree(params, tiny_activations(jax.random.key(1)))

    @jax.jit
    def step(params, state, key):
        grads = jax.tree.map(lambda p: p, params)
        updates, state = tx.update(
            grads,
            state,
            params,
            key=key,
            training_prop=0.0,
            batch_prop=0.0,
            dormancy=dorm,
        )
        return optax.apply_updates(params, updates), state

    for k in range(3):
        params, state = step(params, state, jax.random.key(k))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
