"""Batched environments, the batch wrappers, continuous actions and the optional
suites (Brax, Craftax, Atari), checked by hand on small fake environments."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from lopt.envs import adapters
from lopt.envs.registry import (
    REGISTRY,
    HostEnvironmentError,
    canonical_name,
    is_host,
    make_env,
    make_vec_env,
)
from lopt.envs.vector import (
    NormalizeObservation,
    NormalizeReward,
    PoolReset,
    RunningMoments,
    VecEnv,
)
from lopt.envs.wrappers import ClipAction, EpisodeLog
from lopt.optim.tree_paths import layer_props
from lopt.rl import networks
from lopt.rl.distributions import gaussian_entropy, gaussian_log_prob


@struct.dataclass
class CounterState:
    t: jax.Array  # steps since reset
    start: jax.Array  # a number drawn at reset, to tell fresh states apart


class Counter:
    """A fake environment: obs = [t, start], reward = action, done at t = length."""

    continuous = False

    def __init__(self, length: int = 3):
        self.length = length

    def reset(self, key, params):
        start = jax.random.uniform(key)
        return jnp.stack([0.0, start]), CounterState(jnp.int32(0), start)

    def step(self, key, state, action, params):
        t = state.t + 1
        done = t >= self.length
        state = CounterState(t, state.start)
        obs = jnp.stack([t.astype(jnp.float32), state.start])
        reward = jnp.asarray(action, jnp.float32).sum()
        return obs, state, reward, done, jnp.zeros_like(done), {}

    def observation_shape(self, params):
        return (2,)


def test_vec_env_steps_each_copy_with_its_own_key():
    env = VecEnv(Counter(), 4)
    obs, state = env.reset(jax.random.key(0), None)
    assert obs.shape == (4, 2) and len(set(np.asarray(obs[:, 1]).tolist())) == 4
    obs, state, reward, *_ = env.step(jax.random.key(1), state, jnp.arange(4.0), None)
    np.testing.assert_array_equal(reward, [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(obs[:, 0], 1.0)


def test_episode_log_over_a_batch():
    env = EpisodeLog(VecEnv(Counter(length=2), 3))
    _, state = env.reset(jax.random.key(0), None)
    assert state.returned_episode_return.shape == (3,)
    actions = jnp.asarray([1.0, 2.0, 3.0])
    _, state, *_, info = env.step(jax.random.key(1), state, actions, None)
    np.testing.assert_array_equal(info["returned_episode_return"], 0.0)
    _, state, *_, info = env.step(jax.random.key(2), state, actions, None)
    # two steps of reward a each, then the episode ends
    np.testing.assert_array_equal(info["returned_episode_return"], [2.0, 4.0, 6.0])


def test_pool_reset_hands_fresh_states_to_finished_environments():
    # Counter never resets itself; PoolReset must. Two environments finish at
    # once and take pool slots 0 and 1.
    env = PoolReset(VecEnv(Counter(length=1), 3), pool_size=2)
    obs, state = env.reset(jax.random.key(0), None)
    pool_starts = np.asarray(state.pool_obs[:, 1])
    obs, state, _, terminated, *_ = env.step(
        jax.random.key(1), state, jnp.zeros(3), None
    )
    assert bool(terminated.all())
    np.testing.assert_array_equal(obs[:, 0], 0.0)  # t restarted
    np.testing.assert_allclose(obs[:, 1], pool_starts[[0, 1, 0]])
    np.testing.assert_array_equal(state.env_state.t, 0)
    # a new pool is drawn every step
    assert not np.allclose(state.pool_obs[:, 1], pool_starts)


def test_running_moments_match_numpy_over_several_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(5, 2)) for _ in range(4)]
    moments = RunningMoments.create((2,))
    for b in batches:
        moments = moments.update(jnp.asarray(b))
    data = np.concatenate(batches)
    # the initial count of 1e-4 (mean 0, var 1) weighs almost nothing
    np.testing.assert_allclose(moments.mean, data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(moments.var, data.var(0), rtol=1e-4)
    assert float(moments.count) == pytest.approx(20.0001)


def test_normalize_observation_by_hand():
    env = NormalizeObservation(VecEnv(Counter(), 2))
    obs, state = env.reset(jax.random.key(0), None)
    raw, _ = VecEnv(Counter(), 2).reset(jax.random.key(0), None)
    # After one batch: count 2 + 1e-4, mean ~ batch mean, var ~ batch var.
    n, c = 2.0, 1e-4
    mean = np.asarray(raw).mean(0) * n / (n + c)
    expected = (np.asarray(raw) - mean) / np.sqrt(np.asarray(state.moments.var) + 1e-8)
    np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(obs[:, 0], 0.0)  # both t are 0: zero spread


def test_normalize_reward_scales_by_the_discounted_return_spread():
    gamma = 0.5
    env = NormalizeReward(VecEnv(Counter(length=10), 2), gamma)
    _, state = env.reset(jax.random.key(0), None)
    actions = jnp.asarray([1.0, 3.0])
    returns = np.zeros(2)
    moments = RunningMoments.create(())
    for t in range(3):
        _, state, reward, *_ = env.step(jax.random.key(t), state, actions, None)
        returns = returns * gamma + np.asarray(actions)
        moments = moments.update(jnp.asarray(returns))
        np.testing.assert_allclose(
            reward, np.asarray(actions) / np.sqrt(float(moments.var) + 1e-8), rtol=1e-5
        )
    np.testing.assert_allclose(state.discounted_return, returns, rtol=1e-6)


def test_clip_action():
    class Echo(Counter):
        def step(self, key, state, action, params):
            return action, state, 0.0, False, False, {}

    out = ClipAction(Echo())
    obs, *_ = out.step(None, None, jnp.asarray([-3.0, 0.5, 2.0]), None)
    np.testing.assert_array_equal(obs, [-1.0, 0.5, 1.0])


def test_gaussian_actor_has_log_std_as_its_last_layer():
    actor = networks.GaussianActor(3, hidden_size=8, activation="tanh")
    variables = actor.init(jax.random.key(0), jnp.zeros((1, 5)))
    assert variables["params"]["log_std"].shape == (3,)
    np.testing.assert_array_equal(variables["params"]["log_std"], 0.0)
    props = layer_props({"actor": variables})["actor"]["params"]
    assert props["Dense_0"]["kernel"] == 0.0
    assert props["Dense_1"]["bias"] == pytest.approx(1 / 3)
    assert props["Dense_2"]["kernel"] == pytest.approx(2 / 3)
    assert props["log_std"] == 1.0
    (mean, log_std), acts = actor.apply(variables, jnp.ones((4, 5)))
    assert mean.shape == log_std.shape == (4, 3)
    assert set(acts["params"]) == {"Dense_0", "Dense_1", "Dense_2"}


def test_gaussian_log_prob_and_entropy_by_hand():
    mean, log_std = jnp.asarray([0.0, 1.0]), jnp.asarray([0.0, math.log(2.0)])
    action = jnp.asarray([1.0, 0.0])
    # N(1; 0, 1) and N(0; 1, 2^2), independent
    expected = (-0.5 - 0.5 * math.log(2 * math.pi)) + (
        -0.5 * 0.25 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
    )
    assert float(gaussian_log_prob((mean, log_std), action)) == pytest.approx(
        expected, rel=1e-6
    )
    entropy = 2 * 0.5 * (1 + math.log(2 * math.pi)) + math.log(2.0)
    assert float(gaussian_entropy((mean, log_std))) == pytest.approx(entropy)


def test_optional_suites_are_registered_with_aliases():
    assert canonical_name("ant") == "brax/ant"
    assert canonical_name("craftax-classic") == "craftax/classic"
    assert canonical_name("atari-breakout") == "atari/breakout"
    assert is_host("atari/pong") and not is_host("brax/ant")
    assert {"brax/halfcheetah", "brax/hopper", "brax/walker2d"} <= set(REGISTRY)
    with pytest.raises(HostEnvironmentError, match="make_vec_env"):
        make_env("atari/breakout")


def test_a_missing_extra_names_the_install_command(monkeypatch):
    real = importlib.import_module

    def fake(name, *args):
        if name.startswith("brax"):
            raise ImportError("No module named 'brax'")
        return real(name, *args)

    monkeypatch.setattr(adapters.importlib, "import_module", fake)
    with pytest.raises(
        adapters.MissingExtraError, match=r"pip install -e '\.\[brax\]'"
    ):
        make_env("ant")


def test_importing_lopt_does_not_import_optional_suites():
    import subprocess
    import sys

    code = (
        "import sys, lopt.envs.registry, lopt.rl.ppo, lopt.cli; "
        "print(sorted(m for m in ('brax', 'craftax', 'ale_py') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _batch_steps(name, num_envs=2, steps=3):
    env, params = make_vec_env(name, num_envs)
    obs, state = env.reset(jax.random.key(0), params)
    step = jax.jit(env.step)
    shape = env.observation_shape(params)
    assert obs.shape == (num_envs, *shape)
    for t in range(steps):
        if env.continuous:
            action = jnp.full((num_envs, env.action_size(params)), 5.0)  # clipped
        else:
            action = jnp.zeros(num_envs, jnp.int32)
        obs, state, reward, *_, info = step(jax.random.key(t), state, action, params)
    assert obs.shape == (num_envs, *shape) and reward.shape == (num_envs,)
    assert np.isfinite(np.asarray(obs)).all()
    return env, params, state, info


@pytest.mark.heavy
def test_brax_ant_batch_normalises_and_logs():
    pytest.importorskip("brax")
    env, params, state, info = _batch_steps("ant")
    assert env.continuous and env.action_size(params) == 8
    assert env.observation_shape(params) == (27,)
    # NormalizeReward(NormalizeObservation(EpisodeLog(VecEnv)))
    assert float(state.env_state.moments.count) == pytest.approx(8.0001)
    assert "returned_episode_return" in info


@pytest.mark.heavy
def test_craftax_classic_batch_steps_with_a_reset_pool():
    pytest.importorskip("craftax")
    env, params, state, _ = _batch_steps("craftax-classic")
    assert env.observation_shape(params) == (1345,) and env.num_actions(params) == 17
    assert state.env_state.pool_obs.shape == (16, 1345)


def test_atari_batch_steps_on_the_host():
    pytest.importorskip("ale_py")
    env, params = make_vec_env("atari/space_invaders", 2)
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
    assert env.num_actions(params) == 6
    clipped = np.zeros(2)
    for _ in range(300):  # FIRE: aliens are worth 5 to 30 points each
        obs, state, reward, *_ = env.step(None, state, np.array([1, 1]), params)
        assert set(np.unique(reward)) <= {0.0, 1.0}  # learning sees the sign
        clipped += reward
    # the log underneath keeps the raw points (no episode ends in 300 steps)
    raw = np.asarray(state.episode_return)
    assert (clipped > 0).all() and (raw >= 5 * clipped).all()
    env.close()
