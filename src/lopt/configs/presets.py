"""Named presets: PPO per environment, and meta-training runs.

Each PPO preset holds the PPO config, the hand-crafted optimizers' default
hyperparameters on that task and Adam's reference return (the paper's
``PPO_TEMP``, used to normalise multi-task fitness). Every environment has a
``default`` variant (for MinAtar the paper's settings, OPEN §3.5, with the tuned Adam
of §6; for Brax and the gridworld the paper's, for Craftax the Craftax paper's, for
Atari CleanRL's). A ``small`` variant trains on a CPU: MinAtar in seconds (width
16, 64 x 32 steps per rollout, 2 epochs of 4 minibatches, 5e4 frames), and every
gridworld type, Brax task, Craftax and Atari game at a CPU budget. Craftax also
has ``zero-shot`` and ``small-zero-shot`` (the gridworld's PPO carried over, OPEN
§5.4). RMSprop, Lion and SGD defaults are starting points, not tuned values.

Value-based inner loops (DQN, IQN, PQN) have presets per (algorithm, environment)
in :data:`VALUE_PRESETS`, for CartPole and MinAtar Asterix and Breakout.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from lopt.configs.tuned import TunedSettings, apply_tuned
from lopt.envs.gridworld import GRID_TYPES
from lopt.envs.registry import (
    ATARI_GAMES,
    BRAX_TASKS,
    DEEPSEA_SIZES,
    canonical_name,
)
from lopt.meta.config import ESConfig, MetaTrainConfig, TaskConfig
from lopt.optim.network import OPENConfig
from lopt.rl.algorithms import check_name
from lopt.rl.dqn import DQNConfig
from lopt.rl.iqn import IQNConfig
from lopt.rl.ppo import PPOConfig
from lopt.rl.pqn import PQNConfig


class UnknownPresetError(ValueError):
    """A preset name that does not exist (for this environment)."""


@dataclasses.dataclass(frozen=True)
class Preset:
    ppo: PPOConfig
    optimizers: MappingProxyType
    """default hyperparameters per hand-crafted optimizer name"""
    baseline_return: float | None = None
    """Adam's final return on this task (the paper's PPO_TEMP)"""

    def optimizer_defaults(self, name: str) -> dict[str, Any]:
        return dict(self.optimizers.get(name, {}))

    @property
    def config(self) -> PPOConfig:
        """The inner loop's settings (as :attr:`ValuePreset.config`)."""
        return self.ppo


@dataclasses.dataclass(frozen=True)
class ValuePreset:
    """A value-based algorithm on one environment, with its optimizer defaults."""

    config: DQNConfig | IQNConfig | PQNConfig
    optimizers: MappingProxyType
    """default hyperparameters per hand-crafted optimizer name"""
    baseline_return: float | None = None

    optimizer_defaults = Preset.optimizer_defaults


def _handcrafted(lr: float, b1: float, b2: float, anneal: bool) -> MappingProxyType:
    return MappingProxyType(
        {
            "adam": {"learning_rate": lr, "b1": b1, "b2": b2, "anneal": anneal},
            "rmsprop": {"learning_rate": lr / 3, "decay": 0.99, "anneal": anneal},
            "lion": {"learning_rate": lr / 10, "b1": 0.9, "b2": 0.99, "anneal": anneal},
            "sgd": {"learning_rate": lr * 10, "anneal": anneal},
        }
    )


def _minatar_small(env: str, lr: float, b1: float, b2: float) -> Preset:
    return Preset(
        ppo=PPOConfig(
            env=env,
            total_timesteps=50_000,
            num_envs=64,
            num_steps=32,
            update_epochs=2,
            num_minibatches=4,
            hidden_size=16,
            activation="relu",
        ),
        optimizers=_handcrafted(lr, b1, b2, anneal=True),
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


def _deepsea(env: str) -> Preset:
    # Not in the paper's code (OPEN §5.5 gives no settings): 64 x 32 steps per
    # rollout, 1e5 frames; Adam's learning rate is a starting point, not tuned.
    return Preset(
        ppo=PPOConfig(
            env=env,
            total_timesteps=100_000,
            num_envs=64,
            num_steps=32,
            update_epochs=4,
            num_minibatches=4,
            hidden_size=64,
            activation="relu",
        ),
        optimizers=_handcrafted(1e-3, 0.9, 0.999, anneal=True),
    )


def _gridworld(env: str, small: bool = False) -> Preset:
    # The paper's (§3.5): width 16, tanh, 3e7 frames, 1024 x 20 steps, 2 epochs of 16
    # minibatches; Adam lr 1e-4, b1 = b2 = 0.99, annealed (§6). Small: 64 envs, 4
    # minibatches, 3e5 frames (the paper's first-commit horizon).
    return Preset(
        ppo=PPOConfig(
            env=env,
            total_timesteps=300_000 if small else 30_000_000,
            num_envs=64 if small else 1024,
            num_steps=20,
            update_epochs=2,
            num_minibatches=4 if small else 16,
            hidden_size=16,
            activation="tanh",
        ),
        optimizers=_handcrafted(1e-4, 0.99, 0.99, anneal=True),
        baseline_return=1.0,
    )


def _brax(env: str, small: bool = False) -> Preset:
    # Ant's settings in OPEN's code (§3.5), used for every Brax task: 2048 x 10 steps,
    # 4 epochs of 32 minibatches, width 64, tanh, no entropy bonus, 5e7 frames;
    # Adam lr 3e-4, b1 = b2 = 0.99, annealed (§6). Small (ours, for a CPU): 32 x 64
    # steps, 4 minibatches of 512, 1e6 frames.
    ant = env == "brax/ant"
    return Preset(
        ppo=PPOConfig(
            env=env,
            total_timesteps=1_000_000 if small else 50_000_000,
            num_envs=32 if small else 2048,
            num_steps=64 if small else 10,
            update_epochs=4,
            num_minibatches=4 if small else 32,
            ent_coef=0.0,
            hidden_size=64,
            activation="tanh",
        ),
        optimizers=_handcrafted(3e-4, 0.99, 0.99, anneal=True),
        baseline_return=6517.31 if ant and not small else None,
    )


def _craftax(tuned: bool, small: bool = False) -> Preset:
    # OPEN §5.4 compares Adam with settings carried over ("0-shot", here the
    # gridworld's: the released gridworld optimizer is the one transferred) and
    # settings tuned for Craftax (here the Craftax paper's PPO: 1024 x 64 steps, 4
    # epochs of 8 minibatches, lambda 0.8, grad norm 1.0, 3 tanh layers of 512, Adam
    # 2e-4 annealed). The paper's own values were not retrievable. Both train 1e9
    # frames, the Craftax benchmark's budget. Small: 64 environments, 1e6 frames.
    envs = 64 if small else 1024
    frames = 1_000_000 if small else 1_000_000_000
    if tuned:
        ppo = PPOConfig(
            env="craftax/classic",
            total_timesteps=frames,
            num_envs=envs,
            num_steps=64,
            update_epochs=4,
            num_minibatches=8,
            gae_lambda=0.8,
            max_grad_norm=1.0,
            hidden_size=512,
            num_hidden_layers=3,
            activation="tanh",
        )
        return Preset(ppo, _handcrafted(2e-4, 0.9, 0.999, anneal=True))
    gridworld = _gridworld("gridworld/rand_all")
    ppo = dataclasses.replace(
        gridworld.ppo,
        env="craftax/classic",
        total_timesteps=frames,
        num_envs=envs,
        num_minibatches=4 if small else gridworld.ppo.num_minibatches,
    )
    return Preset(ppo, gridworld.optimizers)


def _atari(env: str, small: bool = False) -> Preset:
    # CleanRL's PPO for Atari (Huang et al. 2022): 8 x 128 steps, 4 epochs of 4
    # minibatches, clip 0.1, Adam 2.5e-4 annealed, 1e7 frames, with OPEN's separate
    # actor and critic (a Nature CNN each). Small: 1e5 frames, for a CPU.
    return Preset(
        ppo=PPOConfig(
            env=env,
            total_timesteps=100_000 if small else 10_000_000,
            num_envs=8,
            num_steps=128,
            update_epochs=4,
            num_minibatches=4,
            clip_eps=0.1,
        ),
        optimizers=_handcrafted(2.5e-4, 0.9, 0.999, anneal=True),
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
    "classic/acrobot": Preset(
        ppo=PPOConfig(
            env="classic/acrobot",
            total_timesteps=100_000,
            num_envs=16,
            num_steps=32,
            update_epochs=4,
            num_minibatches=4,
            hidden_size=32,
            activation="tanh",
        ),
        optimizers=_handcrafted(3e-3, 0.9, 0.999, anneal=True),
    ),
    **{f"bsuite/deepsea-{n}": _deepsea(f"bsuite/deepsea-{n}") for n in DEEPSEA_SIZES},
    **{f"gridworld/{t}": _gridworld(f"gridworld/{t}") for t in GRID_TYPES},
    **{f"brax/{task}": _brax(f"brax/{task}") for task in BRAX_TASKS},
    "craftax/classic": _craftax(tuned=True),
    **{f"atari/{game}": _atari(f"atari/{game}") for game in ATARI_GAMES},
}


SMALL_PRESETS: dict[str, Preset] = {
    "minatar/asterix": _minatar_small("minatar/asterix", 3e-3, 0.9, 0.999),
    "minatar/breakout": _minatar_small("minatar/breakout", 1e-2, 0.9, 0.99),
    # No small Freeway: its 2500-step episodes do not end within 5e4 frames.
    # Adam's learning rate is the best of {1e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2} on
    # 16 seeds at 5e4 frames (IQM of final return 8.9 on seeds 1e6 to 1e6 + 15).
    "minatar/spaceinvaders": _minatar_small("minatar/spaceinvaders", 1e-2, 0.9, 0.99),
    **{f"gridworld/{t}": _gridworld(f"gridworld/{t}", small=True) for t in GRID_TYPES},
    **{f"brax/{task}": _brax(f"brax/{task}", small=True) for task in BRAX_TASKS},
    "craftax/classic": _craftax(tuned=True, small=True),
    **{f"atari/{game}": _atari(f"atari/{game}", small=True) for game in ATARI_GAMES},
}

# Craftax-Classic with the gridworld's PPO settings carried over unchanged (OPEN
# §5.4's "0-shot" Adam).
ZERO_SHOT_PRESETS: dict[str, Preset] = {"craftax/classic": _craftax(tuned=False)}
SMALL_ZERO_SHOT_PRESETS: dict[str, Preset] = {
    "craftax/classic": _craftax(tuned=False, small=True)
}

VARIANTS = {
    "default": PRESETS,
    "small": SMALL_PRESETS,
    "zero-shot": ZERO_SHOT_PRESETS,
    "small-zero-shot": SMALL_ZERO_SHOT_PRESETS,
}


# VALUE-BASED ---------------------------------------------------------------------
# Adam as each implementation uses it (its eps is optax's 1e-8 here); PQN anneals
# the learning rate linearly to 0 as purejaxql does. The others start from it.
_PQN_OPTIMIZERS = {
    "classic/cartpole": _handcrafted(1e-4, 0.9, 0.999, anneal=True),
    "minatar": _handcrafted(5e-4, 0.9, 0.999, anneal=True),
}


def _dqn_minatar(env: str) -> dict[str, Any]:
    # Revisiting Rainbow's MinAtar DQN (Obando-Ceron & Castro 2021, dopamine gin
    # files): 1e7 frames, buffer 1e5, batch 32, a gradient step per 4 frames
    # (4 environments here), 1000 frames before learning, target copied every
    # 1000 frames, epsilon 1 -> 0.01 over 2.5e5 frames; an MLP of 2 x 128 in place
    # of their CNN (conv 16 + dense 128).
    return dict(
        env=env,
        total_timesteps=10_000_000,
        num_envs=4,
        train_frequency=1,
        gradient_steps=1,
        buffer_size=100_000,
        batch_size=32,
        learning_starts=1_000,
        target_update_interval=1_000,
        tau=1.0,
        gamma=0.99,
        start_e=1.0,
        end_e=0.01,
        exploration_fraction=0.025,
        hidden_size=128,
        num_hidden=2,
    )


def _pqn_minatar(env: str) -> PQNConfig:
    # purejaxql's pqn_minatar.yaml, with an MLP of 2 x 128 (LayerNorm) in place of
    # its CNN (conv 16 + dense 128).
    return PQNConfig(
        env=env,
        total_timesteps=10_000_000,
        num_envs=128,
        num_steps=32,
        update_epochs=2,
        num_minibatches=32,
        gamma=0.99,
        q_lambda=0.65,
        start_e=1.0,
        end_e=0.05,
        exploration_fraction=0.1,
        reward_scale=1.0,
        hidden_size=128,
        num_hidden=2,
        max_grad_norm=10.0,
    )


# CartPole, IQN: DQN's CartPole loop with Dopamine's batch of 32 and Dabney et al.'s
# quantile samples (N = N' = 64, K = 32, 64 cosine features); 1e5 frames, epsilon
# decaying over the first 2e4, and Adam at 1e-3, so it runs in minutes on a CPU.
_IQN_CARTPOLE = IQNConfig(
    env="classic/cartpole",
    total_timesteps=100_000,
    num_envs=10,
    train_frequency=1,
    buffer_size=10_000,
    batch_size=32,
    learning_starts=1_000,
    target_update_interval=500,
    exploration_fraction=0.2,
    end_e=0.05,
    hidden_size=64,
    num_hidden=1,
)

VALUE_PRESETS: dict[tuple[str, str], ValuePreset] = {
    # CleanRL's dqn.py (and PureJaxRL's dqn.py, 10 environments) on CartPole;
    # equal hidden widths of 128 in place of 120 and 84.
    ("dqn", "classic/cartpole"): ValuePreset(
        DQNConfig(env="classic/cartpole", hidden_size=128),
        _handcrafted(2.5e-4, 0.9, 0.999, anneal=False),
    ),
    ("iqn", "classic/cartpole"): ValuePreset(
        _IQN_CARTPOLE, _handcrafted(1e-3, 0.9, 0.999, anneal=False)
    ),
    # purejaxql's pqn_cartpole.yaml.
    ("pqn", "classic/cartpole"): ValuePreset(
        PQNConfig(env="classic/cartpole"), _PQN_OPTIMIZERS["classic/cartpole"]
    ),
    **{
        ("dqn", env): ValuePreset(
            DQNConfig(**_dqn_minatar(env)),
            _handcrafted(2.5e-4, 0.9, 0.999, anneal=False),
        )
        for env in ("minatar/asterix", "minatar/breakout")
    },
    # IQN on MinAtar: DQN's MinAtar loop with Dabney et al.'s quantile settings.
    **{
        ("iqn", env): ValuePreset(
            IQNConfig(**_dqn_minatar(env)),
            _handcrafted(2.5e-4, 0.9, 0.999, anneal=False),
        )
        for env in ("minatar/asterix", "minatar/breakout")
    },
    **{
        ("pqn", env): ValuePreset(_pqn_minatar(env), _PQN_OPTIMIZERS["minatar"])
        for env in ("minatar/asterix", "minatar/breakout")
    },
}


def preset_for(
    env: str, variant: str = "default", algo: str = "ppo"
) -> Preset | ValuePreset:
    """The preset of an algorithm (PPO by default) on an environment or alias.

    Raises:
      UnknownPresetError: no preset of this variant for the environment.
    """
    name = canonical_name(env)
    if check_name(algo) != "ppo":
        have = sorted(e for a, e in VALUE_PRESETS if a == algo)
        if variant != "default":
            raise UnknownPresetError(
                f"{algo} has only default presets, not {variant!r}"
            )
        if (algo, name) not in VALUE_PRESETS:
            raise UnknownPresetError(
                f"no {algo} preset for {name}; {algo} has presets for {', '.join(have)}"
            )
        return VALUE_PRESETS[(algo, name)]
    if variant not in VARIANTS:
        raise UnknownPresetError(
            f"unknown preset {variant!r}; choose from {', '.join(VARIANTS)}"
        )
    presets = VARIANTS[variant]
    if name not in presets:
        have = [v for v, p in VARIANTS.items() if name in p]
        raise UnknownPresetError(
            f"no {variant} PPO preset for {name}; it has: {', '.join(have) or 'none'}"
        )
    return presets[name]


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


def task_for(
    env: str,
    variant: str = "default",
    algo: str = "ppo",
    *,
    tuned: TunedSettings | None = None,
) -> TaskConfig:
    """A meta-training task from an environment's preset (PPO's by default) and
    Adam return, or the mean return of ``tuned`` settings (``lopt tune``'s
    ``tuned.json``)."""
    preset = preset_for(env, variant, algo)
    if tuned is not None:
        preset = apply_tuned(preset, tuned)
    return TaskConfig.of(
        preset.config,
        baseline_return=preset.baseline_return or 1.0,
        antithetic_tasks=canonical_name(env).startswith("gridworld/"),
    )


MINATAR = (
    "minatar/asterix",
    "minatar/breakout",
    "minatar/freeway",
    "minatar/spaceinvaders",
)

# Finishes in about 12 minutes on 2 CPU cores. From all-zero meta-parameters, as in
# the paper; the inner task is SpaceInvaders-MinAtar's small preset (5e4 frames).
CPU_META = MetaTrainConfig(
    tasks=(TaskConfig(ppo=SMALL_PRESETS["minatar/spaceinvaders"].ppo),),
    es=ESConfig(
        strategy="open-es",
        population_size=16,
        num_generations=60,
        num_rollouts=1,
        sigma=0.1,
        sigma_decay=0.98,
        lr=0.15,
        lr_decay=0.98,
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
    # rand_all with antithetic task sampling (§4.3); the paper's ES settings.
    "gridworld": _paper_meta(("gridworld/rand_all",), OPENConfig.small()),
}
