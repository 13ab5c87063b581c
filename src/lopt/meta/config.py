"""Settings of a meta-training run: tasks, the learned optimizer, the ES."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from lopt import validation
from lopt.envs.registry import is_host
from lopt.optim.network import OPENConfig
from lopt.optim.optim4rl import Optim4RLConfig
from lopt.optim.signum_start import parse_signum, signum_error
from lopt.rl.algorithm import AlgorithmConfig
from lopt.rl.ppo import PPOConfig
from lopt.rl.registry import ALGORITHMS, algorithm_name, check_name, config_type

STRATEGIES = ("open-es", "ga")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """One inner-loop task: an algorithm (PPO by default) on an environment.

    Serialised with its algorithm's name as the tag that says which config type
    ``config`` is (:meth:`from_dict`).
    """

    algo: str = "ppo"
    """the inner-loop algorithm: ppo, dqn, iqn or pqn"""
    config: AlgorithmConfig = dataclasses.field(default_factory=PPOConfig)
    """the algorithm's settings (its config type)"""
    baseline_return: float = 1.0
    """Adam's final return on this task; multi-task fitness is divided by it"""
    antithetic_tasks: bool = False
    """OPEN §4.3 (the gridworld): the two members of each antithetic pair share
    their inner runs' seeds (hence levels), different pairs get different ones,
    and fitness is pairwise: the better member of each pair is pushed toward"""
    preset: str | None = None
    """the preset variant the settings came from (recorded in the optimizer's
    card), if any"""

    def __post_init__(self):
        check_name(self.algo)
        if algorithm_name(self.config) != self.algo:
            raise ValueError(
                f"a {self.algo} task needs a {config_type(self.algo).__name__}, "
                f"got a {type(self.config).__name__}"
            )
        if not math.isfinite(self.baseline_return) or self.baseline_return <= 0:
            raise ValueError(
                f"{self.config.env}: the baseline return divides fitness, so it "
                f"must be finite and positive; got {self.baseline_return} (a task "
                "whose returns are negative, e.g. Acrobot, keeps the default 1.0)"
            )

    @classmethod
    def from_dict(cls, data: dict) -> TaskConfig:
        """The task :func:`lopt.serialise.to_dict` wrote: ``config``'s type is
        the one ``algo`` names. Also reads the older layout, with the config
        under its algorithm's name (``{"ppo": {...}, "dqn": null, ...}``)."""
        from lopt.serialise import from_dict

        data = dict(data)
        for name in ALGORITHMS:
            legacy = data.pop(name, None)
            if legacy is not None:
                data["algo"], data["config"] = name, legacy
        algo = check_name(data.pop("algo", "ppo"))
        config = data.pop("config", {})
        config = {RENAMED.get(k, k): v for k, v in config.items()}
        return cls(algo=algo, config=from_dict(config_type(algo), config), **data)


#: Settings renamed since older run directories were written: old -> new.
RENAMED = {"num_hidden": "num_hidden_layers"}


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """Evolution strategy (OPEN §4.1). Defaults are the paper's MinAtar settings."""

    strategy: Literal["open-es", "ga"] = "open-es"
    """open-es: OpenAI-ES, antithetic, centred ranks, Adam (b1 0.99) on the mean;
    ga: a genetic algorithm that keeps the best half and mutates copies of them"""
    population_size: int = 64
    num_generations: int = 500
    num_rollouts: int = 1
    """inner runs per member per generation (seeds shared by all members)"""
    fitness_window: float = 0.0
    """the fraction of each inner run's last updates whose returns are averaged
    into its fitness (at least the last update); 0: the final return alone, the
    paper's; 1: the mean return over the whole run"""
    sigma: float = 0.03
    """initial standard deviation of the perturbations (the GA's mutation scale)"""
    sigma_decay: float = 0.999
    sigma_limit: float = 0.01
    """floor of sigma (evosax 0.1's default, which the paper used)"""
    lr: float = 0.03
    """initial learning rate of Adam on the ES mean"""
    lr_decay: float = 0.999
    lr_warmup: int = 0
    """generations over which the learning rate rises linearly to its full value
    (Adam's first steps move every coordinate by the whole learning rate, however
    noisy its gradient estimate); 0: none, the paper's"""
    lr_limit: float = 0.001
    """floor of the learning rate (evosax 0.1's default)"""
    probes: int = 1
    """independent ES runs started side by side (ES seeds seed, seed +
    PROBE_SEED_STRIDE, ...); after ``probe_generations`` each is evaluated on the
    held-out seeds and the best continues alone; 1: none, the paper's"""
    probe_generations: int = 0
    """generations each probe runs before the choice (with probes > 1); all of
    ``num_generations``: the best probe, finished, is the result"""

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {self.strategy!r}; "
                f"choose from {', '.join(STRATEGIES)}"
            )
        for name, valid in ES_RANGES.items():
            validation.check(name, getattr(self, name), valid)
        if self.probes > 1 and not 0 < self.probe_generations <= self.num_generations:
            raise validation.SettingError(
                f"{self.probes} probes need --probe-generations between 1 and "
                f"--generations = {self.num_generations} (the generations each probe "
                "runs before the best continues; all of them: the best probe is the "
                f"result); got {self.probe_generations}"
            )


#: The valid range of each numeric ES setting (:mod:`lopt.validation`).
ES_RANGES = {
    "population_size": validation.POPULATION,
    "num_generations": validation.COUNT,
    "num_rollouts": validation.COUNT,
    "fitness_window": validation.FRACTION,
    "sigma": validation.SIGMA,
    "sigma_decay": validation.DECAY,
    "sigma_limit": validation.FLOOR,
    "lr": validation.LEARNING_RATE,
    "lr_decay": validation.DECAY,
    "lr_warmup": validation.NON_NEGATIVE,
    "lr_limit": validation.FLOOR,
    "probes": validation.COUNT,
    "probe_generations": validation.NON_NEGATIVE,
}

#: Probe i of a run with ES seed S runs with ES seed S + i * PROBE_SEED_STRIDE: any
#: probe is the plain run of that seed, e.g. ``lopt meta-train --seed 1000``.
PROBE_SEED_STRIDE = 1000


@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
    """A whole meta-training run."""

    tasks: tuple[TaskConfig, ...]
    es: ESConfig = dataclasses.field(default_factory=ESConfig)
    optimizer: OPENConfig | Optim4RLConfig = dataclasses.field(
        default_factory=OPENConfig
    )
    """the learned optimizer: OPEN, an ablation of it, No-Features
    (OPENConfig.no_features()) or Optim4RL"""
    init_from: str | None = None
    """where the ES mean starts: None for zeros (the paper's start), ``signum:LR``
    for OPEN stepping ``-LR * sign(momentum)`` (:mod:`lopt.optim.signum_start`),
    or a .npy optimizer file"""
    seed: int = 0
    save_every: int = 24
    """generations between checkpoints of the whole ES state"""
    eval_every: int = 24
    """generations between evaluations of the current optimizer on held-out seeds"""
    num_eval_seeds: int = 8
    eval_seed_base: int = 1_000_000
    """held-out evaluation seeds are eval_seed_base, eval_seed_base + 1, ...; ES draws
    its own training keys from ``seed`` and never uses these"""

    @property
    def probe_seeds(self) -> tuple[int, ...]:
        """The ES seed of each probe; ``(seed,)`` without probes."""
        return tuple(self.seed + i * PROBE_SEED_STRIDE for i in range(self.es.probes))

    @property
    def comparison_seed_base(self) -> int:
        """The first of the ``num_eval_seeds`` seeds of the closing comparison with
        the tuned baseline: the held-out seeds, or with probes (chosen on those)
        the next ``num_eval_seeds``, which nothing in the run has seen."""
        if self.es.probes == 1:
            return self.eval_seed_base
        return self.eval_seed_base + self.num_eval_seeds

    def probe(self, seed: int) -> MetaTrainConfig:
        """The run of one probe: ES seed ``seed``, ``probe_generations``
        generations, no probes of its own."""
        es = dataclasses.replace(
            self.es,
            num_generations=self.es.probe_generations,
            probes=1,
            probe_generations=0,
        )
        return dataclasses.replace(self, es=es, seed=seed)

    def __post_init__(self):
        if not self.tasks:
            raise ValueError("a meta-training run needs at least one task")
        envs = [t.config.env for t in self.tasks]
        if len(set(envs)) != len(envs):
            raise ValueError(f"each environment may appear once; got {envs}")
        if any(t.antithetic_tasks for t in self.tasks) and (
            len(self.tasks) > 1 or self.es.strategy != "open-es"
        ):
            raise ValueError(
                f"{envs[0] if len(envs) == 1 else envs}: antithetic task sampling "
                "(--antithetic-tasks; the gridworld's default) needs a single task "
                "and --strategy open-es"
            )
        hosted = [env for env in envs if is_host(env)]
        if hosted:
            raise ValueError(
                f"{', '.join(hosted)} run on the host (ALE), outside JAX, so they "
                "cannot be meta-trained; use a JAX environment (e.g. MinAtar)"
            )
        if getattr(self.optimizer, "separate_actor_critic", False) and any(
            t.algo != "ppo" for t in self.tasks
        ):
            raise ValueError(
                "--separate-actor-critic needs an actor and a critic (PPO); a "
                "value-based task has one Q-network"
            )
        if self.init_from is not None and parse_signum(self.init_from) is not None:
            error = signum_error(self.optimizer)
            if error is not None:
                raise ValueError(
                    f"--init-from {self.init_from}: {error}; start from zeros "
                    "(--init-from zeros) or from an optimizer file"
                )
        for name in ("save_every", "eval_every", "num_eval_seeds"):
            validation.check(name, getattr(self, name), validation.COUNT)
        validation.check("seed", self.seed, validation.SEED)
        last_probe = self.probe_seeds[-1]
        if last_probe > validation.SEED_LIMIT - 1:
            raise validation.SettingError(
                f"seed {self.seed} with {self.es.probes} probes gives ES seeds up to "
                f"{last_probe}, past the last seed {validation.SEED_LIMIT - 1}; use "
                "a smaller --seed"
            )
        validation.check_seed_span(
            self.eval_seed_base,
            self.comparison_seed_base + self.num_eval_seeds - self.eval_seed_base,
            "eval_seed_base",
        )
