"""VeLO: the published architecture's shapes, its checkpoint formats, the optax
contract, hand-computed steps and a CartPole run from the command line."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.cli import main
from lopt.optim import velo
from lopt.optim.spec import from_spec

SMALL = velo.VeLOConfig(lstm_hidden_size=8, param_inits=4)


def agent_params(key):
    """Actor and critic shaped like lopt's PPO networks, plus a scalar and a
    rank-3 tensor (HyperV2 handles both)."""
    shapes = {
        "actor": {"Dense_0": {"kernel": (4, 8), "bias": (8,)}, "scale": ()},
        "critic": {"Dense_0": {"kernel": (8, 1), "bias": (1,)}, "conv": (2, 3, 5)},
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)]
    )


def opt_extra_args(key, loss=1.0):
    """Everything lopt's PPO passes; VeLO reads only ``loss``."""
    return {
        "key": key,
        "training_prop": 0.5,
        "batch_prop": 0.25,
        "dormancy": None,
        "loss": jnp.float32(loss),
    }


def test_published_architecture_parameter_counts():
    theta = velo.velo_random(jax.random.key(0))
    shapes = jax.tree.map(jnp.shape, theta)
    rnn = shapes["rnn_params"]
    # Mixing layers read the 30 LSTM inputs; the LSTM's gates read [mixed, hidden].
    for name in ("linear", "linear_1", "linear_2"):
        assert rnn[name] == {"w": (30, 512), "b": (512,)}
    assert rnn["rnn/linear"] == {"w": (1024, 2048), "b": (2048,)}
    assert rnn["rnn_to_controls"] == {"w": (512, 256), "b": (256,)}
    assert rnn["step_size"] == {"w": (512, 1), "b": (1,)}
    assert shapes["lstm_init_state"] == {"hidden": (1, 512), "cell": (1, 512)}
    bank = shapes["ff_mod_stack"]["~"]
    widths = [1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3]  # sums to 30
    assert [bank[f"w0__{i}"] for i in range(14)] == [(256, w, 4) for w in widths]
    assert (bank["w1"], bank["w2"], bank["b2"]) == ((256, 4, 4), (256, 4, 3), (256, 3))

    def count(tree):
        return sum(x.size for x in jax.tree.leaves(tree))

    assert (
        count(theta["rnn_params"])
        == 3 * (30 * 512 + 512) + (1024 * 2048 + 2048) + (512 * 256 + 256) + 513
    )
    # Per-parameter MLP: 30*4+4 + 4*4+4 + 4*3+3 = 159 weights, 256 of them.
    assert count(theta["ff_mod_stack"]) == 256 * 159 == 40_704
    total = count(theta)
    assert total == 2_320_385 == velo.VeLOConfig().num_meta_params
    # The released 'params' file is 9,282,564 bytes: these float32s plus ~1 kB of
    # msgpack keys.
    assert 0 < 9_282_564 - 4 * total < 1_100


def test_factored_dims_are_the_two_largest_axes():
    assert velo.factored_dims((784, 32)) == (1, 0)
    assert velo.factored_dims((8, 1)) == (1, 0)
    assert velo.factored_dims((2, 3, 5)) == (1, 2)
    assert velo.factored_dims((7,)) is None
    assert velo.factored_dims(()) is None


def test_msgpack_and_npz_round_trip(tmp_path):
    theta = velo.velo_random(jax.random.key(1), SMALL)
    for name in ("params", "weights.npz"):
        path = velo.save_velo(tmp_path / name, theta)
        loaded = velo.load_velo(path)
        assert jax.tree.structure(loaded) == jax.tree.structure(theta)
        for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(theta), strict=True):
            np.testing.assert_array_equal(a, b)
    # A folder holding 'params' loads too.
    assert velo.config_of(velo.load_velo(tmp_path)) == SMALL


def test_loads_the_old_flax_layout_of_the_lstm_state(tmp_path):
    """flax < 0.4 wrote haiku's LSTMState as {name, fields, values}."""
    from flax import serialization

    theta = jax.tree.map(np.asarray, velo.velo_random(jax.random.key(2), SMALL))
    state = theta["lstm_init_state"]
    old = {
        **theta,
        "lstm_init_state": {
            "name": "LSTMState",
            "fields": {"0": "hidden", "1": "cell"},
            "values": {"0": state["hidden"], "1": state["cell"] + 1},
        },
    }
    data = serialization.msgpack_serialize({"params": old, "gen_id": "", "step": 3})
    (tmp_path / "params").write_bytes(data)
    loaded = velo.load_velo(tmp_path / "params")
    np.testing.assert_array_equal(loaded["lstm_init_state"]["cell"], state["cell"] + 1)


def test_bad_files_are_refused_with_reasons(tmp_path):
    with pytest.raises(velo.VeLOFileError, match="no such file"):
        velo.load_velo(tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"\x00\x01not msgpack")
    with pytest.raises(velo.VeLOFileError):
        velo.load_velo(tmp_path / "junk")
    theta = velo.velo_random(jax.random.key(3), SMALL)
    arrays = dict(velo._flat_items(theta))
    np.savez(
        tmp_path / "short.npz", **{k: v for k, v in arrays.items() if k[-2:] != "w1"}
    )
    with pytest.raises(velo.VeLOFileError, match="missing ff_mod_stack/~/w1"):
        velo.load_velo(tmp_path / "short.npz")
    arrays["rnn_params/step_size/w"] = np.zeros((8, 2), np.float32)
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(velo.VeLOFileError, match="step_size/w has shape"):
        velo.load_velo(tmp_path / "shape.npz")
    # A config.gin beside 'params' that sets what lopt does not implement.
    folder = tmp_path / "ckpt"
    folder.mkdir()
    velo.save_velo(folder / "params", theta)
    (folder / "config.gin").write_text(
        "HyperV2.lstm_hidden_size = 8\nHyperV2.param_inits = 4\n"
        "HyperV2.use_bugged_loss_features = True\n"
    )
    with pytest.raises(velo.VeLOFileError, match="use_bugged_loss_features"):
        velo.load_velo(folder)
    (folder / "config.gin").write_text(
        "HyperV2.lstm_hidden_size = 8\nHyperV2.param_inits = 4\n"
        "HyperV2.use_bugged_loss_features = False\nrun_train.num_steps = 100000\n"
    )
    velo.load_velo(folder)


def test_optax_contract_jit_and_finite_updates():
    theta = velo.velo_random(jax.random.key(4), SMALL)
    params = agent_params(jax.random.key(5))
    tx = velo.velo_optimizer(theta, num_steps=10)
    state = jax.jit(tx.init)(params)
    assert state.lstm_hidden.shape == (6, 8)  # one LSTM row per tensor
    update = jax.jit(lambda g, s, p, a: tx.update(g, s, p, **a))
    for step in range(4):
        grads = jax.tree.map(lambda p: jnp.sin(p + step), params)
        updates, state = update(grads, state, params, opt_extra_args(None, 2.0 - step))
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
            assert u.shape == p.shape and u.dtype == p.dtype
            assert np.all(np.isfinite(u))
        params = jax.tree.map(lambda p, u: p + u, params, updates)
    assert int(state.iteration) == 4
    assert np.any(np.abs(jax.tree.leaves(updates)[0]) > 0)
    with pytest.raises(TypeError, match="loss"):
        tx.update(grads, state, params)
    with pytest.raises(ValueError, match="needs the current params"):
        tx.update(grads, state, loss=1.0)


def test_vmap_over_two_sets_of_meta_parameters_and_of_params():
    thetas = [velo.velo_random(jax.random.key(k), SMALL) for k in (6, 7)]
    params = [
        {"kernel": jax.random.normal(jax.random.key(k), (4, 3)), "bias": jnp.ones(3)}
        for k in (8, 9)
    ]

    def two_steps(theta, p):
        tx = velo.velo_optimizer(theta, num_steps=5)
        state = tx.init(p)
        for loss in (1.0, 0.5):
            grads = jax.tree.map(lambda x: jnp.cos(x) * loss, p)
            updates, state = tx.update(grads, state, p, **opt_extra_args(None, loss))
            p = jax.tree.map(lambda x, u: x + u, p, updates)
        return p

    batched = jax.jit(jax.vmap(two_steps))(
        jax.tree.map(lambda *x: jnp.stack(x), *thetas),
        jax.tree.map(lambda *x: jnp.stack(x), *params),
    )
    for i in range(2):
        alone = jax.jit(two_steps)(thetas[i], params[i])
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)


def hand_set_theta(direction_bias: float, lr_bias: float) -> dict:
    """All weights 0: the LSTM emits controls of 1 and lr_mult = lr_bias, and the
    MLP outputs its bias, direction = 100 * direction_bias, magnitude = 0."""
    theta = jax.tree.map(jnp.zeros_like, velo.velo_random(jax.random.key(0), SMALL))
    rnn = theta["rnn_params"]
    rnn["rnn_to_controls"]["b"] = jnp.ones((4,))
    rnn["step_size"]["b"] = jnp.full((1,), lr_bias)
    theta["ff_mod_stack"]["~"]["b2"] = jnp.tile(
        jnp.array([direction_bias, 0, 0]), (4, 1)
    )
    return theta


def test_update_equals_hand_computed_step():
    # step = direction * rms(p) * exp(0.001 * magnitude) * 0.001 * lr_mult.
    tx = velo.velo_optimizer(hand_set_theta(0.01, 2.0), num_steps=10)
    params = {"w": jnp.array([[3.0, 4.0]]), "b": jnp.array([0.0, 0.0, 1.0])}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.jit(lambda s: tx.update(grads, s, params, loss=1.0))(
        tx.init(params)
    )
    rms_w, rms_b = np.sqrt(12.5 + 1e-9), np.sqrt(1 / 3 + 1e-9)
    np.testing.assert_allclose(updates["w"], -1.0 * rms_w * 1e-3 * 2.0, rtol=1e-5)
    np.testing.assert_allclose(updates["b"], -1.0 * rms_b * 1e-3 * 2.0, rtol=1e-5)


def test_lstm_inputs_by_hand():
    p = jnp.array([[1.0, -1.0], [1.0, -1.0]])  # rms 1: no rescaling
    m = jnp.zeros((2, 2, 3))
    rms = jnp.full((2, 2, 1), 0.1)
    loss_features = jnp.arange(9.0) / 10
    x = velo._lstm_inputs(p, p, m, rms, 0.5, loss_features)
    assert x.shape == (velo.NUM_LSTM_INPUTS,) == (30,)
    timescales = np.array([0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1])
    np.testing.assert_allclose(x[:9], np.tanh((0.5 - timescales) * 10), rtol=1e-6)
    np.testing.assert_allclose(x[9:18], loss_features)
    np.testing.assert_allclose(x[18], 0.5 * np.log(1e-8 + 1.0), atol=1e-6)  # mean rms
    np.testing.assert_array_equal(x[19:24], [0, 0, 1, 0, 0])  # two axes longer than 1
    np.testing.assert_allclose(x[24:27], -2.5)  # log of a zero variance, clipped
    # The second moment's spread about the momenta's mean (0): 0.1^2, times 10.
    np.testing.assert_allclose(x[27:30], 0.5 * np.log(1e-8 + 0.1), rtol=1e-5)


def test_loss_features_against_a_loop():
    num_steps, losses = 50, [2.0, 1.5, 5.0, 1.0, 0.8]
    decays = velo.loss_decays(num_steps).astype(np.float64)
    halflives = 10 ** np.linspace(1, np.log10(num_steps), 10)
    np.testing.assert_allclose(decays, np.exp(-1 / halflives), rtol=1e-6)
    tx = velo.velo_optimizer(hand_set_theta(0.0, 0.0), num_steps)
    params = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    update = jax.jit(lambda s, loss: tx.update(params, s, params, loss=loss))
    means, running_min, clipped_at = np.zeros(10), np.full(10, 1e12), []
    for t, loss in enumerate(losses):
        corrected = means / (1 - decays ** (t + 1))
        cap = loss if t == 0 else np.max(corrected)
        clipped = min(abs(cap) * 2, loss)
        clipped_at += [t] if clipped < loss else []
        means = means * decays + clipped * (1 - decays)
        corrected = means / (1 - decays ** (t + 1))
        running_min = np.minimum(running_min, corrected)
        want = np.clip(
            (corrected[:-1] - running_min[:-1])
            / np.maximum(1e-8, corrected[1:] - running_min[:-1])
            - 1,
            -1,
            1,
        )
        got = velo._loss_step(state, loss, velo.loss_decays(num_steps))[2]
        np.testing.assert_allclose(got, want if t >= 2 else 0 * want, atol=1e-5)
        _, state = update(state, loss)
        np.testing.assert_allclose(state.loss_means, means, rtol=1e-5)
    # The third loss (5.0) exceeded twice the largest average so far: clipped.
    assert clipped_at == [2]


def test_from_spec_loads_a_velo_file(tmp_path):
    path = velo.save_velo(
        tmp_path / "velo_small.npz", velo.velo_random(jax.random.key(0), SMALL)
    )
    optimizer = from_spec(f"velo:{path}")
    assert optimizer.name == "velo:velo_small"
    assert optimizer.description["spec"] == f"velo:{path.resolve()}"
    with pytest.raises(ValueError, match="learned optimizer"):
        from_spec(f"velo:{path}", learning_rate=1e-3)


@pytest.mark.heavy
def test_cli_trains_cartpole_with_published_size_random_weights(tmp_path):
    weights = tmp_path / "velo_random" / "params"
    weights.parent.mkdir()
    velo.save_velo(weights, velo.velo_random(jax.random.key(0)))
    out = tmp_path / "run"
    main(
        [
            "train",
            "--env",
            "cartpole",
            "--optimizer",
            f"velo:{weights}",
            "--seeds",
            "2",
            "--total-timesteps",
            "1024",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizer"] == "velo:velo_random"
    assert len(summary["final_returns"]) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer"]["lstm_hidden_size"] == 512
    # PPO passes its loss, so VeLO steps: finite, non-zero updates.
    magnitude = np.load(out / "metrics.npz")["update_magnitude"]
    assert np.all(np.isfinite(magnitude)) and np.all(magnitude > 0)
