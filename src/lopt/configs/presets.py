"""Named PPO presets: the paper's settings (OPEN §3.5) and small CPU ones.

Each preset holds the PPO config, the hand-crafted optimizers' default
hyperparameters on that task and Adam's reference return (the paper's
``PPO_TEMP``, used to normalise multi-task fitness). Adam's values are the tuned
ones of OPEN §6; RMSprop, Lion and SGD defaults are reasonable starting points,
not tuned values.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from lopt.envs.registry import canonical_name
from lopt.meta.config import ESConfig, MetaTrainConfig, TaskConfig
from lopt.optim.network import OPENConfig
from lopt.rl.ppo import PPOConfig


@dataclasses.dataclass(frozen=True)
class Preset:
    ppo: PPOConfig
    optimizers: MappingProxyType
    """default hyperparameters per hand-crafted optimizer name"""
    baseline_return: float | None = None
    """Adam's final return on this task (the paper's PPO_TEMP)"""

    def optimizer_defaults(self, name: str) -> dict[str, Any]:
        return dict(self.optimizers.get(name, {}))


def _handcrafted(lr: float, b1: float, b2: float, anneal: bool) -> MappingProxyType:
    return MappingProxyType(
        {
            "adam": {"learning_rate": lr, "b1": b1, "b2": b2, "anneal": anneal},
            "rmsprop": {"learning_rate": lr / 3, "decay": 0.99, "anneal": anneal},
            "lion": {"learning_rate": lr / 10, "b1": 0.9, "b2": 0.99, "anneal": anneal},
            "sgd": {"learning_rate": lr * 10, "anneal": anneal},
        }
    )


def _minatar(env: str, lr: float, b1: float, b2: float, baseline: float) -> Preset:
    return Preset(
        ppo=PPOConfig(
            env=env,
            total_timesteps=10_000_000,
            num_envs=64,
            num_steps=128,
            update_epochs=4,
            num_minibatches=8,
            gamma=0.99,
            gae_lambda=0.95,
            clip_eps=0.2,
            ent_coef=0.01,
            vf_coef=0.5,
            max_grad_norm=0.5,
            hidden_size=64,
            activation="relu",
        ),
        optimizers=_handcrafted(lr, b1, b2, anneal=True),
        baseline_return=baseline,
    )


PRESETS: dict[str, Preset] = {
    "minatar/asterix": _minatar("minatar/asterix", 3e-3, 0.9, 0.999, 15.0353),
    "minatar/breakout": _minatar("minatar/breakout", 1e-2, 0.9, 0.99, 50.0822),
    "minatar/freeway": _minatar("minatar/freeway", 1e-3, 0.9, 0.99, 61.8369),
    "minatar/spaceinvaders": _minatar(
        "minatar/spaceinvaders", 7e-3, 0.9, 0.99, 167.0913
    ),
    # Small enough for a laptop: reaches the 500 cap in about 2e5 frames with Adam.
    "classic/cartpole": Preset(
        ppo=PPOConfig(
            env="classic/cartpole",
            total_timesteps=200_000,
            num_envs=4,
            num_steps=128,
            update_epochs=4,
            num_minibatches=4,
            ent_coef=0.01,
            hidden_size=64,
            activation="tanh",
        ),
        optimizers=_handcrafted(2.5e-3, 0.9, 0.999, anneal=True),
    ),
}


def preset_for(env: str) -> Preset:
    """The preset of an environment name or alias."""
    name = canonical_name(env)
    if name not in PRESETS:
        raise KeyError(f"no PPO preset for {name}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


# META-TRAINING -----------------------------------------------------------------


def _paper_meta(envs: tuple[str, ...], optimizer: OPENConfig) -> MetaTrainConfig:
    """OPEN's ES settings (§4.1): population 64, sigma 0.03, lr 0.03, decays 0.999,
    500 generations, held-out evaluation and checkpoints every 24. Meant for GPUs."""
    return MetaTrainConfig(
        tasks=tuple(task_for(env) for env in envs),
        es=ESConfig(
            strategy="open-es",
            population_size=64,
            num_generations=500,
            num_rollouts=1,
            sigma=0.03,
            sigma_decay=0.999,
            lr=0.03,
            lr_decay=0.999,
        ),
        optimizer=optimizer,
        save_every=24,
        eval_every=24,
        num_eval_seeds=8,
    )


def task_for(env: str) -> TaskConfig:
    """A meta-training task from an environment's PPO preset and Adam return."""
    preset = preset_for(env)
    return TaskConfig(ppo=preset.ppo, baseline_return=preset.baseline_return or 1.0)


MINATAR = (
    "minatar/asterix",
    "minatar/breakout",
    "minatar/freeway",
    "minatar/spaceinvaders",
)

CPU_META = MetaTrainConfig(
    tasks=(
        TaskConfig(
            ppo=dataclasses.replace(
                PRESETS["classic/cartpole"].ppo, total_timesteps=20_000
            ),
        ),
    ),
    es=ESConfig(
        strategy="open-es",
        population_size=16,
        num_generations=60,
        num_rollouts=2,
        sigma=0.05,
        sigma_decay=0.99,
        lr=0.05,
        lr_decay=0.99,
    ),
    optimizer=OPENConfig.small(),
    save_every=10,
    eval_every=10,
    num_eval_seeds=16,
)

META_PRESETS: dict[str, MetaTrainConfig] = {
    "cpu": CPU_META,
    **{env.split("/")[1]: _paper_meta((env,), OPENConfig.small()) for env in MINATAR},
    "multi-minatar": _paper_meta(MINATAR, OPENConfig.large()),
}
