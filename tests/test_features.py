"""OPEN's input features, dormancy and schedule against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.optim import dormancy, features, tree_paths
from lopt.optim.open_opt import open_inputs
from lopt.rl import progress


def test_feature_names_are_the_papers_19_in_order():
    names = features.FEATURE_NAMES
    assert len(names) == 19
    assert names[0] == "param"
    assert names[1:7] == tuple(f"momentum_sign_{b}" for b in features.MOMENTUM_DECAYS)
    assert names[7:13] == tuple(f"momentum_log_{b}" for b in features.MOMENTUM_DECAYS)
    assert names[13:] == (
        "grad_sign",
        "grad_log",
        "training_prop",
        "layer_prop",
        "batch_prop",
        "dormancy",
    )


def test_momentum_is_an_ema_without_bias_correction():
    m = jnp.zeros((6, 2))
    g = jnp.array([1.0, -2.0])
    m = features.update_momentum(m, g)
    # float32: 1 - 0.9999 carries a relative rounding error of about 2e-4.
    np.testing.assert_allclose(m[:, 0], [0.9, 0.5, 0.1, 0.01, 0.001, 0.0001], rtol=3e-4)
    m = features.update_momentum(m, jnp.array([3.0, 0.0]))
    # beta = 0.5: 0.5 * 0.5 + 0.5 * 3 = 1.75; beta = 0.9: 0.9 * 0.1 + 0.1 * 3 = 0.39
    np.testing.assert_allclose(m[1, 0], 1.75, rtol=1e-6)
    np.testing.assert_allclose(m[2, 0], 0.39, rtol=1e-6)
    np.testing.assert_allclose(m[0, 1], 0.1 * (0.9 * -2.0), rtol=1e-6)


def test_tensor_features_by_hand():
    p = jnp.array([3.0, -4.0])
    g = jnp.array([1.0, -2.0])
    m = features.update_momentum(jnp.zeros((6, 2)), g)
    x = np.asarray(features.tensor_features(p, g, m))
    assert x.shape == (15, 2)
    rms_p = math.sqrt(1e-5 + (9 + 16) / 2)
    np.testing.assert_allclose(x[0], [3 / rms_p, -4 / rms_p], rtol=1e-6)
    # Momentum signs are +1, -1 (nonzero everywhere), so their RMS is 1.
    sign_scale = 1 / math.sqrt(1e-5 + 1)
    np.testing.assert_allclose(x[1:7, 0], sign_scale, rtol=1e-6)
    np.testing.assert_allclose(x[1:7, 1], -sign_scale, rtol=1e-6)
    # log|m| for beta = 0.1: log(0.9 + 1e-13) and log(1.8 + 1e-13).
    a, b = math.log(0.9), math.log(1.8)
    rms = math.sqrt(1e-5 + (a * a + b * b) / 2)
    np.testing.assert_allclose(x[7], [a / rms, b / rms], rtol=1e-5)
    # beta = 0.9999: |m| = 1e-4 |g|.
    a, b = math.log(1e-4), math.log(2e-4)
    rms = math.sqrt(1e-5 + (a * a + b * b) / 2)
    np.testing.assert_allclose(x[12], [a / rms, b / rms], rtol=1e-5)
    np.testing.assert_allclose(x[13], [sign_scale, -sign_scale], rtol=1e-6)
    a, b = 0.0, math.log(2.0)
    rms = math.sqrt(1e-5 + (a * a + b * b) / 2)
    np.testing.assert_allclose(x[14], [a / rms, b / rms], rtol=1e-5, atol=1e-7)


def test_zero_gradient_features_use_the_log_epsilon():
    p = jnp.array([1.0, 1.0])
    g = jnp.zeros(2)
    x = np.asarray(features.tensor_features(p, g, jnp.zeros((6, 2))))
    log_eps = math.log(1e-13)
    # log(0 + 1e-13) in every element: normalised by its own RMS gives ~1.
    np.testing.assert_allclose(x[14], log_eps / math.sqrt(1e-5 + log_eps**2), rtol=1e-6)
    np.testing.assert_allclose(x[13], 0.0)  # sign(0) = 0 stays 0


def test_normalisation_is_per_tensor():
    params = {"a": jnp.array([1.0, 1.0]), "b": jnp.array([10.0])}
    grads = {"a": jnp.array([1.0, -1.0]), "b": jnp.array([5.0])}
    inputs, _ = open_inputs(
        jnp.zeros((6, 3)),
        grads,
        params,
        training_prop=0.25,
        batch_prop=0.5,
        dormancy=dormancy.uniform_dormancy(params),
    )
    x = np.asarray(inputs)
    assert x.shape == (19, 3)
    np.testing.assert_allclose(x[0], [1, 1, 1], rtol=1e-5)  # each tensor by its RMS
    np.testing.assert_allclose(x[15], 0.25)
    np.testing.assert_allclose(x[16], 0.0)  # one layer per network
    np.testing.assert_allclose(x[17], 0.5)
    np.testing.assert_allclose(x[18], 1.0)


def test_schedule_features_are_appended_unnormalised():
    params = {"w": jnp.ones((2, 3))}
    dorm = {"w": jnp.array([0.0, 1.0, 2.0])}
    inputs, _ = open_inputs(
        jnp.zeros((6, 6)),
        {"w": jnp.ones((2, 3))},
        params,
        training_prop=0.7,
        batch_prop=1 / 3,
        dormancy=dorm,
        layer_props={"w": 0.4},
    )
    x = np.asarray(inputs)
    np.testing.assert_allclose(x[15], 0.7)
    np.testing.assert_allclose(x[16], 0.4)
    np.testing.assert_allclose(x[17], 1 / 3, rtol=1e-6)
    # Row-major kernel (in=2, out=3): dormancy of output neuron j repeats per row.
    np.testing.assert_allclose(x[18], [0, 1, 2, 0, 1, 2])


def test_training_and_batch_prop_follow_the_counter_formulas():
    # Breakout at 5e5 frames: 61 updates, 4 epochs, 8 minibatches.
    def props(it):
        return (
            float(progress.training_prop(jnp.int32(it), 32, 61)),
            float(progress.batch_prop(jnp.int32(it), 8, 4)),
        )

    assert props(0) == (0.0, 0.0)
    assert props(7) == (0.0, 0.0)
    assert props(8) == pytest.approx((0.0, 1 / 3))
    assert props(31) == pytest.approx((0.0, 1.0))
    assert props(32) == pytest.approx((1 / 60, 0.0))
    assert props(61 * 32 - 1) == pytest.approx((1.0, 1.0))
    # Degenerate schedules give 0 rather than dividing by zero.
    assert float(progress.training_prop(jnp.int32(1), 2, 1)) == 0.0
    assert float(progress.batch_prop(jnp.int32(5), 2, 1)) == 0.0


def _agent_tree(continuous: bool):
    def dense(i, o):
        return {"bias": jnp.zeros(o), "kernel": jnp.zeros((i, o))}

    actor = {"Dense_0": dense(4, 8), "Dense_1": dense(8, 8), "Dense_2": dense(8, 2)}
    if continuous:
        actor["log_std"] = jnp.zeros(2)
    critic = {"Dense_0": dense(4, 8), "Dense_1": dense(8, 8), "Dense_2": dense(8, 1)}
    return {"actor": {"params": actor}, "critic": {"params": critic}}


def test_layer_props_from_paths():
    props = tree_paths.layer_props(_agent_tree(continuous=True))
    actor, critic = props["actor"]["params"], props["critic"]["params"]
    assert actor["Dense_0"] == {"bias": 0.0, "kernel": 0.0}
    assert actor["Dense_1"]["kernel"] == pytest.approx(1 / 3)
    assert actor["Dense_2"]["bias"] == pytest.approx(2 / 3)
    assert actor["log_std"] == 1.0
    assert [critic[f"Dense_{i}"]["kernel"] for i in range(3)] == [0.0, 0.5, 1.0]
    discrete = tree_paths.layer_props(_agent_tree(continuous=False))
    assert discrete["actor"]["params"]["Dense_1"]["bias"] == 0.5


def test_layer_order_is_natural():
    layers = {f"Dense_{i}": {"kernel": jnp.zeros(1)} for i in range(11)}
    props = tree_paths.layer_props({"params": layers})
    assert props["params"]["Dense_2"]["kernel"] == pytest.approx(0.2)
    assert props["params"]["Dense_10"]["kernel"] == 1.0


def test_actor_mask_selects_the_actor_subtree():
    mask = tree_paths.actor_mask(_agent_tree(continuous=True))
    assert all(jax.tree.leaves(mask["actor"]))
    assert not any(jax.tree.leaves(mask["critic"]))


def test_neuron_scores_and_dormant_fraction_by_hand():
    scores = np.asarray(dormancy.neuron_scores(jnp.array([0.0, 1.0, 3.0])))
    np.testing.assert_allclose(scores, [0.0, 0.75, 2.25], atol=1e-9)
    assert scores[0] > 0  # the 1e-11 keeps a dead neuron's score just above 0
    single = dormancy.neuron_scores(jnp.array([5.0]))
    np.testing.assert_allclose(single, [1.0])
    frac = dormancy.dormant_fraction({"a": jnp.array([0.0, 1.0, 3.0]), "b": single})
    assert float(frac) == pytest.approx(0.25)


def test_dormancy_tree_maps_scores_by_path():
    params = _agent_tree(continuous=True)
    acts = {
        "actor": {"params": {"Dense_0": jnp.arange(8.0), "Dense_2": jnp.ones(2)}},
        "critic": {"params": {"Dense_2": jnp.array([0.3])}},
    }
    tree = dormancy.dormancy_tree(params, acts)
    expected = (np.arange(8.0) + 1e-11) / (28 + 8e-11) * 8
    np.testing.assert_allclose(tree["actor"]["params"]["Dense_0"]["kernel"], expected)
    np.testing.assert_allclose(tree["actor"]["params"]["Dense_0"]["bias"], expected)
    np.testing.assert_allclose(tree["actor"]["params"]["Dense_2"]["bias"], [1, 1])
    np.testing.assert_allclose(tree["critic"]["params"]["Dense_2"]["kernel"], [1.0])
    assert float(tree["actor"]["params"]["log_std"]) == 1.0
    assert float(tree["critic"]["params"]["Dense_1"]["bias"]) == 1.0  # unrecorded
