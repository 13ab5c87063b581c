"""The paper's experiments as commands: ``lopt study NAME --scale smoke|cpu|paper``.

Each study is a module with a ``plan(options) -> Plan`` (the jobs: meta-train,
tune, evaluate, time) and a ``claims(plan, results) -> list[Claim]`` (the
paper's claims for it, each decided by a 95% interval; :mod:`.claims`), and
optionally ``figures(plan, results, out)`` and ``tables(plan, results)``. Only
the command line imports this package.

=============  ====================================================================
``released``   each released optimizer against Adam, RMSprop and Lion (§8.2)
``ablations``  full OPEN and each ablated variant, meta-trained alike (§8.6)
``deepsea``    learned noise and separate actor/critic across Deep Sea sizes (§5.5)
``gridworld``  the gridworld optimizer across types, widths, lengths (§5.3)
``craftax``    zero-shot transfer to Craftax-Classic (§5.4)
``pqn``        OPEN inside PQN on Asterix against Adam (§5.6)
``overhead``   the cost of OPEN's step against Adam, VeLO and Optim4RL (§4.5)
=============  ====================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from lopt.studies.common import Options, Plan, StudyError, run_plan, validate

STUDIES = (
    "released",
    "ablations",
    "deepsea",
    "gridworld",
    "craftax",
    "pqn",
    "overhead",
)


def study_module(name: str) -> ModuleType:
    """The module of study ``name``.

    Raises:
      StudyError: no such study.
    """
    if name not in STUDIES:
        raise StudyError(f"unknown study {name!r}; choose from {', '.join(STUDIES)}")
    return importlib.import_module(f"lopt.studies.{name}")


def summary_line(module: ModuleType) -> str:
    """The first sentence of a study's docstring, on one line."""
    first = (module.__doc__ or "").split("\n\n")[0]
    return " ".join(first.split())


def make_plan(name: str, options: Options) -> Plan:
    """The checked plan of study ``name`` (nothing runs).

    Raises:
      ValueError (its subclasses): a bad option, preset, file or job.
    """
    plan = study_module(name).plan(options)
    validate(plan)
    return plan


def run_study(
    name: str,
    options: Options,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    command: Sequence[str] = (),
) -> dict:
    """Plans, runs and reports study ``name`` into ``out``; returns the claims'
    record (``claims.json``)."""
    from lopt.studies.common import write_study_report

    module = study_module(name)
    plan = make_plan(name, options)
    results, timings, cpu_times = run_plan(plan, out, resume=resume, progress=progress)
    claims = module.claims(plan, results)
    figures = module.figures(plan, results, out) if hasattr(module, "figures") else []
    extra = module.tables(plan, results) if hasattr(module, "tables") else []
    return write_study_report(
        plan,
        results,
        claims,
        timings,
        cpu_times,
        out,
        summary=summary_line(module),
        command=command,
        figures=figures,
        extra_tables=extra,
    )
