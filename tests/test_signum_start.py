"""The signum start: OPEN meta-parameters that step -lr * sign(momentum), checked
against the step computed by hand from the gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.meta.config import MetaTrainConfig
from lopt.meta.loop import _initial_mean
from lopt.optim import fused
from lopt.optim.dormancy import dormancy_tree
from lopt.optim.network import OPENConfig, zeros_meta_params
from lopt.optim.open_opt import open_optimizer
from lopt.optim.optim4rl import Optim4RLConfig
from lopt.optim.signum_start import parse_signum, signum_start

from tiny import tiny_activations, tiny_agent

IMPLEMENTATIONS = ["reference"] + (["fused"] if fused.kernel_error() is None else [])


def _hand_momentum(grads: list[np.ndarray], beta: float) -> np.ndarray:
    m = np.zeros_like(grads[0])
    for g in grads:
        m = beta * m + (1 - beta) * g
    return m


# The fused step on the default's configuration; the reference on every one.
@pytest.mark.parametrize(
    ("implementation", "config", "lr", "beta"),
    [
        *[
            (name, dataclasses.replace(OPENConfig.small(), noise=False), 3e-3, 0.9)
            for name in IMPLEMENTATIONS
        ],
        ("reference", OPENConfig.small(), 1e-3, 0.5),  # the noise output stays 0
        ("reference", OPENConfig.large(separate_actor_critic=True), 2e-2, 0.5),
        ("reference", OPENConfig.small(features=("momentum", "gradient")), 5e-4, 0.9),
    ],
)
def test_the_update_is_lr_times_the_momentums_sign(implementation, config, lr, beta):
    meta = signum_start(config, lr, beta)
    tx = open_optimizer(meta, config, implementation=implementation)
    params = tiny_agent(jax.random.key(0))
    leaves, treedef = jax.tree.flatten(params)
    state = tx.init(params)
    dormancy = dormancy_tree(params, tiny_activations(jax.random.key(1)))
    history = []
    # Step 2's gradient opposes step 1's on some elements, so the signs of the
    # momenta of neighbouring decays differ there (0.9 from 0.5 and 0.99, 0.5 from
    # 0.1 and 0.9, on 2 or 3 of the 49 elements); one gradient is exactly zero.
    for step, scale in enumerate([1.0, -2.5]):
        grads = jax.tree.map(
            lambda p, s=step, c=scale: (
                c
                * jax.random.normal(jax.random.key(10 + s), p.shape)
                * (jnp.arange(p.size).reshape(p.shape) != 1)
            ),
            params,
        )
        history.append(np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads)]))
        updates, state = tx.update(
            grads,
            state,
            params,
            key=jax.random.key(step),
            training_prop=0.5 * step,
            batch_prop=0.25,
            dormancy=dormancy,
        )
        flat = np.concatenate([np.ravel(u) for u in jax.tree.leaves(updates)])
        # By hand: OPEN's deterministic output is lr * sign(m_beta), then the
        # zero-mean shift over all elements and the sign flip to a descent step.
        u = lr * np.sign(_hand_momentum(history, beta))
        np.testing.assert_allclose(flat, -(u - u.mean()), rtol=1e-5, atol=1e-9)
    assert jax.tree.structure(updates) == treedef
    assert len(leaves) == len(jax.tree.leaves(updates))


@pytest.mark.parametrize(
    "config",
    [
        OPENConfig.small(),
        OPENConfig.large(),
        OPENConfig.small(separate_actor_critic=True),
        OPENConfig.small(features=("momentum",)),
    ],
)
def test_the_start_has_the_zero_start_s_layout(config):
    shapes = jax.tree.map(jnp.shape, signum_start(config, 1e-3))
    assert shapes == jax.tree.map(jnp.shape, zeros_meta_params(config))


@pytest.mark.parametrize(
    ("config", "lr", "beta", "message"),
    [
        (OPENConfig.small(cell="lstm"), 1e-3, 0.9, "GRU cell, not lstm"),
        (OPENConfig.small(features=("param", "gradient")), 1e-3, 0.9, "momentum"),
        (Optim4RLConfig(), 1e-3, 0.9, "built for OPEN, not Optim4RLConfig"),
        (OPENConfig.small(), 0.0, 0.9, "must be > 0"),
        (OPENConfig.small(), 1e-3, 0.95, "one of OPEN's momenta"),
    ],
)
def test_what_it_cannot_build_is_refused(config, lr, beta, message):
    with pytest.raises(ValueError, match=message):
        signum_start(config, lr, beta)


def test_init_from_strings():
    assert parse_signum("signum:3e-3") == 3e-3
    assert parse_signum("runs/x/optimizer.npy") is None
    for bad in ("signum:", "signum:abc", "signum:-1", "signum:nan", "signum:inf"):
        with pytest.raises(ValueError, match=r"number > 0, e\.g\. signum:3e-3"):
            parse_signum(bad)


def test_meta_training_refuses_a_signum_start_it_cannot_build():
    from lopt.configs.presets import CPU_META

    assert CPU_META.init_from == "signum:3e-3"
    with pytest.raises(ValueError, match="--init-from zeros"):
        dataclasses.replace(CPU_META, optimizer=Optim4RLConfig())
    with pytest.raises(ValueError, match="learning rate must be a number"):
        dataclasses.replace(CPU_META, init_from="signum:0")
    assert MetaTrainConfig(tasks=CPU_META.tasks).init_from is None
    # ES's mean starts at exactly these meta-parameters.
    mean = _initial_mean(CPU_META)
    expected = signum_start(CPU_META.optimizer, 3e-3)
    assert jax.tree.all(jax.tree.map(np.array_equal, mean, expected))


def test_meta_train_options_choose_the_start(capsys):
    from lopt.cli import MetaTrain, _meta_config

    def start(**options):
        return _meta_config(MetaTrain(**options)).init_from

    assert start() == "signum:3e-3"
    assert start(init_from="zeros") is None
    assert start(init_from="signum:1e-3") == "signum:1e-3"
    assert start(envs=("breakout",)) is None  # another task: the paper's start
    assert start(ablate="dormancy,noise") == "signum:3e-3"
    capsys.readouterr()
    assert start(learned="optim4rl") is None
    assert "ES starts from zeros: a signum start is built for OPEN" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="GRU cell"):
        start(cell="lstm", init_from="signum:3e-3")
