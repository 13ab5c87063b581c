"""Optimizer cards: what a learned optimizer was meta-trained on.

OPEN reads ``training_prop``, the fraction of the inner run done, so it behaves as
trained only near the horizon it was meta-trained for (OPEN §2.3, §10.4). A card
records that horizon, in frames and in optimizer steps, for every task, with the ES
settings, generations, seed, held-out return and the versions that wrote it.

lopt writes the card into an optimizer file's sidecar (``<name>.json``, key
``"card"``; :func:`lopt.optim.files.save_learned`). The paper's released ``.npy``
files have no sidecar: their cards are :data:`RELEASED_CARDS`, written from what the
paper's code says of them (OPEN_SPEC §2.8, §3.5, §4), and are found by file content
(sha256), so a renamed copy keeps its card.

- :func:`make_card`, :func:`task_card`: build a card at the end of meta-training.
- :func:`read_card`: the card of a file, or None.
- :func:`format_card`: the text ``lopt info FILE`` prints.
- :func:`horizon_mismatch`: the warning for a run whose number of optimizer steps
  is more than a factor of 2 away from the meta-training horizon.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: A run this many times longer or shorter than the meta-training horizon warns.
HORIZON_FACTOR = 2.0


@dataclasses.dataclass(frozen=True)
class TaskCard:
    """One meta-training task: an inner-loop algorithm on an environment."""

    env: str
    """environment, as lopt names it (e.g. ``minatar/breakout``)"""
    algorithm: str
    """inner-loop algorithm: ppo, dqn, iqn or pqn"""
    frames: int
    """environment steps of one inner run (TOTAL_TIMESTEPS), summed over the
    parallel environments"""
    num_updates: int
    """rollouts (PPO updates) per inner run"""
    optimizer_steps: int
    """optimizer steps per inner run: the horizon training_prop is relative to"""
    preset: str | None = None
    """the algorithm's preset variant (``default``, ``small``, ...) the settings
    came from, if any"""
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """the inner loop's settings (num_envs, num_steps, epochs, minibatches, ...)"""
    baseline_return: float | None = None
    """the fitness normaliser (the paper's PPO_TEMP, Adam's return)"""
    heldout_return: float | None = None
    """mean final return of the optimizer on the held-out seeds"""


@dataclasses.dataclass(frozen=True)
class OptimizerCard:
    """What a learned optimizer was meta-trained on, and by what."""

    variant: str
    """``open``, ``no-features``, an ablation (``open-no-dormancy``...), ``optim4rl``"""
    features: tuple[str, ...] | None
    """the input feature groups it reads (None: Optim4RL, which reads the gradient)"""
    tasks: tuple[TaskCard, ...]
    es: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """evolution strategy settings (strategy, population_size, sigma, lr, decays...)"""
    generations: int | None = None
    """ES generations done (None: unknown)"""
    seed: int | None = None
    heldout_seeds: int | None = None
    """number of held-out seeds behind each task's heldout_return"""
    lopt_version: str | None = None
    jax_version: str | None = None
    source: str = "lopt meta-train"
    """who made the optimizer"""
    notes: tuple[str, ...] = ()

    @property
    def horizons(self) -> tuple[int, ...]:
        """The tasks' optimizer steps per inner run, distinct, ascending."""
        return tuple(sorted({t.optimizer_steps for t in self.tasks}))


# BUILDING AND SERIALISING ---------------------------------------------------------


def task_card(
    algo_config: Any,
    algorithm: str,
    *,
    preset: str | None = None,
    baseline_return: float | None = None,
    heldout_return: float | None = None,
) -> TaskCard:
    """The card of one task from its inner loop's config.

    Args:
      algo_config: a dataclass with ``env``, ``total_timesteps``,
        ``num_updates`` and ``num_optimizer_steps`` (lopt's ``PPOConfig``,
        ``DQNConfig``, ...); all its fields go into ``settings``.
      algorithm: its name (``ppo``, ``dqn``, ...).
    """
    return TaskCard(
        env=algo_config.env,
        algorithm=algorithm,
        frames=int(algo_config.total_timesteps),
        num_updates=int(algo_config.num_updates),
        optimizer_steps=int(algo_config.num_optimizer_steps),
        preset=preset,
        settings=dataclasses.asdict(algo_config),
        baseline_return=baseline_return,
        heldout_return=heldout_return,
    )


def make_card(
    config: Any,
    tasks: Sequence[TaskCard],
    *,
    es: Mapping[str, Any],
    generations: int,
    seed: int,
    heldout_seeds: int | None = None,
    notes: Sequence[str] = (),
) -> OptimizerCard:
    """The card of an optimizer lopt meta-trained, with this lopt's and JAX's versions.

    Args:
      config: the learned optimizer's ``OPENConfig`` or ``Optim4RLConfig``.
      tasks: one :func:`task_card` per task.
      es: the ES settings (e.g. ``dataclasses.asdict(ESConfig)``).
    """
    import jax

    import lopt

    features = getattr(config, "features", None)
    return OptimizerCard(
        variant=config.variant,
        features=None if features is None else tuple(features),
        tasks=tuple(tasks),
        es=dict(es),
        generations=generations,
        seed=seed,
        heldout_seeds=heldout_seeds,
        lopt_version=lopt.__version__,
        jax_version=jax.__version__,
        notes=tuple(notes),
    )


def card_to_dict(card: OptimizerCard) -> dict:
    """A JSON-serialisable dict (the sidecar's ``"card"`` entry)."""
    out = dataclasses.asdict(card)
    out["es"] = dict(card.es)
    return out


def card_from_dict(data: Mapping[str, Any]) -> OptimizerCard:
    """Inverse of :func:`card_to_dict`; keys this lopt does not know are ignored.

    Raises:
      ValueError: a required entry is missing or malformed.
    """
    try:
        known = {f.name for f in dataclasses.fields(TaskCard)}
        tasks = tuple(
            TaskCard(**{k: v for k, v in t.items() if k in known})
            for t in data["tasks"]
        )
        known = {f.name for f in dataclasses.fields(OptimizerCard)}
        fields = {k: v for k, v in data.items() if k in known}
        features = fields.get("features")
        return OptimizerCard(
            **{
                **fields,
                "tasks": tasks,
                "features": None if features is None else tuple(features),
                "notes": tuple(fields.get("notes", ())),
            }
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"not a valid optimizer card ({err!r})") from err


# THE RELEASED OPTIMIZERS (Goldie et al. 2024) -------------------------------------

_PAPER = (
    "released with Goldie et al. 2024, 'Can Learned Optimization Make Reinforcement "
    "Learning Less Difficult?' (AlexGoldie/rl-learned-optimization, "
    "rl_optimizer/pretrained)"
)
# OPEN §4.1: OpenAI-ES (evosax 0.1.4), antithetic, centred ranks, Adam on the mean.
_PAPER_ES = {
    "strategy": "open-es",
    "population_size": 64,
    "num_rollouts": 1,
    "sigma": 0.03,
    "lr": 0.03,
    "sigma_limit": 0.01,
    "lr_limit": 0.001,
}
_PAPER_NOTES = (
    "From the paper's code (OPEN_SPEC §2.8, §3.5, §4); the file has no sidecar.",
    "ES decays of sigma and lr: 0.99 in the 2024 code's defaults, 0.999 in its "
    "README example; the paper's ES table (generations, decays) was not retrievable.",
    "Seed and held-out return are not published; each optimizer was meta-trained once.",
    "jax_version is the 2024 code's pinned requirement (jax 0.4.7, flax 0.7.2).",
)
_PPO = {
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_eps": 0.2,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "num_hidden_layers": 2,
}


def _paper_task(
    env: str,
    frames: int,
    num_envs: int,
    num_steps: int,
    epochs: int,
    minibatches: int,
    baseline: float,
    **settings: Any,
) -> TaskCard:
    # NUM_UPDATES = TOTAL_TIMESTEPS // NUM_STEPS // NUM_ENVS; one optimizer step per
    # minibatch of every epoch (OPEN §3.2).
    updates = frames // num_steps // num_envs
    return TaskCard(
        env=env,
        algorithm="ppo",
        frames=frames,
        num_updates=updates,
        optimizer_steps=updates * epochs * minibatches,
        preset="default",
        settings={
            "env": env,
            "total_timesteps": frames,
            "num_envs": num_envs,
            "num_steps": num_steps,
            "update_epochs": epochs,
            "num_minibatches": minibatches,
            **_PPO,
            **settings,
        },
        baseline_return=baseline,
    )


def _minatar(game: str, baseline: float) -> TaskCard:
    return _paper_task(
        f"minatar/{game}",
        10_000_000,
        64,
        128,
        4,
        8,
        baseline,
        ent_coef=0.01,
        hidden_size=64,
        activation="relu",
    )


_GAMES = {
    "asterix": 15.0353,
    "breakout": 50.0822,
    "freeway": 61.8369,
    "spaceinvaders": 167.0913,
}
_ANT = _paper_task(
    "brax/ant",
    50_000_000,
    2048,
    10,
    4,
    32,
    6517.31,
    ent_coef=0.0,
    hidden_size=64,
    activation="tanh",
)
_GRIDWORLD = _paper_task(
    "gridworld/rand_all",
    30_000_000,
    1024,
    20,
    2,
    16,
    1.0,
    ent_coef=0.01,
    hidden_size=16,
    activation="tanh",
)


def _paper_card(
    tasks: tuple[TaskCard, ...], notes: tuple[str, ...] = (), **es: Any
) -> OptimizerCard:
    return OptimizerCard(
        variant="open",
        features=(
            "param",
            "momentum",
            "gradient",
            "training_prop",
            "layer_prop",
            "batch_prop",
            "dormancy",
        ),
        tasks=tasks,
        es={**_PAPER_ES, **es},
        jax_version="0.4.7",
        source=_PAPER,
        notes=_PAPER_NOTES + notes,
    )


_BREAKOUT_NOTE = (
    "Breakout's horizon: 1e7 frames in the code of July 2024 (the paper's), 5e5 "
    "after an April 2025 change; 1e7 with medium-high confidence, as the released "
    "optimizer beats Adam at 1e7 frames but not at 5e5 (OPEN_SPEC §3.5)."
)

#: Cards of the paper's released files, by file name.
RELEASED_CARDS: dict[str, OptimizerCard] = {
    **{
        f"{game}_OPEN.npy": _paper_card(
            (_minatar(game, baseline),),
            (_BREAKOUT_NOTE,) if game == "breakout" else (),
        )
        for game, baseline in _GAMES.items()
    },
    "ant_OPEN.npy": _paper_card((_ANT,)),
    "gridworld_OPEN.npy": _paper_card(
        (_GRIDWORLD,),
        (
            "Inner runs sample a level of rand_all per run; antithetic pairs share "
            "it and fitness is pairwise (OPEN §4.3). Evaluated on the 7 gridworld "
            "types.",
        ),
        antithetic_tasks=True,
    ),
    "multi_OPEN.npy": _paper_card(
        tuple(_minatar(game, baseline) for game, baseline in _GAMES.items()),
        (
            "The larger architecture (GRU 16, MLP 32). Multi-task fitness: each "
            "game's return divided by Adam's (baseline_return), averaged, then "
            "centred ranks (OPEN §4.2).",
            _BREAKOUT_NOTE,
        ),
    ),
}

#: sha256 of each released file (../shared/pretrained/README.md).
RELEASED_SHA256 = {
    "e1901cafe323d1c5619b84e5178b3075c95a7cde920777e2c15e58c812c3e725": "ant_OPEN.npy",
    "55d96c80dca70e4a308352798daec00fc962d7a3faacc24f612e1b437c1893aa": (
        "asterix_OPEN.npy"
    ),
    "d7f0876c78736a0e354f8837e2a549dc7f45ff4d01f952ba9d547d8afc6f7926": (
        "breakout_OPEN.npy"
    ),
    "97ea3f8f9a6e34523dd50c138a1538b33fbd2b1c3a5ee05a31014460825ea9f0": (
        "freeway_OPEN.npy"
    ),
    "16ebb93a79adbcbfdb3e6019986109ee374764cb9cc8b0ad65f69bdcaedd9bb5": (
        "gridworld_OPEN.npy"
    ),
    "9ba2dea70b0b308a365516dab092808b7b9211c70072bca934d83affaee5f60c": (
        "multi_OPEN.npy"
    ),
    "42845f4c0b6b460789afffb1788f806e676b27acafa0febf34e86bd63d3e362f": (
        "spaceinvaders_OPEN.npy"
    ),
}


# READING ---------------------------------------------------------------------------


def _sidecar_data(path: Path) -> dict | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return None
    try:
        return json.loads(sidecar.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{sidecar}: not valid JSON ({err})") from err


def released_name(path: str | os.PathLike) -> str | None:
    """The released file ``path`` is a copy of (by content), or None."""
    path = Path(path)
    if not path.is_file():
        return None
    return RELEASED_SHA256.get(hashlib.sha256(path.read_bytes()).hexdigest())


def read_card(path: str | os.PathLike) -> OptimizerCard | None:
    """The card of an optimizer file: its sidecar's, or the released file's it is a
    copy of; None for a file without one (written before lopt kept cards).

    Raises:
      ValueError: the sidecar's card is malformed.
    """
    path = Path(path)
    data = _sidecar_data(path)
    if data is not None and "card" in data:
        try:
            return card_from_dict(data["card"])
        except ValueError as err:
            raise ValueError(f"{path.with_suffix('.json')}: {err}") from err
    name = released_name(path)
    return None if name is None else RELEASED_CARDS[name]


# FORMATTING ------------------------------------------------------------------------


def _number(x: Any) -> str:
    if x is None:
        return "unknown"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.4g}"


def _task_lines(task: TaskCard) -> list[str]:
    preset = f" (preset {task.preset})" if task.preset else ""
    lines = [
        f"  {task.algorithm} on {task.env}{preset}: {_number(task.frames)} frames, "
        f"{_number(task.num_updates)} updates, {_number(task.optimizer_steps)} "
        "optimizer steps"
    ]
    batch = [
        f"{k} {_number(task.settings[k])}"
        for k in ("num_envs", "num_steps", "update_epochs", "num_minibatches")
        if k in task.settings
    ]
    if batch:
        lines.append(f"    {', '.join(batch)}")
    returns = []
    if task.heldout_return is not None:
        returns.append(f"held-out return {_number(task.heldout_return)}")
    if task.baseline_return is not None:
        returns.append(f"baseline (Adam) return {_number(task.baseline_return)}")
    if returns:
        lines.append(f"    {', '.join(returns)}")
    return lines


def _architecture(path: Path) -> str:
    from lopt.optim.files import load_learned

    _, config = load_learned(path)
    if hasattr(config, "hidden_size"):
        shape = (
            f"{config.cell.upper()} {config.cell_features}, MLP {config.hidden_size}"
        )
    else:
        shape = f"2 GRUs of {config.cell_features}"
    return f"{config.variant} ({shape}), {config.num_meta_params:,} meta-parameters"


def format_card(path: str | os.PathLike) -> str:
    """What ``lopt info FILE`` prints: the optimizer's architecture and its card.

    Raises:
      OptimizerFileError: the file cannot be loaded (see
        :func:`lopt.optim.files.load_learned`).
    """
    path = Path(path)
    lines = [f"{path.name}: {_architecture(path)}"]
    card = read_card(path)
    if card is None:
        lines.append(
            "no card: this file does not say what it was meta-trained on (written "
            "before lopt recorded cards, or not by lopt)"
        )
        data = _sidecar_data(path) or {}
        extra = {k: v for k, v in data.items() if k not in ("format", "config")}
        if extra:
            lines.append("sidecar: " + json.dumps(extra, sort_keys=True))
        return "\n".join(lines)
    lines.append(f"source: {card.source}")
    if card.features is not None:
        lines.append(f"features: {', '.join(card.features)}")
    lines.append(f"meta-trained on {len(card.tasks)} task(s):")
    for task in card.tasks:
        lines.extend(_task_lines(task))
    es = ", ".join(f"{k} {_number(v)}" for k, v in card.es.items())
    lines.append(f"ES: {es or 'unknown'}")
    lines.append(
        f"generations: {_number(card.generations)}; seed: {_number(card.seed)}; "
        f"held-out seeds: {_number(card.heldout_seeds)}"
    )
    lines.append(
        f"versions: lopt {card.lopt_version or '- (not written by lopt)'}, "
        f"jax {card.jax_version or 'unknown'}"
    )
    lines.extend(f"note: {note}" for note in card.notes)
    return "\n".join(lines)


def horizon_mismatch(
    card: OptimizerCard | None, num_optimizer_steps: int, *, name: str | None = None
) -> str | None:
    """The warning for a run of ``num_optimizer_steps`` optimizer steps with an
    optimizer meta-trained at another horizon, or None.

    It warns when the run is more than :data:`HORIZON_FACTOR` times longer or
    shorter than every task's meta-training horizon, and only for an optimizer that
    reads training_prop (the fraction of the run done), whose schedule then runs
    faster or slower than it learned. ``name`` (e.g. the file's) heads the text.
    """
    if card is None or not card.tasks:
        return None
    if card.features is None or "training_prop" not in card.features:
        return None
    steps = int(num_optimizer_steps)
    if any(h / HORIZON_FACTOR <= steps <= h * HORIZON_FACTOR for h in card.horizons):
        return None
    nearest = min(card.horizons, key=lambda h: abs(h - steps))
    horizon = (
        f"{nearest:,} optimizer steps"
        if len(card.horizons) == 1
        else f"{card.horizons[0]:,} to {card.horizons[-1]:,} optimizer steps"
    )
    tasks = "; ".join(
        f"{t.algorithm} on {t.env}, {t.frames:,} frames" for t in card.tasks
    )
    ratio = steps / nearest
    pace = f"{1 / ratio:.3g}x faster" if ratio < 1 else f"{ratio:.3g}x slower"
    who = name or "the optimizer"
    return (
        f"this run takes {steps:,} optimizer steps, but {who} was meta-trained at "
        f"{horizon} ({tasks}): its training_prop input advances {pace} than in "
        "meta-training, so it may not behave as trained; match the horizon (e.g. "
        "--total-timesteps) to use it as trained"
    )
