"""PPO: GAE, determinism, vmapping, learning, and OPEN inside the loop."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.configs.presets import preset_for
from lopt.optim.files import load_open
from lopt.optim.handcrafted import adam
from lopt.optim.learned import learned_family
from lopt.optim.network import OPENConfig, unravel_meta_params
from lopt.rl.executor import Executor, chunk_size, seed_keys
from lopt.rl.gae import compute_gae
from lopt.rl.ppo import PPOConfig, make_ppo

from tiny import BREAKOUT, TINY_PPO, run_seeds


def make_train(config, optimizer):
    return make_ppo(config, optimizer).train


TINY = TINY_PPO


def test_gae_matches_python_loop():
    rng = np.random.default_rng(0)
    T, N, gamma, lam = 9, 3, 0.97, 0.9
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    dones = rng.random((T, N)) < 0.2
    last = rng.normal(size=N)
    adv, targets = compute_gae(
        jnp.asarray(rewards),
        jnp.asarray(values),
        jnp.asarray(dones),
        jnp.asarray(last),
        gamma,
        lam,
    )
    expected = np.zeros((T, N))
    gae = np.zeros(N)
    for t in reversed(range(T)):
        next_value = last if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_value * (1 - dones[t]) - values[t]
        gae = delta + gamma * lam * (1 - dones[t]) * gae
        expected[t] = gae
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(targets, expected + values, rtol=1e-5, atol=1e-6)


def test_config_refuses_impossible_sizes():
    with pytest.raises(ValueError, match="less than one update"):
        PPOConfig(total_timesteps=10, num_envs=4, num_steps=8)
    with pytest.raises(ValueError, match="minibatches"):
        PPOConfig(num_envs=3, num_steps=5, num_minibatches=4)
    with pytest.raises(ValueError, match="activation"):
        PPOConfig(activation="gelu")


def test_train_is_deterministic_and_vmaps_over_seeds():
    opt = adam(1e-3)
    train = make_train(TINY, opt)
    keys = jax.random.split(jax.random.key(0), 2)
    _, batched = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, opt.params)
    single = jax.jit(train)
    for i in range(2):
        _, metrics = single(keys[i], opt.params)
        _, again = single(keys[i], opt.params)
        np.testing.assert_array_equal(metrics["return"], again["return"])
        for name in metrics:
            np.testing.assert_allclose(
                batched[name][i], metrics[name], rtol=1e-4, atol=1e-6, err_msg=name
            )
    assert set(batched) >= {"return", "dormant_fraction", "update_magnitude"}
    assert batched["return"].shape == (2, TINY.num_updates)


@pytest.mark.heavy  # 22 s: three compilations of the same run
def test_chunked_executor_equals_one_call():
    config = dataclasses.replace(TINY, total_timesteps=4 * 8 * 6)
    assert chunk_size(6, target_chunks=3) == 2
    opt = adam(1e-3)
    metrics, _ = Executor(config, opt, chunk=2)(seed_keys([3, 4]))
    executor_whole, _ = Executor(config, opt)(seed_keys([3, 4]))
    _, whole = jax.jit(jax.vmap(make_train(config, opt), in_axes=(0, None)))(
        seed_keys([3, 4]), opt.params
    )
    for name in whole:
        np.testing.assert_allclose(metrics[name], whole[name], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(executor_whole[name], whole[name])


def test_compiled_train_runs_repeatedly():
    # jax 0.10 deadlocked on repeated calls of a compiled vmapped training
    # function with a learned optimizer on this machine (ECOSYSTEM.md).
    meta = unravel_meta_params(
        0.1 * jax.random.normal(jax.random.key(0), (1211,)), OPENConfig()
    )
    opt = learned_family(meta, OPENConfig())
    train = jax.jit(jax.vmap(make_train(TINY, opt), in_axes=(0, None)))
    for i in range(6):
        _, metrics = train(jax.random.split(jax.random.key(i), 2), opt.params)
        assert np.isfinite(metrics["return"]).all()


def test_vmap_over_optimizer_params():
    opt = adam(1e-3)
    train = make_train(TINY, opt)
    lrs = {**opt.params, "learning_rate": jnp.array([1e-4, 3e-2])}
    _, batched = jax.jit(
        jax.vmap(train, in_axes=(None, {"learning_rate": 0, "b1": None, "b2": None}))
    )(jax.random.key(0), lrs)
    for i, lr in enumerate([1e-4, 3e-2]):
        _, single = jax.jit(train)(
            jax.random.key(0), {**opt.params, "learning_rate": lr}
        )
        np.testing.assert_allclose(
            batched["update_magnitude"][i], single["update_magnitude"], rtol=1e-4
        )
    assert (
        batched["update_magnitude"][1].mean()
        > 10 * batched["update_magnitude"][0].mean()
    )


def test_ppo_with_adam_learns_cartpole():
    preset = preset_for("cartpole")
    opt = adam(**preset.optimizer_defaults("adam"))
    metrics, _ = run_seeds(preset.config, opt, [0, 1])
    final = metrics["return"][:, -1]
    assert final.min() >= 400, final


@pytest.mark.skipif(not BREAKOUT.exists(), reason="released optimizers not available")
def test_released_optimizer_runs_inside_ppo():
    meta, config = load_open(BREAKOUT)
    opt = learned_family(meta, config)
    tiny = dataclasses.replace(TINY, env="breakout", hidden_size=16)
    ppo = make_ppo(tiny, opt)
    state, metrics = jax.jit(ppo.train)(jax.random.key(0), opt.params)
    assert np.isfinite(metrics["return"]).all()
    assert (metrics["update_magnitude"] > 0).all()
    assert int(state.opt_state.count) == tiny.num_optimizer_steps
