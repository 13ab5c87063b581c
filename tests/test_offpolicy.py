"""SAC, TD3 and Rainbow: their losses by hand, the optimizer contract, vmapping,
the new environments, and learning."""

import dataclasses
import math

import flashbax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.configs.presets import preset_for
from lopt.envs.registry import is_continuous, make_vec_env
from lopt.optim import tree_paths
from lopt.optim.handcrafted import adam
from lopt.rl.offpolicy import OffPolicyAlgorithm
from lopt.rl.rainbow import (
    RainbowConfig,
    importance_weights,
    n_step_returns,
    next_distribution,
    project,
)
from lopt.rl.registry import make_algorithm
from lopt.rl.sac import (
    SACConfig,
    sac_actor_loss,
    sac_target,
    squashed_log_std,
    tanh_gaussian_log_prob,
    temperature_loss,
)
from lopt.rl.td3 import TD3Config, smoothed_action, td3_target

from tiny import over_seeds_and_learning_rates, run_seeds, spy_optimizer

# Pendulum, 2 envs x 2 steps per update, 8 updates; learning from frame 12 (update
# 2 on), 2 gradient steps per update: 6 learning updates, 12 gradient steps.
_TINY_REPLAY = {
    "env": "pendulum",
    "total_timesteps": 32,
    "num_envs": 2,
    "train_frequency": 2,
    "gradient_steps": 2,
    "buffer_size": 32,
    "batch_size": 8,
    "learning_starts": 12,
    "hidden_size": 8,
}
TINY_SAC = SACConfig(**_TINY_REPLAY)
TINY_TD3 = TD3Config(**_TINY_REPLAY)
TINY_RAINBOW = RainbowConfig(
    **{**_TINY_REPLAY, "env": "cartpole", "learning_starts": 12},
    num_atoms=5,
    n_step=2,
    target_update_interval=8,
)
TINY = {"sac": TINY_SAC, "td3": TINY_TD3, "rainbow": TINY_RAINBOW}
# TD3 runs SAC's loop: where a check is about the loop, not the loss, CI runs it on
# SAC and Rainbow and leaves TD3's copy to -m heavy (its delayed updates have their
# own test).
LOOPS = ["sac", pytest.param("td3", marks=pytest.mark.heavy), "rainbow"]


# SAC BY HAND ---------------------------------------------------------------------


def test_tanh_gaussian_log_prob_by_hand():
    # u = 0.5 under N(0, 1): log N = -0.125 - log(sqrt(2 pi)); the tanh's Jacobian
    # subtracts log(1 - tanh(0.5)^2). With log_std = log 2 and mean 1 at u = -1:
    # z = -1, log N = -0.5 - log 2 - log(sqrt(2 pi)).
    u = jnp.array([[0.5], [-1.0]])
    mean = jnp.array([[0.0], [1.0]])
    log_std = jnp.array([[0.0], [math.log(2.0)]])
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    expected = [
        -0.125 - half_log_2pi - math.log(1 - math.tanh(0.5) ** 2),
        -0.5 - math.log(2.0) - half_log_2pi - math.log(1 - math.tanh(-1.0) ** 2),
    ]
    np.testing.assert_allclose(tanh_gaussian_log_prob(u, mean, log_std), expected, 1e-5)
    # finite where 1 - tanh(u)^2 underflows in float32
    assert np.isfinite(
        tanh_gaussian_log_prob(jnp.array([[30.0]]), mean[:1], log_std[:1])
    )
    np.testing.assert_allclose(
        squashed_log_std(jnp.array([0.0, 50.0, -50.0])), [-1.5, 2, -5]
    )


def test_sac_losses_by_hand():
    # y = r + gamma (1 - terminal) (min(q'_0, q'_1) - alpha log pi'):
    # 1 + 0.9 (3 - 0.2 * -1) = 3.88; terminal: 2.
    y = sac_target(
        jnp.array([1.0, 2.0]),
        jnp.array([False, True]),
        jnp.array([3.0, 5.0]),
        jnp.array([4.0, 1.0]),
        jnp.array([-1.0, 0.5]),
        0.2,
        0.9,
    )
    np.testing.assert_allclose(y, [3.88, 2.0], rtol=1e-6)
    # actor: mean(alpha log pi - min q) = ((-0.5 - 0) + (0.5 - 2)) / 2
    actor = sac_actor_loss(
        jnp.array([1.0, 2.0]), jnp.array([0.0, 3.0]), jnp.array([-1.0, 1.0]), 0.5
    )
    np.testing.assert_allclose(actor, -1.0)
    # temperature: mean(-alpha (log pi + target)) with alpha 2, log pi -1, -3,
    # target -1: -2 * (-2 - 4) / 2 = 6; d/dlog_alpha is the same value, and no
    # gradient reaches log pi.
    log_pi = jnp.array([-1.0, -3.0])
    value, (g_alpha, g_log_pi) = jax.value_and_grad(temperature_loss, (0, 1))(
        jnp.log(2.0), log_pi, -1.0
    )
    np.testing.assert_allclose([value, g_alpha], [6.0, 6.0], rtol=1e-6)
    np.testing.assert_array_equal(g_log_pi, 0.0)


def test_twin_critic_loss_by_hand():
    from lopt.rl.continuous import twin_critic_loss

    q_0, q_1, y = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0])
    loss, grads = jax.value_and_grad(twin_critic_loss, (0, 1, 2))(q_0, q_1, y)
    np.testing.assert_allclose(loss, 0.5 + 1.0)  # mean(0, 1) + mean(1, 1)
    np.testing.assert_allclose(grads[0], [0.0, 1.0])  # 2 (q - y) / B
    np.testing.assert_allclose(grads[1], [-1.0, -1.0])
    np.testing.assert_array_equal(grads[2], 0.0)  # the target is a constant


# TD3 BY HAND ---------------------------------------------------------------------


def test_td3_target_with_smoothing_by_hand():
    # noise 0.2 * eps = 0.2, and -1.0 clipped to -0.5; sums clipped to [-1, 1]
    action = smoothed_action(
        jnp.array([0.9, -0.2, 0.1]), jnp.array([1.0, -5.0, 0.5]), 0.2, 0.5
    )
    np.testing.assert_allclose(action, [1.0, -0.7, 0.2], rtol=1e-6)
    y = td3_target(
        jnp.array([1.0, 1.0]),
        jnp.array([False, True]),
        jnp.array([2.0, 2.0]),
        jnp.array([3.0, 3.0]),
        0.5,
    )
    np.testing.assert_allclose(y, [2.0, 1.0])  # 1 + 0.5 min(2, 3); terminal: 1


# RAINBOW BY HAND -----------------------------------------------------------------


def test_c51_projection_by_hand():
    support = jnp.array([0.0, 1.0, 2.0])
    probs = jnp.array([[0.2, 0.5, 0.3]] * 3)
    # G + discount * z: [0.5, 1, 1.5] -> 0.2 halved to atoms 0 and 1, 0.5 to atom
    # 1, 0.3 halved to atoms 1 and 2; a return of 3 puts everything on the top
    # atom (clipped); a terminal transition (discount 0) with G = 0.3 gives
    # 0.7 / 0.3 to atoms 0 and 1.
    projected = project(
        probs, jnp.array([0.5, 3.0, 0.3]), jnp.array([0.5, 0.5, 0.0]), support
    )
    np.testing.assert_allclose(
        projected,
        [[0.1, 0.75, 0.15], [0.0, 0.0, 1.0], [0.7, 0.3, 0.0]],
        atol=1e-6,
    )


def test_n_step_returns_by_hand():
    rewards = jnp.array([[1.0, 2.0, 3.0]] * 3)
    dones = jnp.array([[0, 0, 0], [0, 1, 0], [1, 0, 0]], bool)
    returns, discounts = n_step_returns(rewards, dones, 0.5)
    # 1 + .5 * 2 + .25 * 3 = 2.75 bootstrapped with .125; an end at step 1 keeps
    # r_1 and drops r_2 and the bootstrap; an end at step 0 keeps r_0 only.
    np.testing.assert_allclose(returns, [2.75, 2.0, 1.0])
    np.testing.assert_allclose(discounts, [0.125, 0.0, 0.0])


def test_double_q_picks_online_action_and_target_distribution():
    online_q = jnp.array([[0.0, 1.0]])  # the online network prefers action 1
    target_probs = jnp.array([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])  # (B, A, N)
    support = jnp.array([0.0, 1.0, 2.0])
    # double Q: action 1 (online), valued by the target: all mass on atom 0
    np.testing.assert_allclose(
        next_distribution(online_q, target_probs, support, double=True), [[1, 0, 0]]
    )
    # plain C51: the target's own greedy action (0, mean 2)
    np.testing.assert_allclose(
        next_distribution(online_q, target_probs, support, double=False), [[0, 0, 1]]
    )


def test_importance_weights_and_prioritised_sampling():
    # P^-beta / max: beta 0.5 -> 1/sqrt(.1) and 1/sqrt(.4), the second half the first
    np.testing.assert_allclose(
        importance_weights(jnp.array([0.1, 0.4]), 0.5), [1.0, 0.5], rtol=1e-4
    )
    np.testing.assert_allclose(importance_weights(jnp.array([0.3, 0.3]), 1.0), 1.0)
    # flashbax's buffer as Rainbow builds it, alpha 0.5: priorities 1 and 4 sample
    # with probabilities 1/3 and 2/3
    buffer = flashbax.make_prioritised_trajectory_buffer(
        add_batch_size=1,
        sample_batch_size=3000,
        sample_sequence_length=1,
        period=1,
        min_length_time_axis=1,
        max_length_time_axis=2,
        priority_exponent=0.5,
    )
    state = buffer.init({"x": jnp.zeros(())})
    state = buffer.add(state, {"x": jnp.array([[0.0, 1.0]])})
    sample = buffer.sample(state, jax.random.key(0))
    x = sample.experience["x"][:, 0]
    state = buffer.set_priorities(state, sample.indices, 1.0 + 3.0 * x)
    sample = buffer.sample(state, jax.random.key(1))
    x = np.asarray(sample.experience["x"][:, 0])
    np.testing.assert_allclose(
        np.asarray(sample.probabilities), np.where(x, 2 / 3, 1 / 3), rtol=1e-5
    )
    assert abs(x.mean() - 2 / 3) < 0.03


# THE OPTIMIZER CONTRACT ------------------------------------------------------------


@pytest.mark.parametrize("algo", LOOPS)
def test_training_and_batch_props(algo):
    config = TINY[algo]
    assert config.first_learning_update == 2 and config.num_optimizer_steps == 12
    learner = make_algorithm(config, spy_optimizer(16))
    state, _ = jax.jit(learner.train)(jax.random.key(0), {})
    _, count, tps, bps, steps = state.opt_state
    assert int(count) == 12  # critic-only steps (TD3) are optimizer steps too
    # 6 learning updates of 2 gradient steps
    np.testing.assert_allclose(tps[:12], np.repeat(np.arange(6) / 5, 2), rtol=1e-6)
    np.testing.assert_allclose(bps[:12], np.tile([0.0, 1.0], 6), rtol=1e-6)
    assert int(steps[0]) == 12
    if algo == "sac":  # the temperature learns with the rest: alpha moved from 1
        assert float(state.params["temperature"]["log_alpha"]) != 0.0


def test_td3_delays_the_actor_and_the_targets():
    # one gradient step per update, actor every second step; updates 0-2 collect
    config = dataclasses.replace(TINY_TD3, gradient_steps=1, train_frequency=2)
    opt = adam(1e-2)
    algorithm = make_algorithm(config, opt)
    update = jax.jit(algorithm.update)
    state = algorithm.init(jax.random.key(0), opt.params)
    for _ in range(4):
        state, _ = update(state)  # updates 2, 3 learned: i = 2
    assert int(state.iteration) == 2
    before = state
    after, _ = update(before)  # i = 2: an actor step
    changed = lambda a, b: not np.allclose(tree_paths.flatten(a), tree_paths.flatten(b))  # noqa: E731
    assert changed(after.params["actor"], before.params["actor"])
    assert changed(after.params["critic"], before.params["critic"])
    assert changed(
        after.extra.target_params["actor"], before.extra.target_params["actor"]
    )
    later, _ = update(after)  # i = 3: critic only
    assert not changed(later.params["actor"], after.params["actor"])
    assert changed(later.params["critic"], after.params["critic"])
    for name in ("actor", "critic"):
        assert not changed(
            later.extra.target_params[name], after.extra.target_params[name]
        )
    # the target moved by tau toward the online network on the actor step
    expected = optax.incremental_update(
        after.params["critic"], before.extra.target_params["critic"], config.tau
    )
    np.testing.assert_allclose(
        tree_paths.flatten(after.extra.target_params["critic"]),
        tree_paths.flatten(expected),
        rtol=1e-6,
    )


def test_sac_tree_layer_props_and_noise():
    opt = adam()
    params = make_algorithm(TINY_SAC, opt).init(jax.random.key(0), opt.params).params
    assert set(params) == {"actor", "critic", "temperature"}
    props = {
        "/".join(tree_paths.path_names(p)): v
        for p, v in jax.tree_util.tree_flatten_with_path(
            tree_paths.layer_props(params)
        )[0]
    }
    assert props["actor/params/Dense_1/kernel"] == 0.5
    assert props["critic/params/q_1/Dense_2/bias"] == 1.0
    assert props["critic/params/q_0/Dense_0/kernel"] == 0.0
    assert props["temperature/log_alpha"] == 0.0
    mask = TINY_SAC.noise_mask()(params)
    assert all(jax.tree.leaves(mask["actor"]))
    assert not any(
        jax.tree.leaves(mask["critic"]) + jax.tree.leaves(mask["temperature"])
    )


# Rainbow's vmapped check is heavy: its loop's contract is checked above.
@pytest.mark.parametrize(
    "algo", [*LOOPS[:2], pytest.param("rainbow", marks=pytest.mark.heavy)]
)
def test_vmaps_over_seeds_and_learning_rates(algo):
    config = TINY[algo]
    metrics = over_seeds_and_learning_rates(config)
    losses = [k for k in metrics if k.endswith("loss")]
    assert losses and all(np.isfinite(metrics[k]).all() for k in losses)
    learned = metrics["update_magnitude"][:, :, -1]
    assert (learned[1] > 10 * learned[0]).all()


# ENVIRONMENTS AND TRANSITIONS ----------------------------------------------------


def test_pendulum_rescales_actions_and_keeps_final_observations():
    import gymnax

    env, params = make_vec_env("pendulum", 1)
    raw, raw_params = gymnax.make("Pendulum-v1")
    _, state = env.reset(jax.random.key(0), params)
    # VecEnv splits each key into one per environment
    _, raw_state = raw.reset(jax.random.split(jax.random.key(0), 1)[0], raw_params)
    # action 0.5 in [-1, 1] is a torque of 1 in [-2, 2]
    step = env.step(jax.random.key(1), state, jnp.array([[0.5]]), params)
    raw_step = raw.step(
        jax.random.split(jax.random.key(1), 1)[0],
        raw_state,
        jnp.array([1.0]),
        raw_params,
    )
    np.testing.assert_allclose(step[2][0], raw_step[2], rtol=1e-6)
    assert is_continuous("pendulum") and not is_continuous("cartpole")
    # the off-policy transition keeps the episode's last observation where the
    # 200-step time limit cut it, and marks it not terminal
    algorithm = make_algorithm(TINY_SAC, adam())
    assert isinstance(algorithm, OffPolicyAlgorithm)
    final = jnp.ones((2, 3))
    info = {"final_observation": final, "returned_episode_return": jnp.zeros(2)}
    truncated = jnp.array([True, False])
    fake = (
        jnp.zeros((2, 3)),
        None,
        jnp.zeros(2),
        jnp.array([False, False]),
        truncated,
        info,
    )
    transition = algorithm.transition(jnp.zeros((2, 3)), jnp.zeros((2, 1)), {}, fake)
    np.testing.assert_array_equal(transition.next_obs, final)
    np.testing.assert_array_equal(transition.extras["terminal"], [False, False])
    np.testing.assert_array_equal(transition.done, [True, False])


def test_configs_and_presets_refuse_impossible_settings():
    with pytest.raises(ValueError, match="n_step"):
        RainbowConfig(env="cartpole", learning_starts=10, num_envs=10)
    with pytest.raises(ValueError, match="v_min"):
        RainbowConfig(v_min=1.0, v_max=1.0)
    with pytest.raises(ValueError, match="policy_frequency"):
        TD3Config(policy_frequency=0)
    with pytest.raises(
        ValueError, match="continuous action spaces and classic/cartpole"
    ):
        preset_for("cartpole", algo="sac")
    with pytest.raises(ValueError, match="discrete actions and classic/pendulum"):
        preset_for("pendulum", algo="rainbow")
    with pytest.raises(ValueError, match="discrete actions"):
        make_algorithm(dataclasses.replace(TINY_TD3, env="cartpole"), adam())


def test_cli_refuses_a_mismatched_action_space(tmp_path, capsys):
    from lopt.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--algo", "td3", "--env", "breakout", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "td3 acts in continuous action spaces" in capsys.readouterr().err


@pytest.mark.heavy
def test_gymnasium_mujoco_on_the_host():
    pytest.importorskip("mujoco")
    from lopt.rl.executor import seed_keys
    from lopt.rl.host_backend import run_host

    env, _ = make_vec_env("mujoco/hopper", 2)
    obs, state = env.reset(jax.random.key(0), None)
    assert obs.shape == (2, 11) and obs.dtype == np.float32
    for _ in range(3):
        step = env.step(None, state, np.ones((2, 3)), None)
        state = step[1]
    assert step[5]["final_observation"].shape == (2, 11)
    env.close()
    config = dataclasses.replace(
        preset_for("mujoco/hopper", "small", "sac").config,
        total_timesteps=40,
        learning_starts=30,
        batch_size=8,
        hidden_size=8,
    )
    metrics, _ = run_host(config, adam(), seed_keys([0]), adam().params)
    assert metrics["return"].shape == (1, 40)
    assert metrics["critic_loss"][0, -1] > 0 and metrics["critic_loss"][0, 0] == 0


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("module", "env", "algo"),
    [
        ("brax", "brax/hopper", "td3"),
        ("mujoco_playground", "dmc/cartpole-swingup", "sac"),
    ],
)
def test_jax_suites_run(module, env, algo):
    pytest.importorskip(module)
    config = dataclasses.replace(
        preset_for(env, "small", algo).config,
        total_timesteps=8,
        learning_starts=4,
        batch_size=4,
        hidden_size=8,
    )
    metrics, _ = run_seeds(config, adam(), [0])
    assert np.isfinite(metrics["critic_loss"]).all()
    assert metrics["critic_loss"][0, -1] > 0


# LEARNING --------------------------------------------------------------------------


@pytest.mark.heavy
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_learns_pendulum_with_adam(algo):
    preset = preset_for("pendulum", algo=algo)
    opt = adam(**{k: v for k, v in preset.optimizer_defaults("adam").items()})
    metrics, _ = run_seeds(preset.config, opt, [0, 1])
    final = metrics["return"][:, -1]
    assert final.mean() >= -300, final


@pytest.mark.heavy
def test_rainbow_learns_cartpole_with_adam():
    preset = preset_for("cartpole", algo="rainbow")
    opt = adam(**{k: v for k, v in preset.optimizer_defaults("adam").items()})
    metrics, _ = run_seeds(preset.config, opt, [0, 1])
    final = metrics["return"][:, -1]
    assert final.mean() >= 150, final
