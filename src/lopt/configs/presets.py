"""Named presets: an algorithm's settings on an environment, and meta-training runs.

One model for every algorithm: :data:`PRESETS` maps ``(algorithm, environment,
variant)`` to a :class:`Preset`, which holds the algorithm's config, the
hand-crafted optimizers' default hyperparameters on that task and, where known,
Adam's reference return (the paper's ``PPO_TEMP``, which normalises multi-task
fitness). Each suite has a base config, and every preset is that base with
:func:`dataclasses.replace` (no default restated).

Variants: ``default`` (PPO on MinAtar: the paper's settings, OPEN §3.5, with the
tuned Adam of §6; Brax and the gridworld: the paper's; Craftax: the Craftax
paper's; Atari: CleanRL's; value-based loops, Rainbow, SAC and TD3: their
reference implementations'),
``small`` (a CPU budget: MinAtar in seconds, every other suite in minutes), and
for Craftax ``zero-shot`` and ``small-zero-shot`` (the gridworld's PPO carried
over, OPEN §5.4). RMSprop, Lion and SGD defaults are starting points, not tuned.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from lopt.configs.tuned import BUILTIN_DIR, TunedSettings, check_tuned, read_tuned
from lopt.envs.gridworld import GRID_TYPES
from lopt.envs.registry import (
    ATARI_GAMES,
    BRAX_TASKS,
    DEEPSEA_SIZES,
    DMC_TASKS,
    MUJOCO_TASKS,
    canonical_name,
)
from lopt.meta.config import ESConfig, MetaTrainConfig, TaskConfig
from lopt.optim.network import OPENConfig
from lopt.rl.algorithm import AlgorithmConfig
from lopt.rl.dqn import DQNConfig
from lopt.rl.iqn import IQNConfig
from lopt.rl.ppo import PPOConfig
from lopt.rl.pqn import PQNConfig
from lopt.rl.rainbow import RainbowConfig
from lopt.rl.registry import action_mismatch, algorithm_name, check_name
from lopt.rl.sac import SACConfig
from lopt.rl.td3 import TD3Config

replace = dataclasses.replace


class UnknownPresetError(ValueError):
    """A preset name that does not exist (for this algorithm and environment)."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """An algorithm on one environment, with its optimizers' defaults."""

    config: AlgorithmConfig
    optimizers: MappingProxyType
    """default hyperparameters per hand-crafted optimizer name"""
    baseline_return: float | None = None
    """Adam's final return on this task (the paper's PPO_TEMP)"""

    @property
    def algo(self) -> str:
        return algorithm_name(self.config)

    def optimizer_defaults(self, name: str) -> dict[str, Any]:
        return dict(self.optimizers.get(name, {}))


def handcrafted(lr: float, b1: float, b2: float, anneal: bool) -> MappingProxyType:
    """Defaults of every hand-crafted optimizer from Adam's: RMSprop's learning
    rate a third of it, Lion's a tenth, SGD's ten times."""
    return MappingProxyType(
        {
            "adam": {"learning_rate": lr, "b1": b1, "b2": b2, "anneal": anneal},
            "rmsprop": {"learning_rate": lr / 3, "decay": 0.99, "anneal": anneal},
            "lion": {"learning_rate": lr / 10, "b1": 0.9, "b2": 0.99, "anneal": anneal},
            "sgd": {"learning_rate": lr * 10, "anneal": anneal},
        }
    )


PRESETS: dict[tuple[str, str, str], Preset] = {}


def _add(variant: str, preset: Preset) -> None:
    PRESETS[(preset.algo, preset.config.env, variant)] = preset


# PPO ------------------------------------------------------------------------------
# MinAtar, the paper's settings (OPEN §3.5) and the tuned Adam of §6, with Adam's
# reference returns (PPO_TEMP). Small: width 16, 64 x 32 steps per rollout, 2
# epochs of 4 minibatches, 5e4 frames.
MINATAR_PPO = PPOConfig(total_timesteps=10_000_000, num_envs=64, num_minibatches=8)
MINATAR_PPO_SMALL = replace(
    MINATAR_PPO,
    total_timesteps=50_000,
    num_steps=32,
    update_epochs=2,
    num_minibatches=4,
    hidden_size=16,
)
MINATAR_ADAM = {  # game: (lr, b1, b2, PPO_TEMP)
    "asterix": (3e-3, 0.9, 0.999, 15.0353),
    "breakout": (1e-2, 0.9, 0.99, 50.0822),
    "freeway": (1e-3, 0.9, 0.99, 61.8369),
    "spaceinvaders": (7e-3, 0.9, 0.99, 167.0913),
}
# SpaceInvaders small: Adam's learning rate is the best of {1e-3, 3e-3, 5e-3,
# 1e-2, 2e-2, 3e-2} on 16 seeds at 5e4 frames (IQM of final return 8.9 on seeds
# 1e6 to 1e6 + 15). No small Freeway: its 2500-step episodes do not end in 5e4.
MINATAR_SMALL_LR = {"asterix": 3e-3, "breakout": 1e-2, "spaceinvaders": 1e-2}
for _game, (_lr, _b1, _b2, _baseline) in MINATAR_ADAM.items():
    _env = f"minatar/{_game}"
    _adam = handcrafted(_lr, _b1, _b2, anneal=True)
    _add("default", Preset(replace(MINATAR_PPO, env=_env), _adam, _baseline))
    if _game in MINATAR_SMALL_LR:
        _adam = handcrafted(MINATAR_SMALL_LR[_game], _b1, _b2, anneal=True)
        _add("small", Preset(replace(MINATAR_PPO_SMALL, env=_env), _adam))

# Classic control: CartPole reaches the 500 cap in about 2e5 frames with Adam.
_add(
    "default",
    Preset(
        PPOConfig(env="classic/cartpole", total_timesteps=200_000, activation="tanh"),
        handcrafted(2.5e-3, 0.9, 0.999, anneal=True),
    ),
)
_add(
    "default",
    Preset(
        PPOConfig(
            env="classic/acrobot",
            total_timesteps=100_000,
            num_envs=16,
            num_steps=32,
            hidden_size=32,
            activation="tanh",
        ),
        handcrafted(3e-3, 0.9, 0.999, anneal=True),
    ),
)

# Deep Sea: not in the paper's code (OPEN §5.5 gives no settings); Adam's learning
# rate is a starting point, not tuned. Adam solves size 8, not 16.
DEEPSEA_PPO = PPOConfig(total_timesteps=100_000, num_envs=64, num_steps=32)
for _n in DEEPSEA_SIZES:
    _add(
        "default",
        Preset(
            replace(DEEPSEA_PPO, env=f"bsuite/deepsea-{_n}"),
            handcrafted(1e-3, 0.9, 0.999, anneal=True),
        ),
    )

# Gridworld, the paper's (§3.5): width 16, tanh, 3e7 frames, 1024 x 20 steps, 2
# epochs of 16 minibatches; Adam lr 1e-4, b1 = b2 = 0.99, annealed (§6). Small: 64
# environments, 4 minibatches, 3e5 frames (the paper's first-commit horizon).
GRIDWORLD_PPO = PPOConfig(
    total_timesteps=30_000_000,
    num_envs=1024,
    num_steps=20,
    update_epochs=2,
    num_minibatches=16,
    hidden_size=16,
    activation="tanh",
)
GRIDWORLD_PPO_SMALL = replace(
    GRIDWORLD_PPO, total_timesteps=300_000, num_envs=64, num_minibatches=4
)
GRIDWORLD_ADAM = handcrafted(1e-4, 0.99, 0.99, anneal=True)
for _type in GRID_TYPES:
    _env = f"gridworld/{_type}"
    _add("default", Preset(replace(GRIDWORLD_PPO, env=_env), GRIDWORLD_ADAM, 1.0))
    _add("small", Preset(replace(GRIDWORLD_PPO_SMALL, env=_env), GRIDWORLD_ADAM, 1.0))

# Brax: Ant's settings in OPEN's code (§3.5), for every task: 2048 x 10 steps, 4
# epochs of 32 minibatches, width 64, tanh, no entropy bonus, 5e7 frames; Adam lr
# 3e-4, b1 = b2 = 0.99, annealed (§6). Small (ours, for a CPU): 32 x 64 steps, 4
# minibatches of 512, 1e6 frames.
BRAX_PPO = PPOConfig(
    total_timesteps=50_000_000,
    num_envs=2048,
    num_steps=10,
    num_minibatches=32,
    ent_coef=0.0,
    activation="tanh",
)
BRAX_PPO_SMALL = replace(
    BRAX_PPO, total_timesteps=1_000_000, num_envs=32, num_steps=64, num_minibatches=4
)
for _task in BRAX_TASKS:
    _env, _adam = f"brax/{_task}", handcrafted(3e-4, 0.99, 0.99, anneal=True)
    _baseline = 6517.31 if _task == "ant" else None
    _add("default", Preset(replace(BRAX_PPO, env=_env), _adam, _baseline))
    _add("small", Preset(replace(BRAX_PPO_SMALL, env=_env), _adam))

# Craftax-Classic. OPEN §5.4 compares Adam with settings carried over ("0-shot",
# here the gridworld's: the released gridworld optimizer is the one transferred)
# and settings tuned for Craftax (here the Craftax paper's PPO: 1024 x 64 steps, 4
# epochs of 8 minibatches, lambda 0.8, grad norm 1.0, 3 tanh layers of 512, Adam
# 2e-4 annealed). The paper's own values were not retrievable. Both train 1e9
# frames, the Craftax benchmark's budget. Small: 64 environments, 1e6 frames.
CRAFTAX_PPO = PPOConfig(
    env="craftax/classic",
    total_timesteps=1_000_000_000,
    num_envs=1024,
    num_steps=64,
    num_minibatches=8,
    gae_lambda=0.8,
    max_grad_norm=1.0,
    hidden_size=512,
    num_hidden_layers=3,
    activation="tanh",
)
CRAFTAX_ZERO_SHOT = replace(
    GRIDWORLD_PPO, env="craftax/classic", total_timesteps=1_000_000_000
)
_CRAFTAX_SMALL = {"total_timesteps": 1_000_000, "num_envs": 64}
_add("default", Preset(CRAFTAX_PPO, handcrafted(2e-4, 0.9, 0.999, anneal=True)))
_add(
    "small",
    replace(
        PRESETS[("ppo", "craftax/classic", "default")],
        config=replace(CRAFTAX_PPO, **_CRAFTAX_SMALL),
    ),
)
_add("zero-shot", Preset(CRAFTAX_ZERO_SHOT, GRIDWORLD_ADAM))
_add(
    "small-zero-shot",
    Preset(
        replace(CRAFTAX_ZERO_SHOT, num_minibatches=4, **_CRAFTAX_SMALL),
        GRIDWORLD_ADAM,
    ),
)

# Atari: CleanRL's PPO (Huang et al. 2022): 8 x 128 steps, 4 epochs of 4
# minibatches, clip 0.1, Adam 2.5e-4 annealed, 1e7 frames, with OPEN's separate
# actor and critic (a Nature CNN each). Small: 1e5 frames, for a CPU.
ATARI_PPO = PPOConfig(total_timesteps=10_000_000, num_envs=8, clip_eps=0.1)
for _game in ATARI_GAMES:
    _env, _adam = f"atari/{_game}", handcrafted(2.5e-4, 0.9, 0.999, anneal=True)
    _add("default", Preset(replace(ATARI_PPO, env=_env), _adam))
    _add("small", Preset(replace(ATARI_PPO, env=_env, total_timesteps=100_000), _adam))


# VALUE-BASED ------------------------------------------------------------------------
# Adam as each implementation uses it (its eps is optax's 1e-8 here); PQN anneals
# the learning rate linearly to 0 as purejaxql does.
# CartPole, DQN: CleanRL's dqn.py (and PureJaxRL's, 10 environments), equal hidden
# widths of 128 in place of 120 and 84.
CARTPOLE_DQN = DQNConfig(env="classic/cartpole", hidden_size=128)
# CartPole, IQN: DQN's CartPole loop with Dopamine's batch of 32 and Dabney et al.'s
# quantile samples (N = N' = 64, K = 32, 64 cosine features); 1e5 frames, epsilon
# decaying over the first 2e4, and Adam at 1e-3, so it runs in minutes on a CPU.
CARTPOLE_IQN = IQNConfig(
    env="classic/cartpole",
    total_timesteps=100_000,
    batch_size=32,
    learning_starts=1_000,
    exploration_fraction=0.2,
    num_hidden_layers=1,
)
# CartPole, PQN: purejaxql's pqn_cartpole.yaml.
CARTPOLE_PQN = PQNConfig(env="classic/cartpole")
# MinAtar, DQN: Revisiting Rainbow's (Obando-Ceron & Castro 2021, dopamine gin
# files): 1e7 frames, buffer 1e5, batch 32, a gradient step per 4 frames (4
# environments here), 1000 frames before learning, target copied every 1000
# frames, epsilon 1 -> 0.01 over 2.5e5 frames; an MLP of 2 x 128 in place of their
# CNN (conv 16 + dense 128). IQN: the same loop with Dabney et al.'s quantiles.
_MINATAR_REPLAY = {
    "total_timesteps": 10_000_000,
    "num_envs": 4,
    "buffer_size": 100_000,
    "batch_size": 32,
    "learning_starts": 1_000,
    "target_update_interval": 1_000,
    "end_e": 0.01,
    "exploration_fraction": 0.025,
    "hidden_size": 128,
}
MINATAR_DQN = DQNConfig(**_MINATAR_REPLAY)
MINATAR_IQN = IQNConfig(**_MINATAR_REPLAY)
# MinAtar, PQN: purejaxql's pqn_minatar.yaml, with an MLP of 2 x 128 (LayerNorm) in
# place of its CNN (conv 16 + dense 128).
MINATAR_PQN = PQNConfig(
    total_timesteps=10_000_000,
    num_envs=128,
    num_steps=32,
    update_epochs=2,
    num_minibatches=32,
    q_lambda=0.65,
    end_e=0.05,
    exploration_fraction=0.1,
    reward_scale=1.0,
    hidden_size=128,
)
# Small (ours, for a CPU): 5e5 frames, the replay buffer 5e4.
_MINATAR_SMALL = {"total_timesteps": 500_000}
_VALUE_BASES = {  # algorithm: (CartPole, MinAtar, Adam on CartPole, on MinAtar)
    "dqn": (
        CARTPOLE_DQN,
        MINATAR_DQN,
        handcrafted(2.5e-4, 0.9, 0.999, anneal=False),
        handcrafted(2.5e-4, 0.9, 0.999, anneal=False),
    ),
    "iqn": (
        CARTPOLE_IQN,
        MINATAR_IQN,
        handcrafted(1e-3, 0.9, 0.999, anneal=False),
        handcrafted(2.5e-4, 0.9, 0.999, anneal=False),
    ),
    "pqn": (
        CARTPOLE_PQN,
        MINATAR_PQN,
        handcrafted(1e-4, 0.9, 0.999, anneal=True),
        handcrafted(5e-4, 0.9, 0.999, anneal=True),
    ),
}
for _algo, (_cartpole, _minatar, _adam_cp, _adam_ma) in _VALUE_BASES.items():
    _add("default", Preset(_cartpole, _adam_cp))
    # Acrobot, Deep Sea, the gridworld and Craftax take CartPole's settings (not
    # tuned for them).
    for _env in (
        "classic/acrobot",
        *(f"bsuite/deepsea-{n}" for n in DEEPSEA_SIZES),
        *(f"gridworld/{t}" for t in GRID_TYPES),
        "craftax/classic",
    ):
        _add("default", Preset(replace(_cartpole, env=_env), _adam_cp))
    for _game in MINATAR_ADAM:
        _config = replace(_minatar, env=f"minatar/{_game}")
        _add("default", Preset(_config, _adam_ma))
        _small = dict(_MINATAR_SMALL)
        if _algo != "pqn":
            _small["buffer_size"] = 50_000
        _add("small", Preset(replace(_config, **_small), _adam_ma))


# RAINBOW ----------------------------------------------------------------------------
# MinAtar: Revisiting Rainbow's full agent (Obando-Ceron & Castro 2021, dopamine gin
# files): C51 with 51 atoms on [-10, 10], 3-step returns, prioritised replay,
# dueling, noisy layers (no epsilon), double Q; 1e7 frames, buffer 1e5, batch 32,
# a gradient step per 4 frames (4 environments), 1000 frames before learning,
# target copied every 1000 frames, Adam 1e-4; an MLP of 2 x 128 in place of their
# CNN. Small: 5e5 frames, buffer 5e4.
MINATAR_RAINBOW = RainbowConfig(**{**_MINATAR_REPLAY, "end_e": 0.0}, start_e=0.0)
RAINBOW_ADAM = handcrafted(1e-4, 0.9, 0.999, anneal=False)
for _game in MINATAR_ADAM:
    _config = replace(MINATAR_RAINBOW, env=f"minatar/{_game}")
    _add("default", Preset(_config, RAINBOW_ADAM))
    _small = {**_MINATAR_SMALL, "buffer_size": 50_000}
    _add("small", Preset(replace(_config, **_small), RAINBOW_ADAM))
# CartPole (ours, after Dopamine's classic-control Rainbow: 3-step returns, a
# gradient step per 4 frames, the target copied every 100 gradient steps): 5e4
# frames, 4 environments, buffer 2e4, batch 64, 1000 frames before learning,
# atoms on [0, 100] (the discounted return of a 500-step episode is 99.3), width
# 64, noisy layers, Adam 1e-3.
CARTPOLE_RAINBOW = RainbowConfig(
    env="classic/cartpole",
    total_timesteps=50_000,
    num_envs=4,
    buffer_size=20_000,
    batch_size=64,
    learning_starts=1_000,
    target_update_interval=400,
    v_min=0.0,
    v_max=100.0,
    hidden_size=64,
)
_add("default", Preset(CARTPOLE_RAINBOW, handcrafted(1e-3, 0.9, 0.999, anneal=False)))


# SAC AND TD3 ------------------------------------------------------------------------
# MuJoCo (gymnasium), Brax and DeepMind Control (Playground): CleanRL's
# sac_continuous_action.py and td3_continuous_action.py: 1e6 frames from one
# environment, buffer 1e6, batch 256, 2 x 256 ReLU, tau 0.005, gamma 0.99; SAC
# learns from 5e3 frames with an automatic temperature, TD3 from 2.5e4 with
# policy noise 0.2 (clip 0.5), exploration noise 0.1 and the actor every second
# step. One learning rate for every network, 3e-4 (CleanRL gives SAC's critics and
# temperature 1e-3). Small (ours, for a CPU): 2e4 frames, learning from 2e3.
MUJOCO_SAC = SACConfig(env="mujoco/halfcheetah")
MUJOCO_TD3 = TD3Config(env="mujoco/halfcheetah")
OFFPOLICY_ADAM = handcrafted(3e-4, 0.9, 0.999, anneal=False)
_OFFPOLICY_SMALL = {
    "total_timesteps": 20_000,
    "learning_starts": 2_000,
    "buffer_size": 20_000,
}
for _suite, _tasks in (
    ("mujoco", MUJOCO_TASKS),
    ("brax", BRAX_TASKS),
    ("dmc", DMC_TASKS),
):
    for _task in _tasks:
        for _base in (MUJOCO_SAC, MUJOCO_TD3):
            _config = replace(_base, env=f"{_suite}/{_task}")
            _add("default", Preset(_config, OFFPOLICY_ADAM))
            _add("small", Preset(replace(_config, **_OFFPOLICY_SMALL), OFFPOLICY_ADAM))
# Pendulum (ours, for a CPU; CleanRL's settings otherwise): width 64, batch 128,
# 1e4 frames, learning from 1e3, Adam 1e-3. MountainCarContinuous: the same
# settings for 5e4 frames (not tuned; its sparse reward needs exploration that
# neither algorithm's noise provides).
PENDULUM_OFFPOLICY = {
    "env": "classic/pendulum",
    "total_timesteps": 10_000,
    "buffer_size": 10_000,
    "batch_size": 128,
    "learning_starts": 1_000,
    "hidden_size": 64,
}
PENDULUM_ADAM = handcrafted(1e-3, 0.9, 0.999, anneal=False)
for _base in (MUJOCO_SAC, MUJOCO_TD3):
    _config = replace(_base, **PENDULUM_OFFPOLICY)
    _add("default", Preset(_config, PENDULUM_ADAM))
    _add(
        "default",
        Preset(
            replace(
                _config,
                env="classic/mountaincar-continuous",
                total_timesteps=50_000,
                buffer_size=50_000,
            ),
            PENDULUM_ADAM,
        ),
    )


def variants(env: str, algo: str = "ppo") -> list[str]:
    """The preset variants of ``algo`` on ``env``."""
    name = canonical_name(env)
    return [v for a, e, v in PRESETS if a == algo and e == name]


def preset_for(env: str, variant: str = "default", algo: str = "ppo") -> Preset:
    """The preset of an algorithm (PPO by default) on an environment or alias.

    Raises:
      UnknownPresetError: no preset of this variant for the algorithm and
        environment (the message lists those that exist).
    """
    name = canonical_name(env)
    check_name(algo)
    if (algo, name, variant) in PRESETS:
        return PRESETS[(algo, name, variant)]
    have = variants(name, algo)
    if have:
        raise UnknownPresetError(
            f"no {variant!r} preset of {algo} on {name}; it has: {', '.join(have)}"
        )
    mismatch = action_mismatch(algo, name)
    if mismatch:
        raise UnknownPresetError(f"{algo} has no preset on {name}: {mismatch}")
    envs = sorted({e for a, e, _ in PRESETS if a == algo})
    raise UnknownPresetError(
        f"{algo} has no preset on {name}; it has presets on {', '.join(envs)}"
    )


def apply_tuned(preset: Preset, settings: TunedSettings, variant: str) -> Preset:
    """``preset`` (of ``variant``) with the tuned optimizer's hyperparameters and
    its mean return as the baseline; refuses settings tuned elsewhere."""
    check_tuned(settings, preset.config, variant)
    optimizers = {k: dict(v) for k, v in preset.optimizers.items()}
    optimizers[settings.optimizer] = dict(settings.hyperparams)
    return replace(
        preset,
        optimizers=MappingProxyType(optimizers),
        baseline_return=settings.baseline_return,
    )


# META-TRAINING ----------------------------------------------------------------------


def task_for(
    env: str,
    variant: str = "default",
    algo: str = "ppo",
    *,
    tuned: TunedSettings | None = None,
    total_timesteps: int | None = None,
) -> TaskConfig:
    """A meta-training task from an environment's preset (PPO's by default) and
    Adam return, or the mean return of ``tuned`` settings (``lopt tune``'s
    ``tuned.json``); ``total_timesteps`` replaces the preset's inner budget."""
    preset = preset_for(env, variant, algo)
    if tuned is not None:
        preset = apply_tuned(preset, tuned, variant)
    config = preset.config
    if total_timesteps is not None:
        config = replace(config, total_timesteps=total_timesteps)
    return TaskConfig(
        algo=algo,
        config=config,
        baseline_return=preset.baseline_return or 1.0,
        antithetic_tasks=canonical_name(env).startswith("gridworld/"),
        preset=variant,
    )


def _paper_meta(envs: tuple[str, ...], optimizer: OPENConfig) -> MetaTrainConfig:
    """OPEN's ES settings (§4.1): population 64, sigma 0.03, lr 0.03, decays 0.999,
    500 generations, held-out evaluation and checkpoints every 24. Meant for GPUs."""
    return MetaTrainConfig(
        tasks=tuple(task_for(env) for env in envs),
        es=ESConfig(),
        optimizer=optimizer,
        save_every=24,
        eval_every=24,
        num_eval_seeds=8,
    )


MINATAR = tuple(f"minatar/{game}" for game in MINATAR_ADAM)

#: The cpu preset's inner budget: 12 PPO updates of 2,048 frames (the small
#: preset's 64 environments x 32 steps), half the small preset's 5e4 frames.
CPU_FRAMES = 24_576

# Finishes in about 5 minutes on 2 CPU cores (279-300 s measured with the closing
# comparison). The inner task is SpaceInvaders-MinAtar's small preset cut to 12
# updates: a horizon so short that how each update steps decides the return, and
# OPEN, which reads training_prop and batch_prop, learns a schedule Adam's constant
# or linearly annealed learning rate cannot follow. At 5e4 frames tuned Adam came
# close to what the budget allows and ES's run-to-run spread was as large as the
# margin (README: three seeds, P(learned > tuned Adam) 0.5-0.76); at 24,576 every
# seed wins with P 0.74-0.82. Half the frames also halves each generation.
# OPEN without its learned noise: in runs this short there is nothing for the
# noise to explore and ES first has to learn to switch it off; the ablations study
# at 5e4 frames gave 10.4 without noise against 8.0 with it (README).
CPU_META = MetaTrainConfig(
    tasks=(
        task_for(
            "minatar/spaceinvaders",
            "small",
            tuned=read_tuned(BUILTIN_DIR / "ppo-spaceinvaders-small-24576-adam.json"),
            total_timesteps=CPU_FRAMES,
        ),
    ),
    es=ESConfig(
        population_size=16,
        num_generations=40,
        sigma=0.1,
        sigma_decay=0.98,
        lr=0.15,
        # Faster than sigma's: ES's mean settles instead of wandering between
        # checkpoints as good as each other (lr 0.054 at generation 20, 0.019 at
        # 40); at 5e4 frames the worst of three meta-training seeds was level
        # with tuned Adam rather than below it (README).
        lr_decay=0.95,
    ),
    optimizer=dataclasses.replace(OPENConfig.small(), noise=False),
    # ES starts from OPEN stepping like signum, -3e-3 * sign(momentum 0.9), not from
    # zeros: from zeros the first 20 of 40 generations go to learning to step at all
    # (held-out return 4.2 at generation 0, at 5e4 frames), from signum ES refines
    # an optimizer that already trains. 3e-3: Lion's best learning rate on this
    # task at 5e4 frames (`lopt tune --optimizer lion`, seeds 2,000,000-2,000,007;
    # at 24,576 frames its best is 5e-3, 6.62 against 6.33 at 3e-3).
    init_from="signum:3e-3",
    save_every=10,
    eval_every=10,
    num_eval_seeds=32,
)

META_PRESETS: dict[str, MetaTrainConfig] = {
    "cpu": CPU_META,
    **{env.split("/")[1]: _paper_meta((env,), OPENConfig.small()) for env in MINATAR},
    "multi-minatar": _paper_meta(MINATAR, OPENConfig.large()),
    # rand_all with antithetic task sampling (§4.3); the paper's ES settings.
    "gridworld": _paper_meta(("gridworld/rand_all",), OPENConfig.small()),
}
