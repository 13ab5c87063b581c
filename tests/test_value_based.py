"""DQN, IQN and PQN: their pieces by hand, the optimizer contract, and learning."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.configs.presets import preset_for, task_for
from lopt.meta.config import TaskConfig
from lopt.optim import tree_paths
from lopt.optim.files import load_open
from lopt.optim.handcrafted import adam
from lopt.optim.learned import learned_family
from lopt.rl import replay
from lopt.rl.dqn import DQNConfig
from lopt.rl.exploration import epsilon, epsilon_greedy
from lopt.rl.iqn import IQNConfig, quantile_huber_loss
from lopt.rl.pqn import PQNConfig, q_lambda_returns
from lopt.rl.registry import make_algorithm

from tiny import (
    BREAKOUT,
    TINY_DQN,
    TINY_IQN,
    TINY_PQN,
    over_seeds_and_learning_rates,
    run_seeds,
    spy_optimizer,
)

TINY = {"dqn": TINY_DQN, "iqn": TINY_IQN, "pqn": TINY_PQN}
# IQN runs DQN's loop: where a check is about the loop, not the loss, CI runs it
# on DQN and PQN and leaves IQN's copy to -m heavy.
LOOPS = ["dqn", pytest.param("iqn", marks=pytest.mark.heavy), "pqn"]


# PIECES BY HAND ------------------------------------------------------------------


def test_quantile_huber_loss_by_hand():
    # delta_ij = target_j - quantile_i = [[1, 3], [-1, 1]]; huber = [[.5, 2.5],
    # [.5, .5]]; weights |tau_i - 1{delta < 0}| = [[.25, .25], [.25, .75]];
    # sum over i of the mean over j: (.125 + .625) / 2 + (.125 + .375) / 2.
    quantiles = jnp.array([0.0, 2.0])
    taus = jnp.array([0.25, 0.75])
    targets = jnp.array([1.0, 3.0])
    loss, grads = jax.value_and_grad(quantile_huber_loss)(quantiles, taus, targets, 1.0)
    np.testing.assert_allclose(loss, 0.625, rtol=1e-6)
    # d/dq_i = mean_j -w_ij * clip(delta_ij, -1, 1): (-.25 - .25) / 2, (.25 - .75) / 2
    np.testing.assert_allclose(grads, [-0.25, -0.25], rtol=1e-6)
    # kappa = 2: Huber 0.5 for |delta| = 1 and 2 (3 - 1) = 4 for the 3; / kappa:
    # i = 0: mean(.25 * .5, .25 * 4) / 2; i = 1: mean(.25 * .5, .75 * .5) / 2
    loss2 = quantile_huber_loss(quantiles, taus, targets, 2.0)
    np.testing.assert_allclose(loss2, 0.28125 + 0.125, rtol=1e-6)


def test_q_lambda_returns_by_hand():
    # gamma = lambda = 0.5, rewards 1, 2, 3, greedy next values 10, 20, 30.
    # No episode end: G2 = 3 + .5 * 30 = 18, G1 = 2 + .5 (.5 * 20 + .5 * 18) = 11.5,
    # G0 = 1 + .5 (.5 * 10 + .5 * 11.5) = 6.375. An end at step 1 (second column):
    # G2 = 18, G1 = 2, G0 = 1 + .5 (.5 * 10 + .5 * 2) = 4.
    rewards = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    dones = jnp.array([[False, False], [False, True], [False, False]])
    next_values = jnp.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    returns = q_lambda_returns(rewards, dones, next_values, 0.5, 0.5)
    np.testing.assert_allclose(returns, [[6.375, 4.0], [11.5, 2.0], [18.0, 18.0]])
    # lambda = 0: one-step targets r + gamma V
    one_step = q_lambda_returns(rewards, dones, next_values, 0.5, 0.0)
    np.testing.assert_allclose(one_step[:, 0], [6.0, 12.0, 18.0])


def test_epsilon_schedule_and_greedy_actions():
    values = [float(epsilon(f, 1.0, 0.05, 100.0)) for f in (0, 50, 100, 400)]
    np.testing.assert_allclose(values, [1.0, 0.525, 0.05, 0.05], rtol=1e-6)
    assert float(epsilon(0, 1.0, 0.05, 0.0)) == pytest.approx(0.05)
    q = jnp.tile(jnp.array([0.0, 1.0, 0.5]), (4000, 1))
    key = jax.random.key(0)
    np.testing.assert_array_equal(epsilon_greedy(key, q, 0.0), 1)
    uniform = np.bincount(np.asarray(epsilon_greedy(key, q, 1.0)), minlength=3)
    assert np.all(np.abs(uniform / 4000 - 1 / 3) < 0.03), uniform
    # eps 0.3: greedy 0.7 + 0.3 / 3
    half = np.mean(np.asarray(epsilon_greedy(key, q, 0.3)) == 1)
    assert abs(half - 0.8) < 0.03


def test_replay_buffer_wraps_around():
    buffer = replay.init({"x": jnp.zeros(()), "y": jnp.zeros(2)}, capacity=5)
    batch = lambda start: {  # noqa: E731
        "x": jnp.arange(start, start + 3.0),
        "y": jnp.stack([jnp.arange(start, start + 3.0)] * 2, axis=1),
    }
    buffer = replay.add(buffer, batch(0))
    assert int(buffer.position) == 3 and int(buffer.size) == 3
    drawn = replay.sample(buffer, jax.random.key(0), 200)
    assert set(np.asarray(drawn["x"]).tolist()) == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(drawn["y"][:, 0], drawn["x"])
    buffer = replay.add(buffer, batch(3))  # 3, 4 fill the end, 5 overwrites 0
    np.testing.assert_array_equal(buffer.data["x"], [5, 1, 2, 3, 4])
    assert int(buffer.position) == 1 and int(buffer.size) == 5
    drawn = replay.sample(buffer, jax.random.key(1), 500)
    assert set(np.asarray(drawn["x"]).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_configs_refuse_impossible_settings():
    with pytest.raises(ValueError, match="less than one update"):
        DQNConfig(total_timesteps=5, num_envs=10)
    with pytest.raises(ValueError, match="learning_starts"):
        DQNConfig(total_timesteps=1000, learning_starts=5000)
    with pytest.raises(ValueError, match="buffer_size"):
        DQNConfig(buffer_size=4, num_envs=10)
    with pytest.raises(ValueError, match="tau"):
        DQNConfig(tau=0.0)
    with pytest.raises(ValueError, match="kappa"):
        IQNConfig(kappa=0.0)
    with pytest.raises(ValueError, match="minibatches"):
        PQNConfig(num_envs=3, num_steps=5, num_minibatches=4)
    with pytest.raises(ValueError, match="a dqn task needs a DQNConfig"):
        TaskConfig(algo="dqn", config=TINY_PQN)
    with pytest.raises(ValueError, match="iqn has no preset on atari/pong"):
        preset_for("atari/pong", algo="iqn")
    with pytest.raises(ValueError, match="unknown algorithm"):
        preset_for("cartpole", algo="a2c")


def test_learning_updates_and_steps():
    # 24 frames reached at the end of update 2 (8 frames each): updates 2..7 learn
    assert TINY_DQN.first_learning_update == 2
    assert TINY_DQN.num_learning_updates == 6
    assert TINY_DQN.num_optimizer_steps == 12
    assert DQNConfig(learning_starts=0).first_learning_update == 0
    assert DQNConfig(learning_starts=10).first_learning_update == 0
    assert DQNConfig(learning_starts=11).first_learning_update == 1


# THE OPTIMIZER CONTRACT ------------------------------------------------------------


@pytest.mark.parametrize(
    ("algo", "training_props", "batch_props"),
    [
        # 6 learning updates of 2 gradient steps
        ("dqn", np.repeat(np.arange(6) / 5, 2), np.tile([0.0, 1.0], 6)),
        ("iqn", np.repeat(np.arange(6) / 5, 2), np.tile([0.0, 1.0], 6)),
        # 3 rollouts, 2 epochs of 2 minibatches each
        ("pqn", np.repeat(np.arange(3) / 2, 4), np.tile([0, 0, 1, 1.0], 3)),
    ],
)
def test_training_and_batch_props(algo, training_props, batch_props):
    config = TINY[algo]
    learner = make_algorithm(config, spy_optimizer(16))
    state, _ = jax.jit(learner.train)(jax.random.key(0), {})
    _, count, tps, bps, steps = state.opt_state
    assert int(count) == config.num_optimizer_steps == 12
    np.testing.assert_allclose(tps[:12], training_props, rtol=1e-6)
    np.testing.assert_allclose(bps[:12], batch_props, rtol=1e-6)
    assert int(steps[0]) == 12  # the optimizer is built for the real step count


def test_layer_props_and_noise_masks_of_q_networks():
    pqn = make_algorithm(TINY_PQN, adam())
    params = pqn.init(jax.random.key(0), {**adam().params}).params
    names = {
        "/".join(tree_paths.path_names(p)): v
        for p, v in jax.tree_util.tree_flatten_with_path(
            tree_paths.layer_props(params)
        )[0]
    }
    # LayerNorm's scale and offset belong to their dense layer
    assert names["params/Dense_0/scale"] == names["params/Dense_0/kernel"] == 0.0
    assert names["params/Dense_1/offset"] == 0.5
    assert names["params/Dense_2/kernel"] == 1.0
    iqn = make_algorithm(TINY_IQN, adam())
    iqn_params = iqn.init(jax.random.key(0), adam().params).params
    props = [
        v
        for p, v in jax.tree_util.tree_flatten_with_path(
            tree_paths.layer_props(iqn_params)
        )[0]
        if tree_paths.path_names(p)[-1] == "kernel"
    ]
    np.testing.assert_allclose(props, [0, 0.25, 0.5, 0.75, 1.0])  # 2 + phi + 2
    off = jax.tree.leaves(TINY_DQN.noise_mask()(params))
    on = jax.tree.leaves(
        dataclasses.replace(TINY_DQN, noise_on=True).noise_mask()(params)
    )
    assert not any(off) and all(on)
    # OPEN's default mask (the actor) finds no actor in a Q-network: no noise
    assert not any(jax.tree.leaves(tree_paths.actor_mask(params)))


def test_vmapped_run_equals_single_runs():
    # Under vmap the learning-starts branch becomes a select: same numbers.
    opt = adam(1e-3)
    train = make_algorithm(TINY_DQN, opt).train
    keys = jax.random.split(jax.random.key(0), 2)
    _, batched = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, opt.params)
    _, single = jax.jit(train)(keys[1], opt.params)
    for name in ("return", "loss", "update_magnitude", "epsilon"):
        np.testing.assert_allclose(batched[name][1], single[name], rtol=1e-4, atol=1e-6)
    assert (single["loss"][:2] == 0).all() and (single["loss"][2:] > 0).all()


@pytest.mark.parametrize("algo", LOOPS)
def test_vmaps_over_seeds_and_learning_rates(algo):
    config = TINY[algo]
    metrics = over_seeds_and_learning_rates(config)
    assert np.isfinite(metrics["loss"]).all()
    learned = metrics["update_magnitude"][:, :, -1]
    assert (learned[1] > 10 * learned[0]).all()


@pytest.mark.skipif(not BREAKOUT.exists(), reason="released optimizers not available")
@pytest.mark.parametrize("algo", LOOPS)
def test_open_trains_inside_over_seeds_and_a_population(algo):
    meta, open_config = load_open(BREAKOUT)
    config = TINY[algo]
    family = learned_family(meta, open_config, noise_mask=config.noise_mask())
    train = make_algorithm(config, family).train
    population = jax.tree.map(lambda x: jnp.stack([x, 0.5 * x]), meta)
    state, metrics = jax.jit(
        jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0))
    )(jax.random.split(jax.random.key(0), 2), population)
    assert metrics["return"].shape == (2, 2, config.num_updates)
    assert np.isfinite(metrics["return"]).all() and np.isfinite(metrics["loss"]).all()
    assert (metrics["update_magnitude"][..., -1] > 0).all()
    assert (np.asarray(state.opt_state.count) == config.num_optimizer_steps).all()


@pytest.mark.skipif(not BREAKOUT.exists(), reason="released optimizers not available")
def test_noise_on_adds_open_noise_to_the_q_network():
    meta, open_config = load_open(BREAKOUT)
    finals = {}
    for noise_on in (False, True):
        config = dataclasses.replace(TINY_PQN, noise_on=noise_on)
        family = learned_family(meta, open_config, noise_mask=config.noise_mask())
        state, _ = jax.jit(make_algorithm(config, family).train)(
            jax.random.key(0), meta
        )
        finals[noise_on] = tree_paths.flatten(state.params)
    assert not np.allclose(finals[True], finals[False])


def test_meta_task_and_executor_take_value_configs():
    task = task_for("cartpole", algo="pqn")
    assert task.algo == "pqn" and isinstance(task.config, PQNConfig)
    shorter = dataclasses.replace(
        task, config=dataclasses.replace(task.config, total_timesteps=4096)
    )
    assert shorter.config.num_updates == 2
    metrics, _ = run_seeds(TINY_PQN, adam(1e-3), [0, 1])
    assert metrics["return"].shape == (2, TINY_PQN.num_updates)


def test_cli_names_the_missing_preset(tmp_path, capsys):
    from lopt.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--algo", "dqn", "--env", "ant", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "dqn has no preset on brax/ant" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["meta-train", "--algo", "pqn", "--generations", "1"])
    assert "--algo pqn needs --envs" in capsys.readouterr().err


# LEARNING --------------------------------------------------------------------------

LEARNS = {
    "dqn": (
        DQNConfig(
            total_timesteps=100_000,
            learning_starts=1_000,
            exploration_fraction=0.2,
            hidden_size=64,
        ),
        5e-4,
    ),
    "iqn": (
        IQNConfig(
            total_timesteps=60_000,
            learning_starts=1_000,
            exploration_fraction=0.2,
            batch_size=32,
            hidden_size=64,
            num_hidden_layers=1,
            num_tau_samples=16,
            num_tau_prime_samples=16,
            num_quantile_samples=16,
        ),
        1e-3,
    ),
    "pqn": (
        PQNConfig(total_timesteps=150_000, hidden_size=64),
        3e-4,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo", ["dqn", pytest.param("iqn", marks=pytest.mark.heavy), "pqn"]
)
def test_learns_cartpole_with_adam(algo):
    config, lr = LEARNS[algo]
    opt = adam(lr, anneal=algo == "pqn")
    metrics, _ = run_seeds(config, opt, [0, 1])
    final = metrics["return"][:, -1]
    assert final.mean() >= 150, final
