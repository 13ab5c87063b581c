"""The meta-training loop: ask, evaluate, tell, log, checkpoint (OPEN §4).

The only stateful place of meta-training. Each generation g uses keys derived from
``(seed, g)`` alone, and the whole ES state is checkpointed, so a run resumed from a
checkpoint ends exactly where an uninterrupted run with the same seed would.

On several processes (:mod:`lopt.distributed`) every process runs this loop: each
evaluates its devices' members, all get every fitness, all step the ES, and
process 0's state is broadcast so they never drift apart. Process 0 alone reads
and writes the run directory and evaluates on held-out seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt import distributed
from lopt.atomic import atomic_write, json_text, write_json
from lopt.meta import checkpoint, strategy
from lopt.meta.config import MetaTrainConfig
from lopt.meta.fitness import (
    combine_tasks,
    final_return,
    pairwise,
    to_minimisation,
)
from lopt.optim.card import make_card, task_card
from lopt.optim.files import load_learned, save_learned
from lopt.optim.learned import (
    learned_family,
    unravel_meta_params,
    zeros_meta_params,
)
from lopt.optim.signum_start import parse_signum, signum_start
from lopt.rl.executor import Executor, member_mesh, seed_keys
from lopt.serialise import changes, from_dict, to_dict
from lopt.summary import iqm

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
OPTIMIZER_FILE = "optimizer.npy"
SUMMARY_FILE = "summary.json"
#: With probes: each probe's run is ``probes/seed<S>/``, the choice ``probes.json``.
PROBES_DIR = "probes"
PROBES_FILE = "probes.json"
#: Generation g draws its keys from fold_in(key(seed), g); the initial state from this.
INIT_STREAM = 2**31 - 1


class MetaTrainingError(ValueError):
    """A meta-training run that cannot go on as asked: its directory, or its
    settings on resuming."""


class MetaTrainingDivergedError(MetaTrainingError):
    """The ES mean (the optimizer being trained) stopped being finite."""


def read_config(run_dir: Path) -> MetaTrainConfig:
    """The configuration a meta-training run directory was started with.

    Raises:
      MetaTrainingError: no readable ``config.json`` of a meta-training run.
    """
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
        return from_dict(MetaTrainConfig, data["config"])
    except OSError as err:
        raise MetaTrainingError(
            f"{path}: cannot read it ({err.strerror}); is {run_dir} a meta-training "
            "run?"
        ) from err
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise MetaTrainingError(
            f"{path}: not a meta-training run's configuration ({err})"
        ) from err


def check_resume(stored: MetaTrainConfig, config: MetaTrainConfig) -> None:
    """Raises :class:`MetaTrainingError` unless ``config`` continues ``stored``:
    the number of generations is the one setting that may change."""
    different = [
        f"{path} {new} (the run has {old})"
        for path, old, new in changes(stored, config)
        if path != "es.num_generations"
    ]
    if different:
        raise MetaTrainingError(
            "a resumed run keeps the settings it was started with; these differ: "
            + ", ".join(different)
        )


def read_metrics(run_dir: Path) -> list[dict]:
    """The complete lines of ``metrics.jsonl`` (a torn last line is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def _initial_mean(config: MetaTrainConfig) -> Any:
    if config.init_from is None:
        return zeros_meta_params(config.optimizer)
    lr = parse_signum(config.init_from)
    if lr is not None:
        return signum_start(config.optimizer, lr)
    meta, found = load_learned(config.init_from)
    if found != config.optimizer:
        raise ValueError(
            f"{config.init_from} holds an optimizer of architecture {found}, but this "
            f"run trains {config.optimizer}"
        )
    return meta


def rollout_keys(
    key: jax.Array, members: int, rollouts: int, antithetic: bool
) -> jax.Array:
    """The generation's inner-run keys on one task.

    Shape ``(rollouts,)``, shared by every member (common random numbers); with
    ``antithetic``, shape ``(members, rollouts)`` where member i and its antithetic
    partner i + members/2 share keys and different pairs differ (OPEN §4.3).
    """
    if not antithetic:
        return jax.random.split(key, rollouts)
    pairs = jax.random.split(key, (members // 2, rollouts))
    return jnp.concatenate([pairs, pairs])


class MetaTrainer:
    """Meta-trains a learned optimizer; see :func:`meta_train`."""

    def __init__(self, config: MetaTrainConfig, devices: list | None = None):
        self.config = config
        template = zeros_meta_params(config.optimizer)
        # One family per task: the noise mask depends on the task's algorithm.
        self.families = [
            learned_family(template, config.optimizer, noise_mask=t.config.noise_mask())
            for t in config.tasks
        ]
        self.antithetic = config.tasks[0].antithetic_tasks  # then the only task
        self.strategy = strategy.make_strategy(
            config.es, template, shaped_outside=self.antithetic
        )
        mesh = member_mesh(config.es.population_size, devices)
        self.populations = [
            Executor(
                t.config,
                family,
                members=True,
                keys_per_member=self.antithetic,
                mesh=mesh,
                select=tail_return(t.config.num_updates, config.es.fitness_window),
                keep_state=False,
            )
            for t, family in zip(config.tasks, self.families, strict=True)
        ]
        self.heldout = [
            Executor(
                t.config,
                family,
                select=tail_return(t.config.num_updates),
                keep_state=False,
            )
            for t, family in zip(config.tasks, self.families, strict=True)
        ]
        self.master_key = jax.random.key(config.seed)
        self.unravel = lambda flat: unravel_meta_params(flat, config.optimizer)
        self.frames_per_generation = (
            config.es.population_size
            * config.es.num_rollouts
            * sum(t.config.num_frames for t in config.tasks)
        )

    def reseeded(self, config: MetaTrainConfig, seed: int) -> MetaTrainer:
        """This trainer (its compiled evaluations) for ``config``, a run of the
        same tasks, population and optimizer, drawing from ES seed ``seed``."""
        trainer = copy.copy(self)
        trainer.config = config
        trainer.master_key = jax.random.key(seed)
        return trainer

    def init_state(self, mean: Any = None) -> Any:
        """The ES state before generation 0, from ``mean`` (default: the
        configuration's ``init_from``: zeros, the signum start or a file)."""
        key = jax.random.fold_in(self.master_key, INIT_STREAM)
        mean = _initial_mean(self.config) if mean is None else mean
        return strategy.init_state(self.strategy, key, mean)

    def generation(self, state: Any, generation: int) -> tuple[Any, dict]:
        """One generation: returns the new state and its raw fitness per task."""
        key = jax.random.fold_in(self.master_key, generation)
        key_ask, key_tell, key_rollouts = jax.random.split(key, 3)
        params = self.strategy.default_params
        sigma = float(state.std)  # the one this generation's population is drawn with
        population, state = self.strategy.ask(key_ask, state, params)
        raw = []
        for i, executor in enumerate(self.populations):
            keys = rollout_keys(
                jax.random.fold_in(key_rollouts, i),
                self.config.es.population_size,
                self.config.es.num_rollouts,
                self.antithetic,
            )
            metrics, _ = executor(keys, population)
            raw.append(jnp.asarray(final_return(metrics)).mean(axis=1))
        if self.antithetic:
            fitness = pairwise(raw[0])
        else:
            fitness = combine_tasks(raw, [t.baseline_return for t in self.config.tasks])
        state, _ = self.strategy.tell(
            key_tell, population, to_minimisation(fitness), state, params
        )
        # Identical everywhere on identical hardware; process 0's copy is made
        # everyone's so that mixed hosts cannot drift apart (no-op on one process).
        state = distributed.broadcast(state)
        return state, {
            "raw": [np.asarray(r) for r in raw],
            "fitness": fitness,
            "sigma": sigma,
        }

    def solution(self, state: Any) -> Any:
        """The current optimizer's meta-parameters (ES mean or GA's best)."""
        return self.unravel(strategy.current_solution(self.strategy, state))

    def evaluate_heldout(self, meta_params: Any) -> dict:
        """Final returns of ``meta_params`` on the held-out seeds, per task."""
        seeds = range(
            self.config.eval_seed_base,
            self.config.eval_seed_base + self.config.num_eval_seeds,
        )
        out = {}
        for task, executor in zip(self.config.tasks, self.heldout, strict=True):
            metrics, _ = executor(seed_keys(list(seeds)), meta_params)
            returns = np.asarray(final_return(metrics))
            out[task.config.env] = {
                "mean": float(returns.mean()),
                "iqm": iqm(returns),
                "returns": [float(x) for x in returns],
                "non_finite": int(np.sum(~np.isfinite(returns))),
            }
        return out

    def non_finite(self, state: Any) -> int:
        """How many values of the current solution (the ES mean) are not finite."""
        flat = np.asarray(strategy.current_solution(self.strategy, state))
        return int(np.sum(~np.isfinite(flat)))


def _interrupted(run_dir: Path, done: int, state: Any) -> dict:
    """Checkpoints the state after ``done`` generations (if not already) and
    returns what :func:`meta_train` reports for a run stopped there."""
    path = checkpoint.checkpoint_path(run_dir, done)
    if done > 0 and checkpoint.verify_checkpoint(path) is not None:
        path = checkpoint.save_checkpoint(run_dir, done, state)
    return {
        "interrupted": True,
        "generation": done,
        "checkpoint": str(path) if done > 0 else None,
    }


def tail_return(num_updates: int, window: float = 0.0) -> Callable[[dict], dict]:
    """What meta-training reads of an inner run of ``num_updates`` updates: its
    mean return over the last ``max(1, round(window * num_updates))`` updates, shape
    ``(..., 1)`` (so :func:`final_return` reads it); window 0: the last return, as
    held-out runs are read."""
    last = max(1, round(window * num_updates))
    return lambda metrics: {
        "return": metrics["return"][..., -last:].mean(axis=-1, keepdims=True)
    }


def _card(config: MetaTrainConfig, generations: int, heldout: dict | None):
    """The optimizer's card (:mod:`lopt.optim.card`): its tasks and horizons, the
    ES settings, and the held-out return when it was just measured."""
    tasks = [
        task_card(
            t.config,
            t.algo,
            preset=t.preset,
            baseline_return=t.baseline_return,
            heldout_return=(heldout or {}).get(t.config.env, {}).get("mean"),
        )
        for t in config.tasks
    ]
    return make_card(
        config.optimizer,
        tasks,
        es=dataclasses.asdict(config.es),
        generations=generations,
        seed=config.seed,
        heldout_seeds=config.num_eval_seeds,
    )


def _stats(values: np.ndarray) -> dict:
    """Mean, max and min of the finite values (None if there are none)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"mean": None, "max": None, "min": None, "non_finite": int(values.size)}
    return {
        "mean": float(finite.mean()),
        "max": float(finite.max()),
        "min": float(finite.min()),
        "non_finite": int(values.size - finite.size),
    }


def _fitness_record(config: MetaTrainConfig, raw: list, fitness) -> dict:
    record = {t.config.env: _stats(r) for t, r in zip(config.tasks, raw, strict=True)}
    record["combined"] = _stats(np.asarray(fitness))
    return record


def _rewrite_metrics(run_dir: Path, records: list[dict]) -> None:
    text = "".join(json_text(r) + "\n" for r in records)
    atomic_write(Path(run_dir) / METRICS_FILE, lambda f: f.write(text.encode()))


def _append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a") as f:
        f.write(json_text(record) + "\n")
        f.flush()


def probe_dir(run_dir: Path, seed: int) -> Path:
    """The run directory of the probe with ES seed ``seed``."""
    return Path(run_dir) / PROBES_DIR / f"seed{seed}"


def heldout_score(config: MetaTrainConfig, heldout: dict) -> float:
    """What probes are compared by: the held-out IQM, divided by the task's
    baseline return and averaged over tasks (-inf if not finite)."""
    score = float(
        np.mean(
            [heldout[t.config.env]["iqm"] / t.baseline_return for t in config.tasks]
        )
    )
    return score if np.isfinite(score) else -np.inf


def total_generations(config: MetaTrainConfig) -> int:
    """Generations a run computes, its probes' included."""
    es = config.es
    return es.num_generations + (es.probes - 1) * es.probe_generations


def generations_done(run_dir: Path, config: MetaTrainConfig) -> int:
    """Generations a run directory's checkpoints hold, its probes' included
    (what a resumed run need not compute again)."""
    done = checkpoint.resume_generation(run_dir)
    if config.es.probes == 1:
        return done
    probes = sum(
        checkpoint.resume_generation(probe_dir(run_dir, s)) for s in config.probe_seeds
    )
    return probes + max(0, done - config.es.probe_generations)


def _run_probes(
    config: MetaTrainConfig,
    run_dir: Path,
    trainer: MetaTrainer,
    on_generation=None,
    **options,
) -> dict:
    """Runs each probe (resuming those begun) for ``probe_generations``, then
    makes the one with the best held-out score this run's start: its last
    checkpoint and metrics become the run's, and ``probes.json`` records the
    choice (written last: until then a resumed run chooses again, identically).

    Returns ``{"seed": the chosen probe's ES seed}``, or a probe's interrupted
    summary with its ``probe_seed``.
    """
    writer = distributed.is_writer()
    seeds = config.probe_seeds
    record = Path(run_dir) / PROBES_FILE
    chosen = -1
    if writer and record.exists():
        chosen = seeds.index(json.loads(record.read_text())["chosen_seed"])
    chosen = int(distributed.broadcast(jnp.int32(chosen)))
    if chosen >= 0:
        return {"seed": seeds[chosen]}
    for seed in seeds:
        where = probe_dir(run_dir, seed)
        finished = writer and (where / SUMMARY_FILE).exists()
        begun = writer and checkpoint.latest_checkpoint(where) is not None
        finished, begun = (
            bool(x)
            for x in distributed.broadcast((jnp.bool_(finished), jnp.bool_(begun)))
        )
        if finished:
            continue
        if writer:
            where.mkdir(parents=True, exist_ok=True)
        tagged = None
        if on_generation is not None:
            tagged = lambda r, s=seed: on_generation({**r, "probe_seed": s})  # noqa: E731
        probe = config.probe(seed)
        out = meta_train(
            probe,
            where,
            resume=begun,
            on_generation=tagged,
            trainer=trainer.reseeded(probe, seed),
            **options,
        )
        if out.get("interrupted"):
            return {**out, "probe_seed": seed}
    scores = []
    if writer:
        for seed in seeds:
            summary = json.loads((probe_dir(run_dir, seed) / SUMMARY_FILE).read_text())
            scores.append(heldout_score(config, summary["heldout"]))
    best = int(distributed.broadcast(jnp.int32(np.argmax(scores) if writer else 0)))
    if writer:
        where = probe_dir(run_dir, seeds[best])
        generations = config.es.probe_generations
        checkpoint.copy_checkpoint(where, run_dir, generations)
        records = read_metrics(where)
        # The run's clock has run through every probe.
        records[-1]["wall_time_s"] = sum(
            read_metrics(probe_dir(run_dir, s))[-1]["wall_time_s"] for s in seeds
        )
        _rewrite_metrics(run_dir, records)
        write_json(
            record,
            {
                "generations": generations,
                "heldout_score": dict(zip(map(str, seeds), scores, strict=True)),
                "chosen_seed": seeds[best],
            },
        )
    return {"seed": seeds[best]}


def meta_train(
    config: MetaTrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    command: list[str] | None = None,
    versions: dict | None = None,
    on_generation: Callable[[dict], None] | None = None,
    devices: list | None = None,
    stop: Callable[[], bool] | None = None,
    notify: Callable[[str], None] | None = None,
    trainer: MetaTrainer | None = None,
) -> dict:
    """Runs (or resumes) meta-training and writes everything to ``run_dir``.

    With ``config.es.probes`` > 1 the run first runs each probe (a plain run of
    its own ES seed, in ``probes/seed<S>/``) for ``probe_generations``, then
    continues the one with the best held-out score (:func:`heldout_score`) as if
    it had been started alone: the result is the plain run of the chosen seed.

    Args:
      config: the run's settings.
      run_dir: the run directory (created and checked by the caller).
      resume: continue from the newest good checkpoint in ``run_dir``; ``config``
        must be the run's own, with any number of generations from those done.
      command, versions: recorded in ``config.json`` (a resumed run's command is
        added to its ``resumed`` list).
      on_generation: called with each generation's metrics record.
      devices: JAX devices to shard the population over (default: every
        process's).
      stop: asked at each generation boundary; True checkpoints the state
        there and returns (an interrupted run, resumable).
      notify: told, in a sentence, of damaged checkpoints skipped on resuming
        (default: a warning).
      trainer: a :class:`MetaTrainer` of the same tasks, population and
        optimizer to reuse (its compiled evaluations), reseeded for this run.

    Returns:
      A summary: the last held-out evaluation and the optimizer's path (on
      processes other than 0, which write nothing: only the generation count); or, when
      ``stop`` ended the run, ``{"interrupted": True, "generation": G,
      "checkpoint": path}`` (no ``optimizer.npy`` or ``summary.json`` written).

    Raises:
      MetaTrainingError: settings that differ from a resumed run's, or fewer
        generations than it has done.
      MetaTrainingDivergedError: the ES mean stopped being finite (nothing of that
        generation is written; earlier checkpoints stay).
      CheckpointError: a resumed run whose checkpoints are all damaged.
    """
    run_dir = Path(run_dir)
    writer = distributed.is_writer()
    if resume and writer:
        check_resume(read_config(run_dir), config)
    if writer and not resume:
        write_json(
            run_dir / CONFIG_FILE,
            {
                "command": command or [],
                "versions": versions or {},
                "config": to_dict(config),
            },
        )
        _rewrite_metrics(run_dir, [])
    es_seed = config.seed
    if trainer is None:
        trainer = MetaTrainer(config, devices)
    if config.es.probes > 1:
        chosen = _run_probes(
            config,
            run_dir,
            trainer=trainer,
            command=command,
            versions=versions,
            on_generation=on_generation,
            devices=devices,
            stop=stop,
            notify=notify,
        )
        if chosen.get("interrupted"):
            return chosen
        es_seed = chosen["seed"]
    trainer = trainer.reseeded(config, es_seed)
    # Only process 0 reads files (the run directory may exist on its host alone);
    # the others start from a state of the right shape and receive its values.
    state = trainer.init_state(None if writer else zeros_meta_params(config.optimizer))
    start, elapsed_before = 0, 0.0
    # With probes, the chosen probe's last checkpoint is this run's first.
    if (resume or config.es.probes > 1) and writer:
        done = checkpoint.resume_generation(run_dir)
        if config.es.num_generations < done:
            raise MetaTrainingError(
                f"{run_dir} has done {done} generations; --generations "
                f"{config.es.num_generations} would end before them: give "
                f"{done} or more"
            )
        if resume:
            saved = json.loads((run_dir / CONFIG_FILE).read_text())
            saved["config"] = to_dict(config)
            saved["resumed"] = [*saved.get("resumed", []), command or []]
            write_json(run_dir / CONFIG_FILE, saved)
        start, state = checkpoint.load_latest(
            run_dir, state, report=notify or warnings.warn
        )
        records = read_metrics(run_dir)
        # Generations after the checkpoint are recomputed, identically.
        records = [r for r in records if start > 0 and r["generation"] <= start]
        _rewrite_metrics(run_dir, records)
        if records:
            elapsed_before = records[-1]["wall_time_s"]
    start, state = distributed.broadcast((jnp.int32(start), state))
    start = int(start)

    clock = time.perf_counter()

    def wall() -> float:
        return elapsed_before + time.perf_counter() - clock

    if start == 0 and writer:
        record = {"generation": 0, "wall_time_s": 0.0}
        record["heldout"] = trainer.evaluate_heldout(trainer.solution(state))
        record["wall_time_s"] = wall()
        _append_metrics(run_dir, record)
        if on_generation:
            on_generation(record)

    lr_at = strategy.lr_schedule(config.es)
    es = config.es
    for generation in range(start, es.num_generations):
        # Every process stops at the same boundary: process 0's answer.
        stopping = bool(distributed.broadcast(jnp.bool_(stop is not None and stop())))
        if stopping:
            if not writer:
                return {"interrupted": True, "generation": generation}
            return _interrupted(run_dir, generation, state)
        gen_start = time.perf_counter()
        state, result = trainer.generation(state, generation)
        jax.block_until_ready(state)
        seconds = time.perf_counter() - gen_start
        done = generation + 1
        bad = trainer.non_finite(state)
        if bad:
            last = checkpoint.latest_checkpoint(run_dir)
            kept = (
                f"the last good checkpoint is {last}"
                if last is not None
                else "no checkpoint was written before it"
            )
            raise MetaTrainingDivergedError(
                f"generation {done}: the ES mean (the optimizer being trained) is no "
                f"longer finite ({bad} of {config.optimizer.num_meta_params} values); "
                f"nothing of this generation was written and {kept}. Start again "
                "with a smaller --lr or --sigma"
            )
        record = {
            "generation": done,
            "fitness": _fitness_record(config, result["raw"], result["fitness"]),
            "sigma": result["sigma"],
            "lr": float(lr_at(generation)) if es.strategy == "open-es" else None,
            "generation_time_s": seconds,
            "env_steps_per_second": trainer.frames_per_generation / seconds,
        }
        if not writer:
            if on_generation:
                on_generation(record)
            continue
        if done % config.eval_every == 0 or done == es.num_generations:
            record["heldout"] = trainer.evaluate_heldout(trainer.solution(state))
        if done % config.save_every == 0 or done == es.num_generations:
            checkpoint.save_checkpoint(run_dir, done, state)
            save_learned(
                run_dir / "checkpoints" / f"optimizer_gen{done:06d}.npy",
                trainer.solution(state),
                config.optimizer,
                card=_card(config, done, record.get("heldout")),
                generation=done,
            )
        record["wall_time_s"] = wall()
        _append_metrics(run_dir, record)
        if on_generation:
            on_generation(record)

    if not writer:
        return {"generations": es.num_generations, "wall_time_s": wall()}
    last = [r for r in read_metrics(run_dir) if "heldout" in r][-1]
    optimizer_path = save_learned(
        run_dir / OPTIMIZER_FILE,
        trainer.solution(state),
        config.optimizer,
        card=_card(config, es.num_generations, last["heldout"]),
        generation=es.num_generations,
        strategy=es.strategy,
        envs=[t.config.env for t in config.tasks],
    )
    summary = {
        "optimizer": str(optimizer_path),
        "generations": es.num_generations,
        "heldout": last["heldout"],
        "initial_heldout": read_metrics(run_dir)[0].get("heldout"),
        "wall_time_s": wall(),
    }
    if es.probes > 1:
        summary["probes"] = json.loads((run_dir / PROBES_FILE).read_text())
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary
