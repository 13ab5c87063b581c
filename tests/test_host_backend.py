"""The executor's host backend against its JAX backend, on an environment stepped
through NumPy as ALE's is (no Atari needed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lopt.envs.registry import make_vec_env
from lopt.optim.handcrafted import adam
from lopt.rl.executor import Executor, seed_keys
from lopt.rl.host_backend import run_host

from tiny import TINY_DQN, TINY_PPO


class HostCartPole:
    """A batch of CartPoles behind a host environment's interface: NumPy in and
    out, its state kept by the caller, ``params`` ignored."""

    continuous = False

    def __init__(self, num_envs: int):
        self._env, self._params = make_vec_env("cartpole", num_envs)
        self._reset = jax.jit(self._env.reset)
        self._step = jax.jit(self._env.step)
        self.closed = False

    def reset(self, key, params):
        obs, state = self._reset(key, self._params)
        return np.asarray(obs), state

    def step(self, key, state, action, params):
        assert isinstance(action, np.ndarray)  # the backend hands NumPy over
        out = self._step(key, state, jnp.asarray(action), self._params)
        return jax.tree.map(np.asarray, out)

    def observation_shape(self, params):
        return self._env.observation_shape(self._params)

    def num_actions(self, params):
        return self._env.num_actions(self._params)

    def close(self):
        self.closed = True


@pytest.mark.parametrize(
    "config",
    [TINY_PPO, pytest.param(TINY_DQN, marks=pytest.mark.heavy)],
    ids=["ppo", "dqn"],
)
def test_host_backend_matches_the_jax_backend(config):
    optimizer = adam(1e-3)
    keys = seed_keys([0, 1])
    envs = [HostCartPole(config.num_envs) for _ in range(2)]
    updates = []
    host, params = run_host(
        config, optimizer, keys, optimizer.params, updates.append, envs=envs
    )
    jax_metrics, state = Executor(config, optimizer)(keys)
    assert updates == list(range(1, config.num_updates + 1))
    assert all(env.closed for env in envs)
    assert set(host) == set(jax_metrics)
    for name in jax_metrics:
        assert host[name].shape == jax_metrics[name].shape, name
        # The same keys and steps; only XLA's fusion of the pieces may differ.
        np.testing.assert_allclose(
            host[name], jax_metrics[name], rtol=1e-4, atol=1e-6, err_msg=name
        )
    for seed in range(2):
        np.testing.assert_allclose(
            ravel_pytree(params[seed])[0],
            ravel_pytree(jax.tree.map(lambda x: x[seed], state.params))[0],
            rtol=1e-4,
            atol=1e-6,
        )
