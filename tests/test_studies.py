"""lopt study: the claim rules on made-up scores, every study's plan at every
scale, one study end to end at smoke size (the others under -m heavy)."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
from test_eval import synthetic

from lopt.analysis.stats import bootstrap_interval, probability_of_improvement
from lopt.atomic import write_json
from lopt.cli import main
from lopt.runs.evaluation import curves_path
from lopt.studies import STUDIES, deepsea, make_plan
from lopt.studies import claims as c
from lopt.studies.common import Options, StudyError

from tiny import PRETRAINED

needs_released = pytest.mark.skipif(
    not (PRETRAINED / "breakout_OPEN.npy").exists(),
    reason="the paper's released optimizers are not in ../shared/pretrained",
)


def interval(point, low, high):
    return {"point": point, "low": low, "high": high}


def test_the_rules_on_intervals():
    assert c.better(interval(0.8, 0.6, 0.95)) == c.HOLDS
    assert c.better(interval(0.2, 0.05, 0.4)) == c.FAILS
    assert c.better(interval(0.55, 0.45, 0.65)) == c.INCONCLUSIVE
    # On par: inside [0.35, 0.65] holds; entirely outside fails; else inconclusive.
    assert c.on_par(interval(0.5, 0.4, 0.6)) == c.HOLDS
    assert c.on_par(interval(0.9, 0.8, 1.0)) == c.FAILS
    assert c.on_par(interval(0.6, 0.45, 0.75)) == c.INCONCLUSIVE
    assert c.above(interval(1.3, 1.1, 1.5), 1.0) == c.HOLDS
    assert c.within(interval(1.8, 1.6, 1.9), 1.5, 2.0) == c.HOLDS
    assert c.within(interval(3.0, 2.5, 3.5), 1.5, 2.0) == c.FAILS
    # Separated intervals; an optimality gap is better when lower.
    assert c.separated(interval(2, 1.5, 2.5), interval(1, 0.8, 1.2)) == c.HOLDS
    assert c.separated(interval(1, 0.8, 1.2), interval(2, 1.5, 2.5)) == c.FAILS
    assert c.separated(interval(1, 0.8, 1.6), interval(2, 1.5, 2.5)) == c.INCONCLUSIVE
    gap = c.separated(interval(0.1, 0.05, 0.15), interval(0.4, 0.3, 0.5), False)
    assert gap == c.HOLDS
    assert c.combined([c.HOLDS, c.NOT_RUN, c.HOLDS]) == c.HOLDS
    assert c.combined([c.HOLDS, c.INCONCLUSIVE]) == c.INCONCLUSIVE
    assert c.combined([c.FAILS, c.INCONCLUSIVE]) == c.FAILS


def test_the_claim_rule_on_made_up_scores():
    rng = np.random.default_rng(0)
    adam = rng.normal(0.0, 1.0, (32, 1))
    scores = {
        "adam": adam,
        "better": rng.normal(2.0, 1.0, (32, 1)),  # P(better > adam) ~ 0.92
        "worse": rng.normal(-2.0, 1.0, (32, 1)),
        "same": rng.normal(0.0, 1.0, (32, 1)),
    }
    poi = probability_of_improvement(scores, "adam", reps=500, seed=0)
    assert c.better(poi["better"]) == c.HOLDS
    assert c.better(poi["worse"]) == c.FAILS
    assert c.better(poi["same"]) == c.INCONCLUSIVE
    # Runs of x all above runs of y: P = 1 with a degenerate interval.
    sure = probability_of_improvement(
        {"x": np.arange(10.0, 20.0)[:, None], "y": np.arange(10.0)[:, None]}, "y"
    )["x"]
    assert sure == {"point": 1.0, "low": 1.0, "high": 1.0}


def test_the_trend_rule_on_made_up_scores():
    # A gain that grows by 1 per unit of size, and one that does not grow.
    x = np.array([8.0, 16.0, 24.0, 32.0])
    rng = np.random.default_rng(1)
    plain = rng.normal(0.0, 0.1, (32, 4))
    growing = plain + x + rng.normal(0.0, 0.1, (32, 4))

    def slope(a, b):
        return np.polyfit(x, a.mean(axis=0) - b.mean(axis=0), 1)[0]

    est = bootstrap_interval(slope, growing, plain, reps=300)
    assert est["point"] == pytest.approx(1.0, abs=0.02)
    assert c.above(est, 0.0) == c.HOLDS
    flat = bootstrap_interval(slope, plain + 1.0, plain, reps=300)
    assert c.above(flat, 0.0) == c.INCONCLUSIVE  # exactly 0: the interval holds it


def test_a_gain_that_only_stops_being_a_loss_is_no_growing_gain():
    # Deep Sea at cpu scale: noise costs on size 8, nothing solves 16-32, so the
    # gain's slope is positive although noise helps nowhere.
    x = np.array([8.0, 16.0, 24.0, 32.0])
    slope = {"point": 1e-3, "low": 5e-4, "high": 2e-3}
    claim = c.exceeds("gain grows", "§5.5", "slope", slope, 0.0)
    assert claim.verdict == c.HOLDS
    loss = {"point": -0.3, "low": -0.5, "high": -0.1}
    level = {"point": 0.0, "low": -0.01, "high": 0.01}
    qualified = deepsea.gain_grows(claim, x, [loss, level, level, level])
    assert qualified.verdict == c.INCONCLUSIVE
    assert "no size shows a gain" in qualified.note and "size 16" in qualified.note
    gain = {"point": 0.4, "low": 0.2, "high": 0.6}
    assert deepsea.gain_grows(claim, x, [level, level, gain, gain]) == claim
    failing = c.exceeds("gain grows", "§5.5", "slope", {**slope, "low": -1.0}, 0.0)
    assert deepsea.gain_grows(failing, x, [loss] * 4) == failing


@needs_released
@pytest.mark.parametrize("name", STUDIES)
@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_study_plans_at_every_scale(name, scale):
    plan = make_plan(name, Options(scale=scale))
    lines = plan.describe()
    assert lines[0].startswith(f"lopt study {name} --scale {scale}")
    if name == "craftax" and importlib.util.find_spec("craftax") is None:
        assert not plan.jobs and "craftax is not installed" in plan.notes[0]
        return
    assert plan.jobs and plan.frames() > 0
    for job in plan.jobs:
        if job.kind == "eval":
            seeds = len(job.seeds)
            assert seeds >= (2 if scale == "smoke" else 4)


def test_ablations_evaluate_at_the_budget_they_meta_train_at():
    """The held-out evaluation runs the inner task the variants were meta-trained
    on: at cpu scale the cpu preset's 24,576 frames, not the small preset's 5e4."""
    for scale in ("smoke", "cpu"):
        plan = make_plan("ablations", Options(scale=scale))
        metas = [job for job in plan.jobs if job.kind == "meta-train"]
        (evaluation,) = [job for job in plan.jobs if job.kind == "eval"]
        ((_, config),) = evaluation.configs()
        assert metas
        for job in metas:
            assert job.config.tasks[0].config == dataclasses.replace(
                config, diagnostics=job.config.tasks[0].config.diagnostics
            )


@needs_released
def test_the_paper_scale_is_the_papers():
    plan = make_plan("released", Options(scale="paper", envs=("breakout", "gridworld")))
    breakout = plan.job("breakout")
    ((_, config),) = breakout.configs()
    # OPEN §3.5 and §7: 1e7 frames, 64 x 128 steps, 16 seeds; gridworld 64 seeds.
    assert config.num_updates == 1220 and config.num_envs == 64
    assert len(breakout.seeds) == 16
    grid = plan.job("gridworld-labyrinth")
    assert len(grid.seeds) == 64 and grid.configs()[0][1].num_envs == 1024
    # RMSprop and Lion are tuned on seeds never evaluated on; Adam is the paper's.
    tunes = [j for j in plan.jobs if j.kind == "tune"]
    assert {j.plan.grid.optimizer for j in tunes} == {"rmsprop", "lion"}
    assert min(min(j.plan.seeds) for j in tunes) > max(breakout.seeds)
    assert ("Adam", "adam") in breakout.optimizers
    cpu = make_plan("released", Options(scale="cpu", envs=("gridworld",)))
    config = cpu.job("gridworld-rand_all").configs()[0][1]
    assert config.num_updates == 1464  # the optimizer's horizon, fewer envs
    # At cpu scale the gridworld runs against Adam alone (the paper's tuned values).
    labels = [label for label, _ in cpu.job("gridworld-rand_all").optimizers]
    assert labels == ["OPEN", "Adam"]
    assert not any("NOT tuned" in note for note in cpu.notes)


@needs_released
def test_bad_study_options_are_refused(tmp_path, capsys):
    with pytest.raises(StudyError, match="unknown --envs pong"):
        make_plan("released", Options(envs=("pong",)))
    with pytest.raises(StudyError, match="unknown study"):
        make_plan("nope", Options())
    with pytest.raises(StudyError, match="unknown scale"):
        Options(scale="huge")
    with pytest.raises(StudyError, match="released optimizer"):
        make_plan("overhead", Options(pretrained=tmp_path))
    with pytest.raises(SystemExit):
        main(["study", "gridworld", "--seeds", "1", "--dry-run"])
    assert "at least 2" in capsys.readouterr().err


@needs_released
def test_a_study_decides_its_claims_from_its_runs(tmp_path, capsys):
    # The runs of `lopt study gridworld --envs length` as a finished study leaves
    # them, made up: OPEN's final return above Adam's on every seed, so P(OPEN >
    # Adam) is 1 on every resample and the claim holds. --resume reads them back.
    out = tmp_path / "study"
    plan = make_plan("gridworld", Options(scale="smoke", envs=("length",)))
    (job,) = plan.jobs
    ((task, _),) = job.configs()
    directory = out / "runs" / job.name
    pairs = []
    for (label, _), returns in zip(
        job.optimizers, ([3.0, 4.0], [1.0, 2.0]), strict=True
    ):
        name = f"{label.lower()}-file"
        curves = synthetic(task, name, returns, learned=label == "OPEN")
        path = curves_path(directory, task, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, env_steps=curves.env_steps, seeds=np.arange(2), **curves.metrics)
        pairs.append([task, name, label])
    write_json(directory / "done.json", {"pairs": pairs})
    main(
        [
            "study",
            "gridworld",
            "--scale",
            "smoke",
            "--envs",
            "length",
            "--reps",
            "200",
            "--out",
            str(out),
            "--resume",
            "--no-progress",
        ]
    )
    record = json.loads((out / "claims.json").read_text())
    (claim,) = record["claims"]
    assert claim["verdict"] == c.HOLDS and claim["rule"] == "better"
    assert claim["numbers"]["P(OPEN > Adam)"] == {"point": 1.0, "low": 1.0, "high": 1.0}
    assert "holds" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "## claims" in md and "Rule (better)" in md and "| holds |" in md
    summary = json.loads((out / "length" / "summary.json").read_text())
    assert summary["final_returns"][task] == {"OPEN": [3.0, 4.0], "Adam": [1.0, 2.0]}


@needs_released
@pytest.mark.heavy
def test_a_study_runs_end_to_end_at_smoke_size(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["study", "gridworld", "--scale", "smoke", "--envs", "length"]
    args += ["--reps", "200", "--out", str(out), "--no-progress"]
    main(args)
    printed = capsys.readouterr().out
    record = json.loads((out / "claims.json").read_text())
    assert record["study"] == "gridworld" and record["scale"] == "smoke"
    # One claim per training length, decided by P(OPEN > Adam)'s interval.
    claims = record["claims"]
    assert [cl["rule"] for cl in claims] == ["better"]
    (estimate,) = claims[0]["numbers"].values()
    assert 0.0 <= estimate["low"] <= estimate["high"] <= 1.0
    assert claims[0]["verdict"] == c.better(estimate)
    assert "better" in record["rules"] and record["timings_s"]["rand_all-length"] > 0
    summary = json.loads((out / "length" / "summary.json").read_text())
    assert summary["improvement"]["reference"] == "Adam"
    assert (out / "length" / "report.html").exists()
    md = (out / "report.md").read_text()
    assert "## claims" in md and "P(OPEN > Adam)" in md and "Rule (better)" in md
    assert claims[0]["verdict"] in printed
    # Resuming reads the finished job back; other options are refused.
    main([*args, "--resume"])
    again = json.loads((out / "claims.json").read_text())
    assert again["claims"] == claims
    with pytest.raises(SystemExit):
        main([*args, "--resume", "--seeds", "3"])
    assert "planned differently" in capsys.readouterr().err


def test_craftax_without_the_extra_reports_not_run(tmp_path):
    if importlib.util.find_spec("craftax") is not None:
        pytest.skip("craftax is installed: the heavy test runs the study")
    out = tmp_path / "craftax"
    main(["study", "craftax", "--scale", "smoke", "--out", str(out), "--no-progress"])
    record = json.loads((out / "claims.json").read_text())
    assert {cl["verdict"] for cl in record["claims"]} == {c.NOT_RUN}
    assert "pip install 'lopt[craftax]'" in record["claims"][0]["note"]


@needs_released
@pytest.mark.heavy
@pytest.mark.parametrize("name", STUDIES)
def test_every_study_at_smoke_size(name, tmp_path):
    if name == "craftax" and importlib.util.find_spec("craftax") is None:
        pytest.skip("craftax is not installed")
    out = tmp_path / name
    main(
        [
            "study",
            name,
            "--scale",
            "smoke",
            "--reps",
            "100",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    record = json.loads((out / "claims.json").read_text())
    assert record["claims"], "a study checks at least one claim"
    for claim in record["claims"]:
        assert claim["verdict"] in c.VERDICTS and claim["rule"] in record["rules"]
        for value in claim["numbers"].values():
            if isinstance(value, dict):
                assert value["low"] <= value["high"]
    assert (out / "report.html").exists()
