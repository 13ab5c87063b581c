"""What every study shares: its options, its plan of jobs, running the plan
(resumably) and the study's report.

A study module (:mod:`lopt.studies.released`, ...) turns :class:`Options` into a
:class:`Plan`: jobs run in order (meta-train a learned optimizer, tune a
hand-crafted one, evaluate optimizers on an environment over seeds, or a job of
its own such as a timing), and parts, each a set of evaluated (environment,
optimizer) pairs that is analysed like ``lopt eval`` (tables with intervals,
figures, ``report.html``). The study then reads the parts and decides its claims
(:mod:`lopt.studies.claims`). Layout of a study's directory::

    plan.json                 what was planned (checked on --resume)
    meta/<job>/               lopt meta-train's run directory
    tune/<job>/               lopt tune's directory (tuned.json)
    runs/<job>/               lopt eval's curves and config, done.json when done
    custom/<job>/result.json  a study's own job (timings)
    <part>/                   lopt eval's report of one part
    report.md, report.html    the claims, the jobs and their times, every table
    claims.json               the claims, their verdicts, numbers and rules
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lopt.analysis.report import analyse, tables, write_document
from lopt.atomic import write_json
from lopt.configs.presets import preset_for
from lopt.configs.tuned import read_tuned
from lopt.envs.registry import canonical_name
from lopt.meta.config import MetaTrainConfig
from lopt.runs.evaluation import (
    Curves,
    eval_optimizer,
    read_curves,
    replace_checked,
    replace_settings,
    run_evaluation,
)
from lopt.runs.records import versions
from lopt.runs.tuning import TunePlan, run_tuning, write_tuning
from lopt.studies.claims import RULES, Claim, format_numbers

#: ``smoke``: seconds, checks the machinery (no claim is meaningful); ``cpu``: the
#: largest budget that fits the study's stated time on 2 CPU cores; ``paper``:
#: the paper's settings (GPUs).
SCALES = ("smoke", "cpu", "paper")
#: Hand-crafted baselines are tuned on seeds from here on, never evaluated on.
TUNING_SEED_BASE = 2_000_000
#: Optional suites: the environment prefix, the module, the lopt extra.
SUITES = {"brax": ("brax", "brax"), "craftax": ("craftax", "craftax")}
PRETRAINED_ENV = "LOPT_PRETRAINED"


def pretrained_dir() -> Path:
    """Where the paper's released optimizers are read from: ``$LOPT_PRETRAINED``,
    else ``../shared/pretrained`` beside the lopt checkout."""
    if os.environ.get(PRETRAINED_ENV):
        return Path(os.environ[PRETRAINED_ENV])
    return Path(__file__).resolve().parents[3].parent / "shared/pretrained"


#: Two updates of a tiny agent (any PPO or PQN preset): the machinery, not the
#: result.
SMOKE = (
    ("num_envs", 4),
    ("num_steps", 8),
    ("total_timesteps", 64),
    ("update_epochs", 1),
    ("num_minibatches", 2),
)


class StudyError(ValueError):
    """A study that cannot be planned or resumed as asked."""


@dataclasses.dataclass(frozen=True)
class Options:
    """What ``lopt study`` passes to every study."""

    scale: str = "cpu"
    envs: tuple[str, ...] | None = None
    """a subset of the study's environments or parts (each study names its own)"""
    seeds: int | None = None
    """evaluation seeds (default: the scale's)"""
    seed: int = 0
    """first evaluation seed"""
    tuned: tuple[Path, ...] = ()
    """tuned.json files (lopt tune) for the hand-crafted baselines, each used on
    the environment, algorithm and preset it was tuned for"""
    tune: bool | None = None
    """tune the baselines that have no tuned file (default: at paper scale)"""
    generations: int | None = None
    """ES generations of every meta-training job (default: the scale's)"""
    population: int | None = None
    """ES population of every meta-training job (default: the scale's)"""
    reps: int = 2000
    """bootstrap resamples"""
    pretrained: Path | None = None
    """the folder of the paper's released optimizers (default:
    :func:`pretrained_dir`)"""

    def __post_init__(self):
        if self.scale not in SCALES:
            raise StudyError(
                f"unknown scale {self.scale!r}; choose from {', '.join(SCALES)}"
            )
        if self.seeds is not None and self.seeds < 2:
            raise StudyError("--seeds must be at least 2 for confidence intervals")

    def released(self, name: str) -> Path:
        """The released optimizer ``<name>_OPEN.npy``.

        Raises:
          StudyError: it is not there.
        """
        folder = Path(self.pretrained) if self.pretrained else pretrained_dir()
        path = folder / f"{name}_OPEN.npy"
        if not path.is_file():
            raise StudyError(
                f"the released optimizer {path.name} is not in {folder}; pass "
                f"--pretrained DIR or set {PRETRAINED_ENV} (the files are in "
                "AlexGoldie/rl-learned-optimization, rl_optimizer/pretrained)"
            )
        return path

    def eval_seeds(self, default: int) -> tuple[int, ...]:
        count = self.seeds or default
        return tuple(range(self.seed, self.seed + count))

    def pick(self, available: Sequence[str], default: Sequence[str] | None = None):
        """The study's environments (or parts) that ``envs`` selects, in the
        study's order; every name must be one of ``available``."""
        if self.envs is None:
            return list(default if default is not None else available)
        unknown = [e for e in self.envs if e not in available]
        if unknown:
            raise StudyError(
                f"unknown --envs {', '.join(unknown)}; this study has "
                f"{', '.join(available)}"
            )
        return [e for e in available if e in self.envs]

    def tuned_file(self, env: str, optimizer: str, algo: str, preset: str):
        """The ``tuned`` file of ``optimizer`` on this environment, algorithm and
        preset, or None."""
        for path in self.tuned:
            settings = read_tuned(path)
            if (
                settings.env == canonical_name(env)
                and settings.optimizer == optimizer
                and settings.algo == algo
                and settings.preset == preset
            ):
                return Path(path)
        return None


# JOBS ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetaJob:
    """Meta-train one learned optimizer (``lopt meta-train``); later jobs name
    its optimizer as the spec ``meta:<name>``."""

    name: str
    config: MetaTrainConfig
    kind = "meta-train"

    def frames(self) -> int:
        config = self.config
        per_run = [t.config.num_frames for t in config.tasks]
        es = config.es
        evals = es.num_generations // config.eval_every + 1
        return es.population_size * es.num_rollouts * sum(
            per_run
        ) * es.num_generations + evals * config.num_eval_seeds * sum(per_run)

    def describe(self) -> str:
        es = self.config.es
        tasks = ", ".join(
            f"{t.algo} on {t.config.env} ({t.config.num_frames:,} frames)"
            for t in self.config.tasks
        )
        return (
            f"{self.config.optimizer.variant} "
            f"({self.config.optimizer.num_meta_params} meta-parameters) on {tasks}; "
            f"population {es.population_size}, {es.num_generations} generations"
        )


@dataclasses.dataclass(frozen=True)
class TuneJob:
    """Grid-search a hand-crafted optimizer on tuning seeds (``lopt tune``);
    later jobs name its best setting as the spec ``tunejob:<name>``."""

    name: str
    plan: TunePlan
    kind = "tune"

    def frames(self) -> int:
        config = self.plan.config
        return len(self.plan.settings) * len(self.plan.seeds) * config.num_frames

    def describe(self) -> str:
        plan = self.plan
        return (
            f"{plan.grid.optimizer} on {plan.env}: {len(plan.settings)} settings x "
            f"{len(plan.seeds)} tuning seeds ({plan.seeds[0]}..{plan.seeds[-1]})"
        )


@dataclasses.dataclass(frozen=True)
class EvalJob:
    """Evaluate optimizers on one environment over seeds (``lopt eval``).

    ``optimizers`` are ``(label, spec)``: the label names the optimizer in the
    study's tables; the spec is anything ``lopt eval`` takes, or ``meta:<job>``
    / ``tunejob:<job>`` for an earlier job's result.
    """

    name: str
    env: str
    optimizers: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]
    algo: str = "ppo"
    preset: str = "default"
    overrides: tuple[tuple[str, Any], ...] = ()
    """settings of the algorithm changed from the preset's"""
    sweep: tuple[str, tuple] | None = None
    """one task per value of a setting (``lopt eval --sweep``)"""
    task: str | None = None
    """the environment's name in the tables (default its canonical name)"""
    kind = "eval"

    def configs(self) -> list[tuple[str, Any]]:
        """``(task, config)`` per task, checked (a ValueError names what is wrong)."""
        config = preset_for(self.env, self.preset, self.algo).config
        config = replace_settings(config, dict(self.overrides))
        name = self.task or canonical_name(self.env)
        if self.sweep is None:
            return [(name, config)]
        field, values = self.sweep
        return [
            (f"{name}[{field}={v}]", replace_checked(config, field, v)) for v in values
        ]

    def frames(self) -> int:
        per_task = [c.num_frames for _, c in self.configs()]
        return sum(per_task) * len(self.seeds) * len(self.optimizers)

    def describe(self) -> str:
        config = self.configs()[0][1]
        labels = ", ".join(label for label, _ in self.optimizers)
        sweep = f", {self.sweep[0]} in {list(self.sweep[1])}" if self.sweep else ""
        return (
            f"{labels} on {self.task or canonical_name(self.env)} ({self.algo}, "
            f"preset {self.preset}"
            + "".join(f", {k}={v}" for k, v in self.overrides)
            + f"{sweep}; {config.num_updates} updates of "
            f"{config.frames_per_update:,} frames), {len(self.seeds)} seeds "
            f"({self.seeds[0]}..{self.seeds[-1]})"
        )


@dataclasses.dataclass(frozen=True)
class CustomJob:
    """A study's own job: ``run(directory) -> dict`` (JSON), e.g. timings."""

    name: str
    description: str
    run: Callable[[Path], dict]
    env_frames: int = 0
    kind = "custom"

    def frames(self) -> int:
        return self.env_frames

    def describe(self) -> str:
        return self.description


Job = MetaJob | TuneJob | EvalJob | CustomJob


@dataclasses.dataclass(frozen=True)
class Part:
    """Pairs of evaluation jobs analysed together (one ``lopt eval`` report)."""

    name: str
    title: str
    jobs: tuple[str, ...]
    labels: tuple[str, ...]
    """the optimizers (labels) of those jobs to include, in table order"""
    reference: str = "Adam"


@dataclasses.dataclass
class Plan:
    """A study's jobs and parts at one scale, with what qualifies its results."""

    study: str
    options: Options
    jobs: list[Job]
    parts: list[Part]
    notes: list[str] = dataclasses.field(default_factory=list)
    untuned: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """baseline label -> environments where it runs untuned"""

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)

    def frames(self) -> int:
        return sum(j.frames() for j in self.jobs)

    def describe(self) -> list[str]:
        """The plan in words: one line per job, then the notes."""
        lines = [
            f"lopt study {self.study} --scale {self.options.scale}: "
            f"{len(self.jobs)} job(s), {self.frames():,} environment steps in all"
        ]
        for job in self.jobs:
            lines.append(
                f"  {job.kind:>10} {job.name}: {job.describe()} "
                f"[{job.frames():,} steps]"
            )
        for part in self.parts:
            lines.append(
                f"  {'report':>10} {part.name}: {part.title} "
                f"({', '.join(part.labels)}; reference {part.reference})"
            )
        lines += [f"  note: {note}" for note in self.notes]
        return lines


@dataclasses.dataclass
class Results:
    """What the jobs produced: per part the eval summary and curves, per custom
    job its result, per meta job its summary."""

    parts: dict[str, dict]
    curves: dict[str, list[Curves]]
    custom: dict[str, dict]
    meta: dict[str, dict]


def missing_suite(env: str) -> str | None:
    """Why ``env`` cannot run here (its optional suite is not installed), or None."""
    prefix = canonical_name(env).split("/")[0]
    if prefix not in SUITES:
        return None
    module, extra = SUITES[prefix]
    if importlib.util.find_spec(module) is not None:
        return None
    return f"{module} is not installed (pip install 'lopt[{extra}]')"


def meta_spec(out: Path, job: str) -> str:
    return f"learned:{Path(out) / 'meta' / job / 'optimizer.npy'}"


def _resolve(spec: str, out: Path) -> str:
    kind, _, name = spec.partition(":")
    if kind == "meta":
        return meta_spec(out, name)
    if kind == "tunejob":
        return f"tuned:{Path(out) / 'tune' / name / 'tuned.json'}"
    return spec


def validate(plan: Plan) -> None:
    """Checks every job before anything trains: presets, settings, optimizer
    files and specs, references between jobs and parts.

    Raises:
      ValueError (its subclasses), naming the job.
    """
    seen: dict[str, str] = {}
    for job in plan.jobs:
        if job.name in seen:
            raise StudyError(f"two jobs are named {job.name}")
        if isinstance(job, EvalJob):
            try:
                configs = job.configs()
                preset = preset_for(job.env, job.preset, job.algo)
                for label, spec in job.optimizers:
                    kind, _, name = spec.partition(":")
                    if kind in ("meta", "tunejob"):
                        wanted = "meta-train" if kind == "meta" else "tune"
                        if seen.get(name) != wanted:
                            raise StudyError(
                                f"{label}: {spec} names no earlier {wanted} job"
                            )
                    else:
                        eval_optimizer(spec, preset, job.preset, configs[0][1])
            except ValueError as err:
                raise type(err)(f"job {job.name}: {err}") from err
        seen[job.name] = job.kind
    for part in plan.parts:
        for name in part.jobs:
            if seen.get(name) != "eval":
                raise StudyError(f"part {part.name}: no evaluation job {name}")
        if part.reference not in part.labels:
            raise StudyError(f"part {part.name}: its reference is not among its labels")


# RUNNING ------------------------------------------------------------------------


def _bar(total: int, desc: str, enabled: bool, unit: str = "update"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled)


def _run_meta(job: MetaJob, directory: Path, progress: bool) -> dict:
    from lopt.meta.loop import meta_train

    summary_path = directory / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    resume = (directory / "config.json").exists()
    directory.mkdir(parents=True, exist_ok=True)
    bar = _bar(job.config.es.num_generations, job.name, progress, unit="gen")

    def on_generation(record: dict) -> None:
        if "fitness" in record:
            bar.update(1)

    try:
        return meta_train(
            job.config,
            directory,
            resume=resume,
            command=["lopt", "study", job.name],
            versions=versions(),
            on_generation=on_generation,
        )
    finally:
        bar.close()


def _run_tune(job: TuneJob, directory: Path, progress: bool) -> dict:
    if (directory / "tuned.json").exists():
        return json.loads((directory / "summary.json").read_text())
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _bar(job.plan.total_updates, job.name, progress) as bar:
        returns = run_tuning(job.plan, on_progress=bar.update)
    return write_tuning(
        directory, job.plan, returns, time.perf_counter() - start, ["lopt", "study"]
    )


def _run_eval(job: EvalJob, directory: Path, out: Path, progress: bool) -> list[Curves]:
    """The job's curves, renamed to its tasks and labels (read back if done)."""
    done = directory / "done.json"
    if not done.exists():
        bars = []

        def on_pair(env: str, name: str, num_updates: int):
            bar = _bar(num_updates, f"{job.name} {name}", progress)
            bars.append(bar)
            return lambda n: bar.update(n - bar.n)

        try:
            curves = run_evaluation(
                [job.env],
                [_resolve(spec, out) for _, spec in job.optimizers],
                job.seeds,
                directory,
                algo=job.algo,
                preset=job.preset,
                overrides=dict(job.overrides),
                sweep=job.sweep,
                on_pair=on_pair,
                command=["lopt", "study", job.name],
            )
        finally:
            for bar in bars:
                bar.close()
        labels = [label for label, _ in job.optimizers]
        pairs = [
            [c.env, c.optimizer, labels[i % len(labels)]] for i, c in enumerate(curves)
        ]
        write_json(done, {"pairs": pairs})
    pairs = json.loads(done.read_text())["pairs"]
    tasks = [task for task, _ in job.configs()]
    found = []
    for i, (env, name, label) in enumerate(pairs):
        curves = read_curves(directory, env, name)
        task = tasks[i // len(job.optimizers)]
        found.append(dataclasses.replace(curves, env=task, optimizer=label))
    return found


def _check_resume(plan: Plan, out: Path, resume: bool) -> None:
    lines = plan.describe()
    path = out / "plan.json"
    if resume and path.exists():
        before = json.loads(path.read_text())["plan"]
        if before != lines:
            raise StudyError(
                f"{out} holds a study planned differently; resume it with the "
                "options it was started with (see its plan.json), or use a new --out"
            )
    write_json(path, {"plan": lines, "options": _jsonable(plan.options)})


def _jsonable(options: Options) -> dict:
    data = dataclasses.asdict(options)
    data["tuned"] = [str(p) for p in options.tuned]
    data["pretrained"] = None if options.pretrained is None else str(options.pretrained)
    return data


def run_plan(
    plan: Plan, out: Path, *, resume: bool = False, progress: bool = True
) -> tuple[Results, dict[str, float], dict[str, float]]:
    """Runs every job of ``plan`` (those already done in ``out`` are read back
    when ``resume``) and analyses every part.

    Returns:
      ``(results, wall seconds per job, CPU seconds per job)`` (about 0 for a job
      read back).
    """
    out = Path(out)
    _check_resume(plan, out, resume)
    timings_path = out / "timings.json"
    timings = (
        json.loads(timings_path.read_text()) if resume and timings_path.exists() else {}
    )
    curves: dict[str, list[Curves]] = {}
    custom: dict[str, dict] = {}
    meta: dict[str, dict] = {}
    cpu_path = out / "cpu_times.json"
    cpu_times = json.loads(cpu_path.read_text()) if resume and cpu_path.exists() else {}
    for job in plan.jobs:
        start, cpu_start = time.perf_counter(), time.process_time()
        if isinstance(job, MetaJob):
            meta[job.name] = _run_meta(job, out / "meta" / job.name, progress)
        elif isinstance(job, TuneJob):
            _run_tune(job, out / "tune" / job.name, progress)
        elif isinstance(job, EvalJob):
            curves[job.name] = _run_eval(job, out / "runs" / job.name, out, progress)
        else:
            path = out / "custom" / job.name / "result.json"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json(path, job.run(path.parent))
            custom[job.name] = json.loads(path.read_text())
        elapsed = time.perf_counter() - start
        timings[job.name] = timings.get(job.name, 0.0) + elapsed
        write_json(timings_path, timings)
        # The process's CPU time (all threads): on a machine shared with other
        # jobs it tells what the job itself cost, which wall time does not.
        cpu = time.process_time() - cpu_start
        cpu_times[job.name] = cpu_times.get(job.name, 0.0) + cpu
        write_json(cpu_path, cpu_times)
    parts, part_curves = {}, {}
    for part in plan.parts:
        chosen = [
            c for name in part.jobs for c in curves[name] if c.optimizer in part.labels
        ]
        chosen.sort(key=lambda c: part.labels.index(c.optimizer))
        order = list(dict.fromkeys(c.env for c in chosen))
        chosen.sort(key=lambda c: order.index(c.env))
        part_curves[part.name] = chosen
        parts[part.name] = analyse(
            chosen,
            out / part.name,
            reference=part.reference,
            reps=plan.options.reps,
            seed=plan.options.seed,
            command=["lopt", "study", plan.study, "--scale", plan.options.scale],
            versions=versions(),
        )
    return Results(parts, part_curves, custom, meta), timings, cpu_times


# THE REPORT ---------------------------------------------------------------------


def claims_table(claims: Sequence[Claim]) -> tuple[str, list[str], list[list[str]]]:
    rows = [
        [c.text, c.source, c.verdict, format_numbers(c.numbers), c.note] for c in claims
    ]
    return ("claims", ["claim", "source", "verdict", "numbers", "note"], rows)


def write_study_report(
    plan: Plan,
    results: Results,
    claims: Sequence[Claim],
    timings: dict[str, float],
    cpu_times: dict[str, float],
    out: Path,
    *,
    summary: str,
    command: Sequence[str],
    figures: Sequence[Path] = (),
    extra_tables: Sequence[tuple[str, list[str], list[list[str]]]] = (),
) -> dict:
    """Writes ``report.md``, ``report.html`` and ``claims.json``; returns the
    claims' record."""
    out = Path(out)
    rules = sorted({c.rule for c in claims})
    record = {
        "study": plan.study,
        "scale": plan.options.scale,
        "options": _jsonable(plan.options),
        "claims": [dataclasses.asdict(c) for c in claims],
        "rules": {r: RULES[r] for r in rules},
        "notes": plan.notes,
        "timings_s": timings,
        "cpu_times_s": cpu_times,
        "command": list(command),
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(out / "claims.json", record)
    paragraphs = [
        ("text", summary),
        ("code", f"Command: {' '.join(command)}"),
        (
            "text",
            f"Scale: {plan.options.scale}. Versions: "
            + ", ".join(f"{k} {v}" for k, v in record["versions"].items())
            + f". Date: {record['date']}.",
        ),
        *(("text", f"Rule ({r}): {RULES[r]}.") for r in rules),
        *(("text", f"Note: {note}") for note in plan.notes),
        *(
            ("link", f"part {p.name}: {p.title}|{p.name}/report.html")
            for p in plan.parts
        ),
    ]
    jobs = (
        "jobs",
        ["job", "kind", "what", "environment steps", "wall time (s)", "CPU time (s)"],
        [
            [
                j.name,
                j.kind,
                j.describe(),
                f"{j.frames():,}",
                f"{timings.get(j.name, 0.0):.0f}",
                f"{cpu_times.get(j.name, 0.0):.0f}",
            ]
            for j in plan.jobs
        ],
    )
    part_tables = [
        (f"{part.title}: {title}", header, rows)
        for part in plan.parts
        for title, header, rows in tables(results.parts[part.name])
    ]
    write_document(
        out,
        f"lopt study {plan.study}",
        paragraphs,
        [claims_table(claims), *extra_tables, jobs, *part_tables],
        [f for f in figures if f.suffix == ".png"],
    )
    return record


# BASELINES -----------------------------------------------------------------------

#: Table labels of the hand-crafted optimizers.
LABELS = {"adam": "Adam", "rmsprop": "RMSprop", "lion": "Lion", "sgd": "SGD"}
#: Tuning seeds per scale.
TUNING_SEEDS = {"smoke": 2, "cpu": 4, "paper": 8}


def baselines(
    plan: Plan,
    env: str,
    optimizers: Sequence[str],
    *,
    algo: str = "ppo",
    preset: str = "default",
    overrides: tuple[tuple[str, Any], ...] = (),
    paper_tuned: Sequence[str] = ("adam",),
) -> list[tuple[str, str]]:
    """``(label, spec)`` of each hand-crafted baseline on one environment.

    In order of preference: a ``--tuned`` file for it; the preset's values where
    they are the paper's tuned ones (``paper_tuned``: Adam's on MinAtar, Ant and
    the gridworld, OPEN §6); a tuning job on tuning seeds (``--tune``, the default
    at paper scale), added to ``plan``; else the preset's starting point, which
    :func:`untuned_note` reports.
    """
    from lopt.runs.tuning import make_grid, plan_tuning

    options = plan.options
    tune = options.tune if options.tune is not None else options.scale == "paper"
    out = []
    for name in optimizers:
        label = LABELS[name]
        path = options.tuned_file(env, name, algo, preset)
        if path is not None:
            out.append((label, f"tuned:{path}"))
        elif name in paper_tuned:
            out.append((label, name))
        elif tune:
            job = f"tune-{canonical_name(env).replace('/', '-')}-{name}"
            if not any(j.name == job for j in plan.jobs):
                seeds = range(
                    TUNING_SEED_BASE, TUNING_SEED_BASE + TUNING_SEEDS[options.scale]
                )
                tuning = plan_tuning(
                    env, make_grid(name), list(seeds), algo=algo, preset=preset
                )
                config = replace_settings(tuning.config, dict(overrides))
                tuning = dataclasses.replace(tuning, config=config)
                plan.jobs.append(TuneJob(job, tuning))
            out.append((label, f"tunejob:{job}"))
        else:
            out.append((label, name))
            plan.untuned.setdefault(label, []).append(canonical_name(env))
    return out


#: What an untuned baseline runs at.
STARTING_POINTS = {
    "Adam": "the preset's Adam, tuned for the preset's own budget, not this one",
    "RMSprop": "Adam's learning rate / 3, decay 0.99, annealed",
    "Lion": "Adam's learning rate / 10, b1 0.9, b2 0.99, annealed",
}


def untuned_note(plan: Plan) -> None:
    """Adds to ``plan.notes`` which baselines run at their presets' starting
    points (not tuned), if any."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for label, envs in plan.untuned.items():
        groups.setdefault(tuple(envs), []).append(label)
    for envs, labels in groups.items():
        points = "; ".join(f"{label}: {STARTING_POINTS[label]}" for label in labels)
        plan.notes.append(
            f"{' and '.join(labels)} NOT tuned on {', '.join(envs)}: the presets' "
            f"starting points ({points}). Pass --tune yes (tuning seeds "
            f"{TUNING_SEED_BASE}+, never evaluated on) or --tuned FILE."
        )


# META-TRAINING ---------------------------------------------------------------------

#: ES of a smoke run: two generations of four members, evaluated every one.
SMOKE_ES = {"population_size": 4, "num_generations": 2}


def meta_job(
    name: str,
    base: MetaTrainConfig,
    optimizer: Any,
    options: Options,
    overrides: tuple[tuple[str, Any], ...] = (),
) -> MetaJob:
    """A meta-training job: ``base`` (a meta-training preset) with the learned
    optimizer ``optimizer``, ``overrides`` applied to every task's algorithm
    settings and ``--generations`` / ``--population`` to the ES (a smoke run
    takes :data:`SMOKE_ES`). Every job starts ES from zeros, as the paper."""
    tasks = []
    for task in base.tasks:
        config = replace_settings(task.config, dict(overrides))
        tasks.append(dataclasses.replace(task, config=config))
    es = dict(SMOKE_ES) if options.scale == "smoke" else {}
    if options.generations is not None:
        es["num_generations"] = options.generations
    if options.population is not None:
        es["population_size"] = options.population
    config = dataclasses.replace(
        base,
        tasks=tuple(tasks),
        optimizer=optimizer,
        es=dataclasses.replace(base.es, **es),
        init_from=None,  # the paper's start, whatever the preset's default
    )
    if options.scale == "smoke":
        config = dataclasses.replace(
            config, save_every=1, eval_every=1, num_eval_seeds=2
        )
    return MetaJob(name, config)


def run_means(curves: Sequence[Curves], metric: str) -> dict[str, dict[str, Any]]:
    """Each run's mean of ``metric`` over training: label -> task -> ``(seeds,)``."""
    import numpy as np

    out: dict[str, dict[str, Any]] = {}
    for c in curves:
        values = np.asarray(c.metrics[metric], np.float64)
        out.setdefault(c.optimizer, {})[c.env] = values.reshape(
            values.shape[0], values.shape[1], -1
        ).mean(axis=(1, 2))
    return out
