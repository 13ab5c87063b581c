"""Tiny settings shared by the tests: runs that compile and finish in seconds."""

import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from lopt.rl.dqn import DQNConfig
from lopt.rl.iqn import IQNConfig
from lopt.rl.ppo import PPOConfig
from lopt.rl.pqn import PQNConfig


def host_devices_flags(count: int) -> str:
    """XLA_FLAGS for a subprocess with ``count`` host devices, after the tests'
    own flags (conftest.py; a later flag wins)."""
    own = os.environ.get("XLA_FLAGS", "")
    return f"{own} --xla_force_host_platform_device_count={count}"


SHARED = Path(__file__).resolve().parents[2] / "shared"
PRETRAINED = SHARED / "pretrained"
BREAKOUT = PRETRAINED / "breakout_OPEN.npy"

#: CartPole PPO with 4 envs x 8 steps, 2 epochs of 2 minibatches, width 8: 3 updates.
TINY_PPO = PPOConfig(
    env="cartpole",
    total_timesteps=4 * 8 * 3,
    num_envs=4,
    num_steps=8,
    update_epochs=2,
    num_minibatches=2,
    hidden_size=8,
    activation="tanh",
)


def tiny_ppo(**changes) -> PPOConfig:
    return dataclasses.replace(TINY_PPO, **changes)


# 4 envs x 2 steps per update, 8 updates; learning from frame 24 (update 2 on),
# 2 gradient steps per update: 6 learning updates, 12 gradient steps.
TINY_DQN = DQNConfig(
    total_timesteps=64,
    num_envs=4,
    train_frequency=2,
    gradient_steps=2,
    buffer_size=32,
    batch_size=8,
    learning_starts=24,
    target_update_interval=16,
    hidden_size=8,
)
TINY_IQN = IQNConfig(
    **{f.name: getattr(TINY_DQN, f.name) for f in dataclasses.fields(DQNConfig)},
    num_tau_samples=4,
    num_tau_prime_samples=3,
    num_quantile_samples=2,
    quantile_embedding_dim=8,
)
# 4 envs x 8 steps, 2 epochs of 2 minibatches: 3 updates, 12 gradient steps.
TINY_PQN = PQNConfig(
    total_timesteps=96,
    num_envs=4,
    num_steps=8,
    update_epochs=2,
    num_minibatches=2,
    hidden_size=8,
)


def run_seeds(config, optimizer, seeds, opt_params=None):
    """``(metrics, final_state)`` of ``config`` over ``seeds``, in chunks, as
    ``lopt train`` runs it."""
    from lopt.rl.executor import Executor, chunk_size, seed_keys

    executor = Executor(config, optimizer, chunk=chunk_size(config.num_updates))
    return executor(seed_keys(seeds), opt_params)


def spy_optimizer(num_records: int):
    """SGD that records the extra arguments of its first ``num_records`` steps:
    its state is ``(sgd state, steps taken, training_props, batch_props, the
    num_steps it was built for)``."""
    import jax
    import jax.numpy as jnp
    import optax

    from lopt.optim.optimizer import Optimizer

    def build(params, num_steps):
        sgd = optax.sgd(1e-3)

        def init(p):
            zeros = jnp.zeros(num_records)
            return (sgd.init(p), jnp.zeros((), jnp.int32), zeros, zeros, zeros)

        def update(
            grads, state, params=None, *, training_prop, batch_prop, key, dormancy, loss
        ):
            # every extra argument the loops promise (VeLO reads the loss), and
            # a dormancy for every leaf (per neuron under a recorded layer, else 1)
            assert key is not None and loss.shape == ()
            assert jax.tree.structure(dormancy) == jax.tree.structure(params)
            inner, i, tps, bps, steps = state
            updates, inner = sgd.update(grads, inner, params)
            return updates, (
                inner,
                i + 1,
                tps.at[i].set(training_prop),
                bps.at[i].set(batch_prop),
                steps.at[i].set(num_steps),
            )

        return optax.GradientTransformationExtraArgs(init, update)

    return Optimizer("spy", build, {})


def over_seeds_and_learning_rates(config):
    """The metrics of ``config``'s run with Adam, vmapped over 2 seeds (inner)
    and the learning rates 1e-5 and 1e-2 (outer): leaves ``(2, 2, T, ...)``."""
    import jax
    import jax.numpy as jnp

    from lopt.optim.handcrafted import adam
    from lopt.rl.registry import make_algorithm

    opt = adam(1e-3)
    train = make_algorithm(config, opt).train
    keys = jax.random.split(jax.random.key(0), 2)
    lrs = {**opt.params, "learning_rate": jnp.array([1e-5, 1e-2])}
    lr_axes = {"learning_rate": 0, "b1": None, "b2": None}
    _, metrics = jax.jit(
        jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, lr_axes))
    )(keys, lrs)
    assert metrics["return"].shape == (2, 2, config.num_updates)
    return metrics


def tiny_agent(key):
    """A continuous actor (with log_std) and a critic, small enough for loops."""
    shapes = {
        "actor": {
            "params": {
                "Dense_0": {"bias": (4,), "kernel": (3, 4)},
                "Dense_1": {"bias": (2,), "kernel": (4, 2)},
                "log_std": (2,),
            }
        },
        "critic": {
            "params": {
                "Dense_0": {"bias": (4,), "kernel": (3, 4)},
                "Dense_1": {"bias": (1,), "kernel": (4, 1)},
            }
        },
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)]
    )


def tiny_activations(key):
    k = jax.random.split(key, 4)
    return {
        "actor": {
            "params": {
                "Dense_0": jnp.abs(jax.random.normal(k[0], (4,))),
                "Dense_1": jnp.abs(jax.random.normal(k[1], (2,))),
            }
        },
        "critic": {
            "params": {
                "Dense_0": jnp.abs(jax.random.normal(k[2], (4,))),
                "Dense_1": jnp.abs(jax.random.normal(k[3], (1,))),
            }
        },
    }
