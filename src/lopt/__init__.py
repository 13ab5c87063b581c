"""lopt: learned optimization for reinforcement learning in JAX.

The names a training loop of your own needs::

    import lopt

    meta_params, config = lopt.load_open("breakout_OPEN.npy")
    tx = lopt.open_optimizer(meta_params, config)  # an optax transformation
    ...  # tx.update(grads, state, params, key=..., training_prop=...,
    #        batch_prop=..., dormancy=lopt.dormancy_tree(params, activations))

and to run lopt's own inner loops with any optimizer::

    preset = lopt.preset_for("breakout", "small")
    algorithm = lopt.make_algorithm(preset.config, lopt.adam(learning_rate=1e-2))
    opt_params = algorithm.optimizer.params
    state, metrics = jax.jit(algorithm.train)(jax.random.key(0), opt_params)

They are imported on first use, so ``import lopt`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: exported name -> the module that defines it
_EXPORTS = {
    "open_optimizer": "lopt.optim.open_opt",
    "load_open": "lopt.optim.files",
    "load_learned": "lopt.optim.files",
    "dormancy_tree": "lopt.optim.dormancy",
    "uniform_dormancy": "lopt.optim.dormancy",
    "learned_family": "lopt.optim.learned",
    "adam": "lopt.optim.handcrafted",
    "Optimizer": "lopt.optim.optimizer",
    "make_algorithm": "lopt.rl.registry",
    "Executor": "lopt.rl.executor",
    "seed_keys": "lopt.rl.executor",
    "preset_for": "lopt.configs.presets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
