"""The diagnostics wrapper, against values computed by hand."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.optim import tree_paths
from lopt.optim.diagnostics import sample_indices, with_diagnostics
from lopt.optim.handcrafted import sgd
from lopt.optim.network import OPENConfig, zeros_meta_params
from lopt.optim.noise import normal
from lopt.optim.open_opt import open_optimizer

from tiny import TINY_PPO, run_seeds

PARAMS = {
    "actor": {"params": {"Dense_0": {"kernel": jnp.arange(6.0).reshape(2, 3) - 2.5}}},
    "critic": {"params": {"Dense_0": {"bias": jnp.array([0.5, -1.0])}}},
}
GRADS_1 = jax.tree.map(lambda p: 0.1 * p + 0.05, PARAMS)
GRADS_2 = jax.tree.map(lambda p: -0.2 * jnp.ones_like(p), PARAMS)


def test_sgd_is_aligned_with_the_gradient_and_momenta_lag():
    tx = with_diagnostics(optax.with_extra_args_support(optax.sgd(0.1)), 4)
    state = tx.init(PARAMS)
    _, state = tx.update(GRADS_1, state, PARAMS)
    np.testing.assert_allclose(state.stats["cos_gradient"], 1.0, rtol=1e-6)
    # After one step every momentum is (1 - b) * g: parallel to the gradient.
    np.testing.assert_allclose(state.stats["cos_momentum"], np.ones(6), rtol=1e-6)
    _, state = tx.update(GRADS_2, state, PARAMS)
    g1 = np.concatenate([np.ravel(x) for x in jax.tree.leaves(GRADS_1)])
    g2 = np.concatenate([np.ravel(x) for x in jax.tree.leaves(GRADS_2)])
    for i, b in enumerate((0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)):
        m = b * (1 - b) * g1 + (1 - b) * g2
        expected = g2 @ m / np.linalg.norm(g2) / np.linalg.norm(m)
        np.testing.assert_allclose(state.stats["cos_momentum"][i], expected, rtol=1e-5)
    assert np.isnan(state.stats["noise_magnitude"])
    idx = sample_indices(8, 4)
    np.testing.assert_array_equal(idx, [0, 2, 5, 7])
    np.testing.assert_allclose(state.stats["sample_update"], -0.1 * g2[idx], rtol=1e-6)
    np.testing.assert_allclose(state.stats["sample_gradient"], g2[idx])


def test_open_noise_magnitude_by_hand():
    # Zero meta-parameters except the delta output's bias: m = e = 0, delta = c.
    config = OPENConfig.small()
    meta = zeros_meta_params(config)
    c = 3.0
    meta["params"]["params"]["layers_6"]["bias"] = jnp.array([0.0, 0.0, c])
    key = jax.random.key(5)
    tx = open_optimizer(meta, config, track_noise=True)
    state = tx.init(PARAMS)
    _, state = tx.update(
        GRADS_1,
        state,
        PARAMS,
        key=key,
        training_prop=0.5,
        batch_prop=0.5,
        dormancy=jax.tree.map(jnp.zeros_like, PARAMS),
    )
    mask = np.asarray(tree_paths.per_element(tree_paths.actor_mask(PARAMS), PARAMS))
    eps = np.asarray(normal(key, mask.size))
    p = np.concatenate([np.ravel(x) for x in jax.tree.leaves(PARAMS)])
    expected = np.sum(np.abs(1e-3 * c * eps) * mask) / np.sum(np.abs(p) * mask)
    np.testing.assert_allclose(state.noise_magnitude, expected, rtol=1e-5)
    untracked = open_optimizer(meta, config)
    assert np.isnan(untracked.init(PARAMS).noise_magnitude)


def test_ppo_records_diagnostics_per_update():
    config = dataclasses.replace(TINY_PPO, diagnostics=True)
    metrics, _ = run_seeds(config, sgd(learning_rate=0.1), [0, 1])
    updates = config.num_updates
    assert metrics["cos_momentum"].shape == (2, updates, 6)
    assert metrics["sample_update"].shape[:2] == (2, updates)
    # Plain SGD: the update is the negative gradient at every step, and the samples
    # are one step's pair (a mean over steps would be too).
    np.testing.assert_allclose(metrics["cos_gradient"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["sample_update"], -0.1 * metrics["sample_gradient"], atol=1e-9
    )
    plain, _ = run_seeds(TINY_PPO, sgd(learning_rate=0.1), [0, 1])
    np.testing.assert_array_equal(plain["return"], metrics["return"])
