"""lopt eval: statistics with known answers, a smoke run, the report."""

import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from lopt.analysis.report import analyse, notes
from lopt.analysis.stats import interval_estimates, normalise, run_aggregate
from lopt.cli import main
from lopt.configs.tuned import TunedSettings, write_tuned
from lopt.runs.evaluation import (
    Curves,
    parse_sweep,
    resolve_reference,
    run_evaluation,
)


def test_bootstrap_interval_contains_the_true_mean():
    rng = np.random.default_rng(0)
    scores = {"x": rng.normal(2.0, 1.0, size=(64, 1))}
    e = interval_estimates(scores, reps=1000, seed=0)["x"]
    assert e["mean"]["low"] < 2.0 < e["mean"]["high"]
    # The interval of the mean of 64 N(2, 1) draws is about 2 * 1.96 / 8 wide.
    assert 0.3 < e["mean"]["high"] - e["mean"]["low"] < 0.7
    again = interval_estimates(scores, reps=1000, seed=0)["x"]
    assert again == e


def test_aggregates_by_hand():
    scores = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [100.0]])
    mean, median, iqm = run_aggregate(scores)
    assert (mean, median, iqm) == (121 / 8, 3.5, 3.5)
    e = interval_estimates({"a": np.full((4, 2), 0.5)}, reps=100)["a"]
    # Constant scores: every resample gives the same value.
    assert e["optimality_gap"] == {"point": 0.5, "low": 0.5, "high": 0.5}
    assert e["iqm"]["point"] == 0.5


def test_normalise_divides_by_the_reference_mean():
    final = {
        "t1": {"adam": np.array([2.0, 4.0]), "x": np.array([3.0, 6.0])},
        "t2": {"adam": np.array([10.0, 10.0]), "x": np.array([5.0, 20.0])},
    }
    scores = normalise(final, "adam")
    np.testing.assert_allclose(scores["x"], [[1.0, 0.5], [2.0, 2.0]])
    with pytest.raises(ValueError, match="every task needs the same ones"):
        normalise({"a": {"adam": np.ones(2)}, "b": {"x": np.ones(2)}}, "adam")
    with pytest.raises(ValueError, match="only a positive return"):
        normalise({"t": {"adam": -np.ones(2), "x": np.ones(2)}}, "adam")


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    main(
        [
            "eval",
            "--env",
            "cartpole",
            "--optimizers",
            "adam,sgd",
            "--seeds",
            "2",
            "--total-timesteps",
            "512",
            "--reps",
            "200",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    return out


def test_eval_writes_tables_figures_and_report(evaluation):
    summary = json.loads((evaluation / "summary.json").read_text())
    assert list(summary["final_returns"]) == ["classic/cartpole"]
    assert len(summary["final_returns"]["classic/cartpole"]["sgd"]) == 2
    assert summary["normalised"]["adam"]["mean"]["point"] == pytest.approx(1.0)
    figures = {p.name for p in (evaluation / "figures").iterdir()}
    for stem in (
        "return_classic_cartpole",
        "intervals_classic_cartpole",
        "intervals_normalised",
        "dormancy_classic_cartpole",
        "cosine_classic_cartpole",
        "update_vs_gradient_classic_cartpole",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures
    assert "noise_classic_cartpole.png" not in figures  # no learned optimizer
    curves = np.load(evaluation / "curves" / "classic_cartpole" / "adam.npz")
    assert curves["return"].shape == (2, len(curves["env_steps"]))
    assert curves["cos_momentum"].shape == (2, len(curves["env_steps"]), 6)
    md = (evaluation / "report.md").read_text()
    page = (evaluation / "report.html").read_text()
    assert "classic/cartpole: final return" in md and "optimality_gap" in md
    assert "--optimizers adam,sgd" in md and "--optimizers adam,sgd" in page
    pngs = sum(1 for f in figures if f.endswith(".png"))
    assert page.count("data:image/png;base64,") == pngs
    config = json.loads((evaluation / "config.json").read_text())
    assert config["seeds"] == [0, 1] and len(config["runs"]) == 2


def synthetic(env, name, returns, learned=False):
    """Curves with the given final returns and made-up diagnostics, shape (2, 3)."""
    n, t = len(returns), 3
    metrics = {
        "return": np.tile(np.asarray(returns, float)[:, None], (1, t)),
        "dormant_fraction": np.full((n, t), 0.1),
        "noise_magnitude": np.full((n, t), 0.01 if learned else np.nan),
        "cos_gradient": np.full((n, t), 0.5),
        "cos_momentum": np.full((n, t, 6), 0.4),
        "sample_gradient": np.ones((n, t, 4)),
        "sample_update": -np.ones((n, t, 4)),
    }
    return Curves(env, name, np.arange(1, t + 1) * 10, metrics)


def test_two_environments_are_normalised_by_adam(tmp_path):
    curves = [
        synthetic("a", "adam", [2.0, 4.0]),
        synthetic("a", "open:x", [6.0, 6.0], learned=True),
        synthetic("b", "adam", [10.0, 10.0]),
        synthetic("b", "open:x", [5.0, 5.0], learned=True),
    ]
    summary = analyse(curves, tmp_path, reps=100)
    # open:x scores 2 on a and 0.5 on b: mean 1.25, gap mean(max(1 - s, 0)) 0.25.
    assert summary["normalised"]["open:x"]["mean"]["point"] == pytest.approx(1.25)
    assert summary["normalised"]["open:x"]["optimality_gap"]["point"] == 0.25
    # Every run of open:x beats every run of adam on a and loses on b: P(open:x >
    # adam) is 1 on a, 0 on b, 0.5 averaged; a resample cannot change 1 or 0.
    improvement = summary["improvement"]
    assert improvement["per_env"]["a"]["open:x"] == {
        "point": 1.0,
        "low": 1.0,
        "high": 1.0,
    }
    assert improvement["per_env"]["b"]["open:x"]["high"] == 0.0
    assert improvement["all"]["open:x"]["point"] == 0.5
    md = (tmp_path / "report.md").read_text()
    assert "## probability of improvement over adam" in md
    assert "| open:x | 1 [1, 1] | 0 [0, 0] | 0.5 [0.5, 0.5] |" in md
    assert (tmp_path / "figures" / "noise_a.png").exists()
    summary = analyse([synthetic("c", "adam", [-5.0, -3.0])], tmp_path, reps=100)
    assert summary["normalised"] is None
    assert "positive return" in notes(summary)[0]
    assert "positive return" in (tmp_path / "report.md").read_text()


CHROMIUM = next(
    (
        shutil.which(b)
        for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
        if shutil.which(b)
    ),
    None,
)


# What the page reports of itself once loaded: every image decoded, every table
# with a header row and at least one row of numbers.
PAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const tables = [...document.querySelectorAll("table")];
  const out = document.createElement("pre");
  out.id = "lopt-check";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).length,
    tables: tables.length,
    empty: tables.filter((t) => t.rows.length < 2).length,
  });
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    # The flags a root user in a machine without network needs (no sandbox, no
    # GPU, no background connections).
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no headless Chromium on this machine (CI installs it, and requires it)",
)
def test_report_renders_in_headless_chromium(evaluation, tmp_path):
    assert CHROMIUM is not None, "CI must install chromium (.ci/run does)"
    page = tmp_path / "report.html"
    text = (evaluation / "report.html").read_text()
    page.write_text(text.replace("</body>", PAGE_CHECK + "</body>"))
    dom = _chromium(
        "--virtual-time-budget=10000",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        page.resolve().as_uri(),
    ).stdout
    found = re.search(r'<pre id="lopt-check">(.*?)</pre>', dom)
    assert found, "the page's own check did not run"
    check = json.loads(html.unescape(found.group(1)))
    figures = len(list((evaluation / "figures").glob("*.png")))
    assert check["images"] == figures > 0 and check["broken"] == 0, check
    assert check["tables"] >= 2 and check["empty"] == 0, check
    shot = tmp_path / "report.png"
    _chromium(
        f"--user-data-dir={tmp_path / 'profile2'}",
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        (evaluation / "report.html").resolve().as_uri(),
    )
    pixels = np.asarray(__import__("matplotlib.image").image.imread(shot))
    assert pixels.shape[0] > 1000 and pixels.std() > 0.05  # not a blank page


def test_eval_refuses_bad_input(tmp_path, capsys):
    for args, message in (
        (["--optimizers", "adam,nope"], "unknown optimizer"),
        (["--env", "pong"], "unknown environment"),
        (["--seeds", "1"], "at least 2"),
        (["--sweep", "width=8,16"], "bad sweep 'width=8,16'"),
        (["--sweep", "hidden_size=8.5"], "not a whole number"),
    ):
        with pytest.raises(SystemExit):
            main(["eval", "--out", str(tmp_path / "e"), "--no-progress", *args])
        assert message in capsys.readouterr().err.lower()


@pytest.mark.heavy
def test_sweep_makes_one_task_per_value(tmp_path):
    curves = run_evaluation(
        ["cartpole"],
        ["adam"],
        [0, 1],
        tmp_path,
        total_timesteps=512,
        sweep=parse_sweep("hidden_size=4,8"),
    )
    assert [c.env for c in curves] == [
        "classic/cartpole[hidden_size=4]",
        "classic/cartpole[hidden_size=8]",
    ]
    runs = json.loads((tmp_path / "config.json").read_text())["runs"]
    assert [r["ppo"]["hidden_size"] for r in runs] == [4, 8]
    assert (tmp_path / "curves" / "classic_cartpole_hidden_size_8").is_dir()


def test_the_reference_resolves_to_the_evaluated_optimizer():
    tuned = "adam(lr=0.01,b1=0.9,b2=0.99,no-anneal)"
    specs = ["tuned:t.json", "learned:o.npy"]
    names = [tuned, "learned:o"]
    assert resolve_reference("tuned:t.json", specs, names) == tuned
    # The default "adam" finds the one Adam evaluated, here a tuned one.
    assert resolve_reference("adam", specs, names) == tuned
    assert resolve_reference("learned:o", specs, names) == "learned:o"
    # Two Adams: ambiguous, so left as given (the report says it was not run).
    two = ["adam(lr=0.01)", "adam(lr=0.001)"]
    assert resolve_reference("adam", ["tuned:a", "tuned:b"], two) == "adam"
    assert resolve_reference("lion", specs, names) == "lion"


def test_a_tuned_file_from_another_budget_is_named():
    """budget_mismatch: a tuned file used at another budget than it was tuned at
    is named with both budgets and the fix; the same budget (asked for, or the
    whole updates it takes) and files that do not record it are not."""
    from lopt.configs.presets import preset_for
    from lopt.configs.tuned import budget_mismatch

    config = preset_for("spaceinvaders", "small").config  # 24 updates x 2,048
    hyperparams = {"learning_rate": 1e-2, "b1": 0.9, "b2": 0.99, "anneal": True}
    settings = TunedSettings(
        "minatar/spaceinvaders", "adam", hyperparams, 6.5, "small", 8, 24_576
    )
    text = budget_mismatch(settings, config)
    assert "tuned at 24,576 frames; this run takes 49,152" in text
    assert "--total-timesteps 24576" in text
    for budget in (24_576, 25_000):  # 25,000 runs 12 whole updates: 24,576
        same = replace(config, total_timesteps=budget)
        assert budget_mismatch(settings, same) is None
    assert budget_mismatch(replace(settings, total_timesteps=0), config) is None


def test_a_tuned_file_is_an_optimizer(tmp_path, capsys):
    tuned = tmp_path / "tuned.json"
    hyperparams = {"learning_rate": 3e-3, "b1": 0.9, "b2": 0.99, "anneal": False}
    # Tuned at another budget than the evaluation's: said before training.
    at_1024 = TunedSettings(
        "classic/cartpole", "adam", hyperparams, 100.0, total_timesteps=1024
    )
    write_tuned(tuned, at_1024)
    out = tmp_path / "eval"
    main(
        [
            "eval",
            *("--env", "cartpole", "--seeds", "2", "--total-timesteps", "512"),
            *("--optimizers", f"sgd,tuned:{tuned}", "--reference", f"tuned:{tuned}"),
            *("--reps", "100", "--out", str(out), "--no-progress"),
        ]
    )
    name = "adam(lr=0.003,b1=0.9,b2=0.99,no-anneal)"
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["final_returns"]["classic/cartpole"]) == ["sgd", name]
    assert summary["reference"] == name  # --reference named it by its spec
    assert list(summary["improvement"]["per_env"]["classic/cartpole"]) == ["sgd"]
    (run,) = [
        r
        for r in json.loads((out / "config.json").read_text())["runs"]
        if r["optimizer"]["name"] == name
    ]
    assert run["optimizer"]["learning_rate"] == 3e-3
    assert run["optimizer"]["tuned"]["baseline_return"] == 100.0
    assert "adam was tuned at 1,024 frames" in capsys.readouterr().err
    # Tuned elsewhere: refused before anything trains.
    write_tuned(tuned, TunedSettings("classic/acrobot", "adam", hyperparams, -90.0))
    with pytest.raises(SystemExit):
        main(["eval", "--optimizers", f"tuned:{tuned}", "--out", str(tmp_path / "x")])
    assert (
        "was tuned on classic/acrobot, not classic/cartpole" in capsys.readouterr().err
    )
    write_tuned(
        tuned,
        TunedSettings("classic/cartpole", "adam", hyperparams, 1.0, preset="small"),
    )
    with pytest.raises(SystemExit):
        main(["eval", "--optimizers", f"tuned:{tuned}", "--out", str(tmp_path / "y")])
    assert "tuned on the small preset" in capsys.readouterr().err
    # Two optimizers under one name would overwrite each other's curves: refused.
    with pytest.raises(SystemExit):
        main(["eval", "--optimizers", "adam,adam", "--out", str(tmp_path / "z")])
    assert "share the name adam" in capsys.readouterr().err
    assert not (tmp_path / "z" / "config.json").exists()
