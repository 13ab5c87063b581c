"""The paper's claims, each decided by a statistic's 95% interval.

A :class:`Claim` is one sentence of the paper (OPEN_SPEC §5-§8), the verdict lopt's
numbers give it and the numbers behind it. Every verdict comes from a 95%
stratified bootstrap interval (rliable) and one of four rules:

- :func:`better` (``X beats Y``): the interval of the probability of improvement
  P(X > Y) lies above 0.5: holds; below 0.5: does not hold; contains 0.5:
  inconclusive.
- :func:`on_par` (``X is on par with Y``): an equivalence test on the same
  probability: the interval lies inside [0.5 - m, 0.5 + m] (m = 0.15 by
  default): holds; entirely outside it: does not hold; otherwise inconclusive.
- :func:`above` (``a statistic exceeds a threshold``, e.g. an Adam-normalised
  IQM above 1 or a slope above 0): the interval lies above the threshold: holds;
  below it: does not hold; otherwise inconclusive.
- :func:`separated` (``X's aggregate is better than Y's``): X's interval lies
  entirely on the better side of Y's: holds; Y's entirely on the better side of
  X's: does not hold; overlapping: inconclusive.

``within`` (a ratio inside a range, e.g. OPEN's cost 1.5-2x Adam's) follows the
equivalence logic of :func:`on_par` for any range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_RUN)

#: Half-width of the band around 0.5 inside which P(X > Y) counts as on par.
PAR_MARGIN = 0.15

RULES = {
    "better": "X beats Y: the 95% interval of P(X > Y) lies above 0.5 (holds), "
    "below 0.5 (does not hold), or contains 0.5 (inconclusive)",
    "on_par": f"X on par with Y: the 95% interval of P(X > Y) lies inside "
    f"[{0.5 - PAR_MARGIN:g}, {0.5 + PAR_MARGIN:g}] (holds), entirely outside it "
    "(does not hold), or overlaps its edge (inconclusive)",
    "above": "a statistic above a threshold: its 95% interval lies above it "
    "(holds), below it (does not hold), or contains it (inconclusive)",
    "separated": "X's aggregate better than Y's: X's 95% interval lies entirely "
    "on the better side of Y's (holds), Y's entirely on the better side of X's "
    "(does not hold), or they overlap (inconclusive)",
    "within": "a ratio within a range: its 95% interval lies inside the range "
    "(holds), entirely outside it (does not hold), or overlaps an edge "
    "(inconclusive)",
}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper and what lopt's numbers say of it."""

    text: str
    """the claim, in the paper's words where they are known"""
    source: str
    """where OPEN_SPEC.md reports it, e.g. "§8.2 single-task\""""
    verdict: str
    """one of :data:`VERDICTS`"""
    rule: str
    """a key of :data:`RULES`"""
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    """the estimates behind the verdict, e.g. ``{"P(OPEN > Adam)": {"point": ...,
    "low": ..., "high": ...}}``"""
    note: str = ""
    """what qualifies it: an untuned baseline, a reduced budget, why not run"""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}")


def above(estimate: dict[str, float], threshold: float) -> str:
    """The verdict on ``estimate > threshold`` from its interval."""
    if estimate["low"] > threshold:
        return HOLDS
    if estimate["high"] < threshold:
        return FAILS
    return INCONCLUSIVE


def better(poi: dict[str, float]) -> str:
    """The verdict on ``X beats Y`` from the interval of P(X > Y)."""
    return above(poi, 0.5)


def within(estimate: dict[str, float], low: float, high: float) -> str:
    """The verdict on ``low <= estimate <= high`` (an equivalence test)."""
    if low <= estimate["low"] and estimate["high"] <= high:
        return HOLDS
    if estimate["high"] < low or estimate["low"] > high:
        return FAILS
    return INCONCLUSIVE


def on_par(poi: dict[str, float], margin: float = PAR_MARGIN) -> str:
    """The verdict on ``X on par with Y`` from the interval of P(X > Y)."""
    return within(poi, 0.5 - margin, 0.5 + margin)


def separated(
    x: dict[str, float], y: dict[str, float], higher_is_better: bool = True
) -> str:
    """The verdict on ``X's aggregate is better than Y's`` from their intervals."""
    if not higher_is_better:
        x, y = (
            {"low": -x["high"], "high": -x["low"]},
            {"low": -y["high"], "high": -y["low"]},
        )
    if x["low"] > y["high"]:
        return HOLDS
    if y["low"] > x["high"]:
        return FAILS
    return INCONCLUSIVE


def combined(verdicts: Sequence[str]) -> str:
    """The verdict on a conjunction of claims: holds if every one holds, does
    not hold if any does not, else inconclusive (not run if none was run)."""
    run = [v for v in verdicts if v != NOT_RUN]
    if not run:
        return NOT_RUN
    if FAILS in run:
        return FAILS
    return HOLDS if all(v == HOLDS for v in run) else INCONCLUSIVE


def not_run(text: str, source: str, rule: str, why: str) -> Claim:
    """A claim this run could not check, and why."""
    return Claim(text, source, NOT_RUN, rule, {}, why)


def format_estimate(e: dict[str, float]) -> str:
    return f"{e['point']:.3g} [{e['low']:.3g}, {e['high']:.3g}]"


def format_numbers(numbers: dict[str, Any]) -> str:
    """``name: point [low, high]; ...`` for the report's table."""
    parts = []
    for name, value in numbers.items():
        if isinstance(value, dict) and {"point", "low", "high"} <= set(value):
            parts.append(f"{name} = {format_estimate(value)}")
        elif isinstance(value, float):
            parts.append(f"{name} = {value:.4g}")
        else:
            parts.append(f"{name} = {value}")
    return "; ".join(parts)


def final_scores(summary: dict, name: str, tasks: Sequence[str]):
    """Final returns of ``name`` on ``tasks`` from an eval summary, shape
    ``(num_seeds, len(tasks))``."""
    import numpy as np

    return np.stack(
        [np.asarray(summary["final_returns"][t][name], np.float64) for t in tasks],
        axis=1,
    )


def poi(
    summary: dict,
    x: str,
    y: str,
    tasks: Sequence[str] | None = None,
    *,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """P(x > y) on the final returns of ``tasks`` (default all) of an eval
    summary, averaged over tasks, with its 95% interval."""
    from lopt.analysis.stats import probability_of_improvement

    tasks = list(summary["final_returns"] if tasks is None else tasks)
    scores = {x: final_scores(summary, x, tasks), y: final_scores(summary, y, tasks)}
    return probability_of_improvement(scores, y, reps, seed)[x]


def compare(
    summary: dict,
    x: str,
    y: str,
    text: str,
    source: str,
    *,
    tasks: Sequence[str] | None = None,
    par: bool = False,
    note: str = "",
    reps: int = 2000,
    seed: int = 0,
) -> Claim:
    """The claim ``x beats y`` (or, with ``par``, ``x is on par with y``) on the
    final returns of ``tasks`` (default all) of an eval summary, decided by the
    interval of P(x > y)."""
    p = poi(summary, x, y, tasks, reps=reps, seed=seed)
    rule = "on_par" if par else "better"
    verdict = on_par(p) if par else better(p)
    return Claim(text, source, verdict, rule, {f"P({x} > {y})": p}, note)


def exceeds(
    text: str,
    source: str,
    name: str,
    estimate: dict[str, float],
    threshold: float,
    note: str = "",
) -> Claim:
    """The claim that the statistic ``name`` exceeds ``threshold``, decided by
    its interval (:func:`above`)."""
    return Claim(
        text, source, above(estimate, threshold), "above", {name: estimate}, note
    )
