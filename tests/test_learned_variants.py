"""OPEN's ablations, No-Features and Optim4RL: sizes, effect paths, files, CLI."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.meta.config import ESConfig, MetaTrainConfig, TaskConfig
from lopt.meta.loop import MetaTrainer, read_config
from lopt.optim import tree_paths
from lopt.optim.dormancy import uniform_dormancy
from lopt.optim.files import OptimizerFileError, load_learned, load_open, save_learned
from lopt.optim.learned import (
    ABLATIONS,
    LearnedOptimizerError,
    learned_family,
    make_config,
    unravel_meta_params,
    zeros_meta_params,
)
from lopt.optim.network import OPENConfig
from lopt.optim.open_opt import open_optimizer, open_step
from lopt.optim.optim4rl import (
    Optim4RLConfig,
    optim4rl_optimizer,
)
from lopt.optim.optim4rl import (
    zeros_meta_params as optim4rl_zeros,
)
from lopt.optim.spec import OptimizerSpecError, from_spec
from lopt.serialise import from_dict, to_dict

from tiny import tiny_ppo

G, H = 8, 16  # the small OPEN network


def _open_count(inputs: int, outputs: int) -> int:
    """flax GRUCell (ir, iz, in with bias; hr, hz without; hn with) + the MLP."""
    gru = 3 * (inputs * G + G) + 2 * G * G + (G * G + G)
    mlp = (G * H + H) + 2 * H + (H * H + H) + 2 * H + (H * outputs + outputs)
    return gru + mlp


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (make_config("open"), _open_count(19, 3)),  # 1211
        *[
            (make_config("open", ablate=(a,)), _open_count(18, 3))  # 1187
            for a in ("training_prop", "batch_prop", "layer_prop", "dormancy")
        ],
        (make_config("open", ablate=("noise",)), _open_count(19, 2)),  # 1194
        (make_config("open", separate_actor_critic=True), 2 * _open_count(19, 3)),
        (make_config("no-features"), _open_count(15, 2)),  # 1098
        # Two GRUs reading one input, each with a Dense(1) head.
        (
            make_config("optim4rl"),
            2 * (3 * (1 * G + G) + 2 * G * G + G * G + G + G + 1),
        ),
    ],
    ids=lambda x: x.variant if hasattr(x, "variant") else str(x),
)
def test_parameter_counts_by_hand(config, expected):
    assert config.num_meta_params == expected
    leaves = jax.tree.leaves(zeros_meta_params(config))
    assert sum(x.size for x in leaves) == expected


def test_hand_counts_are_the_numbers_quoted():
    assert _open_count(19, 3) == 1211
    assert _open_count(18, 3) == 1187
    assert _open_count(19, 2) == 1194
    assert _open_count(15, 2) == 1098
    assert make_config("optim4rl").num_meta_params == 514


def test_removed_input_is_removed_from_the_kernels():
    config = make_config("open", ablate=("dormancy", "training_prop"))
    gru = zeros_meta_params(config)["gru_params"]["params"]
    for gate in ("ir", "iz", "in"):
        assert gru[gate]["kernel"].shape == (17, G)
    assert config.input_columns == (*range(15), 16, 17)  # layer_prop, batch_prop
    head = zeros_meta_params(make_config("no-features"))["params"]["params"]
    assert head["layers_6"]["kernel"].shape == (H, 2)


def test_bad_variant_names_are_clear():
    with pytest.raises(LearnedOptimizerError, match="choose from open, no-features"):
        make_config("velo")
    with pytest.raises(LearnedOptimizerError, match="choose from training_prop"):
        make_config("open", ablate=("momentum",))
    with pytest.raises(LearnedOptimizerError, match="apply to open"):
        make_config("optim4rl", ablate=("noise",))
    with pytest.raises(ValueError, match="unknown feature group"):
        OPENConfig(features=("param", "dormancy_flag"))


# EFFECT PATHS ---------------------------------------------------------------


def _agent():
    keys = jax.random.split(jax.random.key(0), 4)
    return {
        "actor": {
            "params": {
                "Dense_0": {
                    "bias": jax.random.normal(keys[0], (3,)),
                    "kernel": jax.random.normal(keys[1], (2, 3)),
                },
                "Dense_1": {"bias": jnp.zeros(2), "kernel": jnp.ones((3, 2))},
            }
        },
        "critic": {
            "params": {
                "Dense_0": {
                    "bias": jax.random.normal(keys[2], (3,)),
                    "kernel": jax.random.normal(keys[3], (2, 3)),
                }
            }
        },
    }


def _random_meta(config, seed=1):
    flat = 0.5 * jax.random.normal(jax.random.key(seed), (config.num_meta_params,))
    return unravel_meta_params(flat, config)


def _inputs(**changes):
    params = _agent()
    base = {
        "key": jax.random.key(7),
        "training_prop": 0.25,
        "batch_prop": 1 / 3,
        "dormancy": uniform_dormancy(params),
        "layer_props": tree_paths.layer_props,
    }
    base.update(changes)
    return params, base


def _update(config, meta, **changes):
    params, kw = _inputs(**changes)
    layer_props = kw.pop("layer_props")
    tx = open_optimizer(meta, config, layer_props=layer_props)
    grads = jax.tree.map(lambda p: 0.1 * jnp.cos(3 * p), params)
    updates, _ = tx.update(grads, tx.init(params), params, **kw)
    return tree_paths.flatten(updates)


CHANGES = {
    "training_prop": {"training_prop": 0.9},
    "batch_prop": {"batch_prop": 1.0},
    "dormancy": {
        "dormancy": jax.tree.map(
            lambda p: jnp.linspace(0.0, 2.0, p.shape[-1]), _agent()
        )
    },
    "layer_prop": {"layer_props": lambda p: jax.tree.map(lambda _: 0.7, p)},
}


@pytest.mark.parametrize("feature", list(CHANGES))
def test_an_ablated_input_has_no_effect(feature):
    full = make_config("open")
    ablated = make_config("open", ablate=(feature,))
    full_meta = _random_meta(full)
    # The ablated network: the full one without the removed feature's row.
    row = full.input_columns.index(
        {"training_prop": 15, "layer_prop": 16, "batch_prop": 17, "dormancy": 18}[
            feature
        ]
    )
    ablated_meta = jax.tree.map(lambda x: x, full_meta)
    gru = ablated_meta["gru_params"]["params"]
    for gate in ("ir", "iz", "in"):
        gru[gate]["kernel"] = jnp.delete(gru[gate]["kernel"], row, axis=0)
    # Changing the input changes full OPEN's update...
    assert not np.allclose(
        _update(full, full_meta), _update(full, full_meta, **CHANGES[feature])
    )
    # ...and not the ablation's, which equals full OPEN whose removed row is 0.
    a = _update(ablated, ablated_meta)
    np.testing.assert_array_equal(a, _update(ablated, ablated_meta, **CHANGES[feature]))
    zeroed = jax.tree.map(lambda x: x, full_meta)
    for gate in ("ir", "iz", "in"):
        kernel = zeroed["gru_params"]["params"][gate]["kernel"]
        zeroed["gru_params"]["params"][gate]["kernel"] = kernel.at[row].set(0.0)
    np.testing.assert_allclose(a, _update(full, zeroed), rtol=1e-5, atol=1e-9)


def test_no_noise_variant_ignores_the_key():
    for name, config in [
        ("no-noise", make_config("open", ablate=("noise",))),
        ("no-features", make_config("no-features")),
    ]:
        meta = _random_meta(config)
        a = _update(config, meta, key=jax.random.key(1))
        b = _update(config, meta, key=jax.random.key(2))
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert np.abs(a).max() > 0
    full = make_config("open")
    meta = _random_meta(full)
    a = _update(full, meta, key=jax.random.key(1))
    b = _update(full, meta, key=jax.random.key(2))
    assert not np.allclose(a, b)


def _step(config, meta, params, **kw):
    grads = jax.tree.map(lambda p: 0.1 * jnp.cos(3 * p), params)
    num = sum(p.size for p in jax.tree.leaves(params))
    state = open_optimizer(meta, config).init(params)
    state = state._replace(carry=0.3 * jnp.ones((config.carry_size, num)))
    return open_step(
        meta,
        config,
        state,
        grads,
        params,
        key=jax.random.key(3),
        training_prop=0.5,
        batch_prop=0.0,
        dormancy=uniform_dormancy(params),
        **kw,
    )


@pytest.mark.parametrize("actor_last", [False, True])
def test_separate_actor_critic_uses_each_set_on_its_leaves(actor_last):
    separate = make_config("open", separate_actor_critic=True)
    shared = make_config("open")
    meta = {"actor": _random_meta(shared, 1), "critic": _random_meta(shared, 2)}
    params = _agent()
    kw = {}
    if actor_last:  # leaves of the actor after the critic's: columns permuted
        params = {"critic": params["critic"], "policy": params["actor"]}
        mask = tree_paths.prefix_mask(["policy"])
        kw = {"noise_mask": mask, "actor_mask": mask}
    actor = tree_paths.per_element(
        tree_paths.resolve(kw.get("actor_mask", tree_paths.actor_mask), params),
        params,
    ).astype(bool)
    assert actor.any() and (~actor).any()
    both = _step(separate, meta, params, **kw)
    with_actor = _step(shared, meta["actor"], params, **kw)
    with_critic = _step(shared, meta["critic"], params, **kw)
    for field in ("deterministic", "noise"):
        got = np.asarray(getattr(both, field))
        np.testing.assert_allclose(
            got[actor], np.asarray(getattr(with_actor, field))[actor], rtol=1e-6
        )
        np.testing.assert_allclose(
            got[~actor], np.asarray(getattr(with_critic, field))[~actor], rtol=1e-6
        )
    np.testing.assert_allclose(
        both.state.carry[:, actor], with_actor.state.carry[:, actor], rtol=1e-6
    )
    np.testing.assert_allclose(
        both.state.carry[:, ~actor], with_critic.state.carry[:, ~actor], rtol=1e-6
    )
    # The two sets really differ on these elements.
    assert not np.allclose(
        np.asarray(with_actor.deterministic)[~actor],
        np.asarray(with_critic.deterministic)[~actor],
    )


# OPTIM4RL BY HAND ------------------------------------------------------------


def test_optim4rl_from_zeros_is_sign_descent():
    config = Optim4RLConfig(learning_rate=1e-3)
    tx = optim4rl_optimizer(optim4rl_zeros(config), config)
    grads = {"w": jnp.array([0.3, -2.0, 0.0])}
    updates, state = tx.update(grads, tx.init(grads), key=jax.random.key(0))
    # o1 = o2 = 0: -lr * sign(g) * exp(0) / sqrt(exp(0) + 1e-8)
    expected = -1e-3 * np.array([1.0, -1.0, 0.0]) / math.sqrt(1 + 1e-8)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)
    assert int(state.count) == 1


def _one_unit_meta(config):
    """Both GRUs: only the candidate's input weight is 1. Heads: o1 = 2 h1 + 0.5,
    o2 = -4 h2."""
    meta = optim4rl_zeros(config)
    p = meta["params"]
    p["rnn1"]["in"]["kernel"] = jnp.ones((1, 1))
    p["rnn2"]["in"]["kernel"] = jnp.ones((1, 1))
    p["mlp1"]["layers_0"] = {"bias": jnp.array([0.5]), "kernel": jnp.array([[2.0]])}
    p["mlp2"]["layers_0"] = {"bias": jnp.zeros(1), "kernel": jnp.array([[-4.0]])}
    return meta


def test_optim4rl_update_by_hand_over_two_steps():
    config = Optim4RLConfig(cell_features=1, learning_rate=0.01)
    tx = optim4rl_optimizer(_one_unit_meta(config), config)
    g1 = np.array([0.5, -0.2])
    g2 = np.array([-0.1, 0.4])
    state = tx.init({"w": jnp.zeros(2)})
    u1, state = tx.update({"w": jnp.asarray(g1)}, state)
    u2, state = tx.update({"w": jnp.asarray(g2)}, state)

    def expected(g, h1_prev, h2_prev):
        # Zero recurrent weights: r = z = sigmoid(0) = 1/2, n = tanh(x),
        # h' = n / 2 + h / 2.
        h1 = 0.5 * np.tanh(g) + 0.5 * h1_prev
        h2 = 0.5 * np.tanh(g * g) + 0.5 * h2_prev
        o1, o2 = 2.0 * h1 + 0.5, -4.0 * h2
        update = -0.01 * np.sign(g) * np.exp(o1) / np.sqrt(np.exp(o2) + 1e-8)
        return update, h1, h2

    e1, h1, h2 = expected(g1, 0.0, 0.0)
    e2, _, _ = expected(g2, h1, h2)
    np.testing.assert_allclose(u1["w"], e1, rtol=1e-5)
    np.testing.assert_allclose(u2["w"], e2, rtol=1e-5)
    # Step 1, first element by hand: h1 = tanh(.5)/2, h2 = tanh(.25)/2.
    by_hand = (
        -0.01
        * math.exp(math.tanh(0.5) + 0.5)
        / math.sqrt(math.exp(-2 * math.tanh(0.25)))
    )
    np.testing.assert_allclose(float(u1["w"][0]), by_hand, rtol=1e-5)


def test_optim4rl_clips_elementwise_and_keeps_the_tree():
    config = Optim4RLConfig(cell_features=1, learning_rate=0.01, grad_clip=0.1)
    tx = optim4rl_optimizer(_one_unit_meta(config), config)
    grads = {"a": jnp.array([[0.5]]), "b": {"c": jnp.array([-0.05])}}
    updates, _ = tx.update(grads, tx.init(grads))
    assert jax.tree.structure(updates) == jax.tree.structure(grads)
    assert updates["a"].shape == (1, 1)
    # 0.5 is clipped to 0.1 before the GRUs; -0.05 is not.
    for g, got in [(0.1, updates["a"][0, 0]), (-0.05, updates["b"]["c"][0])]:
        o1 = math.tanh(g) + 0.5
        o2 = -2.0 * math.tanh(g * g)
        want = -0.01 * math.copysign(1.0, g) * math.exp(o1) / math.sqrt(math.exp(o2))
        np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_optim4rl_layout_is_the_authors_flax_module():
    meta = optim4rl_zeros()
    paths = [
        "/".join(tree_paths.path_names(p))
        for p, _ in jax.tree_util.tree_flatten_with_path(meta)[0]
    ]
    assert paths[:2] == ["params/mlp1/layers_0/bias", "params/mlp1/layers_0/kernel"]
    assert "params/rnn2/iz/kernel" in paths
    assert meta["params"]["rnn1"]["ir"]["kernel"].shape == (1, 8)


# FILES ------------------------------------------------------------------------

VARIANTS = [
    *[make_config("open", ablate=(a,)) for a in ABLATIONS],
    make_config("open", separate_actor_critic=True),
    make_config("no-features"),
    make_config("optim4rl"),
    dataclasses.replace(make_config("optim4rl"), learning_rate=3e-4),
]


@pytest.mark.parametrize("config", VARIANTS, ids=lambda c: c.variant)
def test_save_load_keeps_the_variant(tmp_path, config):
    meta = _random_meta(config)
    path = save_learned(tmp_path / "opt.npy", meta, config, generation=2)
    loaded, found = load_learned(path)
    assert found == config
    np.testing.assert_array_equal(
        jax.flatten_util.ravel_pytree(loaded)[0], jax.flatten_util.ravel_pytree(meta)[0]
    )
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["variant"] == config.variant
    optimizer = from_spec(f"learned:{path}")
    assert optimizer.name == f"{config.variant}:opt"
    assert optimizer.description["variant"] == config.variant
    if isinstance(config, Optim4RLConfig):
        with pytest.raises(OptimizerSpecError, match="use optim4rl:PATH"):
            from_spec(f"open:{path}")
        with pytest.raises(OptimizerFileError, match="not OPEN"):
            load_open(path)
    else:
        assert from_spec(f"open:{path}").name == optimizer.name
        with pytest.raises(OptimizerSpecError, match="use open:PATH"):
            from_spec(f"optim4rl:{path}")


def test_meta_train_outputs_are_named_by_their_run(tmp_path):
    """Every ``lopt meta-train`` run writes ``optimizer.npy``: two runs' files must
    not share a name in one evaluation's tables."""
    config = OPENConfig.small()
    names = []
    for run in ("seed-0", "seed-1"):
        path = save_learned(
            tmp_path / run / "optimizer.npy", _random_meta(config), config
        )
        names.append(from_spec(f"learned:{path}").name)
    assert names == [f"{config.variant}:seed-0", f"{config.variant}:seed-1"]


def test_a_bad_sidecar_is_a_clear_error(tmp_path):
    config = make_config("optim4rl")
    path = save_learned(tmp_path / "opt.npy", optim4rl_zeros(config), config)
    path.with_suffix(".json").write_text(json.dumps({"format": "lopt-velo"}))
    with pytest.raises(OptimizerFileError, match="format"):
        load_learned(path)


# META-TRAINING ---------------------------------------------------------------


def _tiny_meta(optimizer) -> MetaTrainConfig:
    return MetaTrainConfig(
        tasks=(TaskConfig(config=tiny_ppo(total_timesteps=64), baseline_return=1.0),),
        es=ESConfig(population_size=2, num_generations=1, sigma=0.1, lr=0.05),
        optimizer=optimizer,
    )


MIXED = make_config(
    "open", ablate=("dormancy", "batch_prop"), separate_actor_critic=True
)


@pytest.mark.parametrize(
    "config",
    [
        make_config("open", ablate=("dormancy", "noise")),
        make_config("open", separate_actor_critic=True),
        make_config("no-features"),
        make_config("optim4rl"),
    ],
    ids=lambda c: c.variant,
)
def test_variant_builds_inside_vmap_over_a_population(config):
    """What ES needs: the optimizer built from traced meta-parameters."""
    population = jax.vmap(
        lambda k: unravel_meta_params(
            0.1 * jax.random.normal(k, (config.num_meta_params,)), config
        )
    )(jax.random.split(jax.random.key(0), 3))
    optimizer = learned_family(zeros_meta_params(config), config)
    params = _agent()
    grads = jax.tree.map(jnp.sin, params)

    def step(theta):
        tx = optimizer.build(theta, 10)
        updates, _ = tx.update(
            grads,
            tx.init(params),
            params,
            key=jax.random.key(0),
            training_prop=0.5,
            batch_prop=0.0,
            dormancy=uniform_dormancy(params),
        )
        return tree_paths.flatten(updates)

    updates = jax.jit(jax.vmap(step))(population)
    assert updates.shape == (3, sum(p.size for p in jax.tree.leaves(params)))
    assert np.isfinite(updates).all()
    assert not np.allclose(updates[0], updates[1])


@pytest.mark.heavy
@pytest.mark.parametrize(
    "config",
    [make_config("optim4rl"), make_config("no-features"), MIXED],
    ids=lambda c: c.variant,
)
def test_variant_meta_trains_and_reloads(tmp_path, config):
    meta_config = _tiny_meta(config)
    assert from_dict(MetaTrainConfig, to_dict(meta_config)) == meta_config
    trainer = MetaTrainer(meta_config)
    state = trainer.init_state()
    state, result = trainer.generation(state, 0)
    assert np.isfinite(result["raw"][0]).all()
    solution = trainer.solution(state)
    path = save_learned(tmp_path / "opt.npy", solution, config, generation=1)
    optimizer = from_spec(f"learned:{path}")
    np.testing.assert_array_equal(
        jax.flatten_util.ravel_pytree(optimizer.params)[0],
        jax.flatten_util.ravel_pytree(solution)[0],
    )
    params = _agent()
    tx = optimizer.build(optimizer.params, 10)
    grads = jax.tree.map(jnp.sin, params)
    updates, _ = tx.update(
        grads,
        tx.init(params),
        params,
        key=jax.random.key(0),
        training_prop=0.0,
        batch_prop=0.0,
        dormancy=uniform_dormancy(params),
    )
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert np.isfinite(tree_paths.flatten(updates)).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "variant", "spec"),
    [
        pytest.param(
            ["--learned", "optim4rl", "--optim4rl-lr", "0.003"],
            "optim4rl",
            "optim4rl",
            id="optim4rl",
        ),
        pytest.param(
            ["--learned", "no-features"],
            "no-features",
            "open",
            marks=pytest.mark.heavy,
            id="no-features",
        ),
        pytest.param(
            ["--ablate", ",".join(ABLATIONS), "--separate-actor-critic"],
            "open-no-training_prop-no-layer_prop-no-batch_prop-no-dormancy-no-noise"
            "-separate-actor-critic",
            "open",
            marks=pytest.mark.heavy,
            id="all-ablations",
        ),
    ],
)
def test_meta_train_cli_then_train(tmp_path, capsys, args, variant, spec):
    from lopt.cli import main

    out = tmp_path / "meta"
    main(
        [
            "meta-train",
            "--envs",
            "cartpole",
            "--total-timesteps",
            "512",
            "--population",
            "2",
            "--generations",
            "1",
            "--out",
            str(out),
            "--no-progress",
            *args,
        ]
    )
    saved = json.loads((out / "optimizer.json").read_text())
    assert saved["variant"] == variant
    assert f"{variant} (" in capsys.readouterr().out
    assert read_config(out).optimizer.variant == variant  # resumable
    main(
        [
            "train",
            "--env",
            "cartpole",
            "--optimizer",
            f"{spec}:{out / 'optimizer.npy'}",
            "--seeds",
            "1",
            "--total-timesteps",
            "512",
            "--out",
            str(tmp_path / "t"),
            "--no-progress",
        ]
    )
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["optimizer"] == f"{variant}:{out.name}"  # named by its run
    assert np.isfinite(summary["final_returns"]).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learned", "velo"], "unknown learned optimizer 'velo'; choose from open"),
        (["--ablate", "momentum"], "unknown ablation(s) 'momentum'; choose from"),
        (["--learned", "no-features", "--ablate", "noise"], "apply to open"),
        (["--learned", "optim4rl", "--cell", "lstm"], "--cell applies to open"),
        (["--optim4rl-lr", "0.1"], "--optim4rl-lr applies to optim4rl"),
    ],
)
def test_meta_train_cli_rejects_bad_variants(tmp_path, capsys, args, message):
    from lopt.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["meta-train", "--out", str(tmp_path / "m"), "--no-progress", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
