"""lopt tune: the grid, the choice of the best setting, the tuned preset file, and
a tiny search on CartPole whose preset trains the same agents again."""

import csv
import json

import numpy as np
import pytest

from lopt.cli import MetaTrain, _meta_config, main
from lopt.configs.presets import apply_tuned, preset_for, task_for
from lopt.configs.tuned import (
    TunedFileError,
    TunedSettings,
    read_tuned,
    write_tuned,
)
from lopt.runs.tuning import TuningError, best_setting, grid_settings, make_grid


def test_adam_grid_enumerates_anneal_then_lr_then_betas():
    grid = make_grid(
        "adam", "both", learning_rate=(1e-3, 1e-2), b1=(0.9,), b2=(0.99, 0.999)
    )
    assert grid_settings(grid) == [
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.99, "anneal": False},
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "anneal": False},
        {"learning_rate": 1e-2, "b1": 0.9, "b2": 0.99, "anneal": False},
        {"learning_rate": 1e-2, "b1": 0.9, "b2": 0.999, "anneal": False},
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.99, "anneal": True},
        {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "anneal": True},
        {"learning_rate": 1e-2, "b1": 0.9, "b2": 0.99, "anneal": True},
        {"learning_rate": 1e-2, "b1": 0.9, "b2": 0.999, "anneal": True},
    ]


def test_rmsprop_and_lion_grids_and_defaults():
    rmsprop = make_grid("rmsprop", "on", learning_rate=(3e-4,), decay=(0.9, 0.99))
    assert grid_settings(rmsprop) == [
        {"learning_rate": 3e-4, "decay": 0.9, "anneal": True},
        {"learning_rate": 3e-4, "decay": 0.99, "anneal": True},
    ]
    # Untouched axes take the defaults: 5 learning rates x b1 0.9 x b2 0.99.
    lion = make_grid("lion", "off")
    assert len(grid_settings(lion)) == 5
    assert lion.values["learning_rate"] == (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


@pytest.mark.parametrize(
    "args, match",
    [
        (("rmsprop", "both"), "rmsprop has no b1"),
        (("sgd", "both"), "searches adam, rmsprop, lion"),
        (("adam", "sometimes"), "--anneal is one of"),
    ],
)
def test_bad_grids_are_refused(args, match):
    with pytest.raises(TuningError, match=match):
        make_grid(*args, b1=(0.9,) if args[0] == "rmsprop" else None)


def test_bad_axis_values_are_refused():
    with pytest.raises(TuningError, match=r"in \(0, 1\]; got 0\.0"):
        make_grid("adam", learning_rate=(0.0, 1e-3))
    with pytest.raises(TuningError, match=r"in \(0, 1\]; got nan"):
        make_grid("adam", learning_rate=(float("nan"), 1e-3))
    with pytest.raises(TuningError, match=r"in \(0, 1\]; got 10\.0"):
        make_grid("adam", learning_rate=(10.0, 1e-3))
    with pytest.raises(TuningError, match=r"\[0, 1\)"):
        make_grid("adam", b2=(1.0,))
    with pytest.raises(TuningError, match="empty"):
        make_grid("adam", b1=())


def test_best_setting_takes_the_highest_mean():
    final = np.array([[1.0, 3.0], [2.0, 2.5], [0.0, 1.0]])  # means 2, 2.25, 0.5
    assert best_setting(final) == 1


def test_best_setting_never_takes_a_diverged_setting():
    final = np.array([[1.0, 1.0], [np.nan, 100.0], [np.inf, 100.0], [0.5, 2.0]])
    assert best_setting(final) == 3
    with pytest.raises(TuningError, match="every setting"):
        best_setting(np.full((2, 3), np.nan))


def test_best_setting_ties():
    final = np.array([[500.0, 500.0], [400.0, 600.0], [500.0, 500.0], [10.0, 10.0]])
    # Without the whole-run means: the first of the equal means, in grid order.
    assert best_setting(final) == 0
    # The faster learner (higher mean return over the run) wins a tie.
    over_run = np.array([[300.0, 300.0], [450.0, 450.0], [350.0, 350.0], [1.0, 1.0]])
    assert best_setting(final, over_run) == 1
    over_run[1] = 0.0
    assert best_setting(final, over_run) == 2


def breakout_settings(**changes):
    values = {
        "env": "minatar/breakout",
        "optimizer": "adam",
        "hyperparams": {"learning_rate": 0.02, "b1": 0.8, "b2": 0.95, "anneal": False},
        "baseline_return": 12.5,
        "preset": "small",
        "num_seeds": 4,
        "total_timesteps": 50_000,
    }
    return TunedSettings(**{**values, **changes})


def test_tuned_file_round_trip_and_presets(tmp_path):
    path = tmp_path / "tuned.json"
    write_tuned(path, breakout_settings())
    tuned = read_tuned(path)
    assert tuned == breakout_settings()
    preset = apply_tuned(preset_for("breakout", "small"), tuned, "small")
    assert preset.optimizers["adam"] == tuned.hyperparams
    assert (
        preset.optimizers["lion"] == preset_for("breakout", "small").optimizers["lion"]
    )
    assert preset.baseline_return == 12.5
    assert task_for("breakout", "small", tuned=tuned).baseline_return == 12.5
    assert task_for("breakout", "small").baseline_return == 1.0
    with pytest.raises(TunedFileError, match="tuned on minatar/breakout"):
        apply_tuned(preset_for("asterix"), tuned, "default")
    with pytest.raises(TunedFileError, match="pass --preset small"):
        apply_tuned(preset_for("breakout"), tuned, "default")
    with pytest.raises(TunedFileError, match="tuned for ppo, not dqn"):
        apply_tuned(preset_for("breakout", algo="dqn"), tuned, "default")
    # The fitness normaliser of meta-training, from the command line.
    config = _meta_config(
        MetaTrain(envs=("breakout", "asterix"), preset="small", tuned=(path,))
    )
    assert [t.baseline_return for t in config.tasks] == [12.5, 1.0]
    with pytest.raises(SystemExit):
        _meta_config(MetaTrain(envs=("asterix",), preset="small", tuned=(path,)))


def test_bad_tuned_files_are_refused(tmp_path):
    path = tmp_path / "tuned.json"
    with pytest.raises(TunedFileError, match="cannot read"):
        read_tuned(path)
    path.write_text('{"env": "breakout"}')
    with pytest.raises(TunedFileError, match="not a tuned-settings file"):
        read_tuned(path)
    with pytest.raises(TunedFileError, match="learning_rate required"):
        breakout_settings(hyperparams={"b1": 0.9})
    with pytest.raises(TunedFileError, match="decay"):
        breakout_settings(hyperparams={"learning_rate": 1e-3, "decay": 0.9})


@pytest.mark.slow
def test_tune_cartpole_end_to_end_and_train_from_its_preset(tmp_path, capsys):
    out = tmp_path / "tune"
    # 3 settings, 2 seeds, at most 4 runs per call: groups of 2 settings, the
    # last padded.
    main(
        [
            "tune",
            "--env",
            "cartpole",
            "--optimizer",
            "adam",
            "--lrs",
            "1e-3",
            "3e-3",
            "1e-2",
            "--b2s",
            "0.99",
            "--anneal",
            "on",
            "--seeds",
            "2",
            "--total-timesteps",
            "1024",
            "--max-parallel",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    names = {p.name for p in out.iterdir()}
    assert {
        "results.csv",
        "summary.json",
        "tuned.json",
        "curves.npz",
        "final_return_vs_lr.png",
    } <= names
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2
    assert [r["learning_rate"] for r in rows[::2]] == ["0.001", "0.003", "0.01"]
    summary = json.loads((out / "summary.json").read_text())
    finals = np.array([float(r["final_return"]) for r in rows]).reshape(3, 2)
    best = summary["best"]
    assert best["setting"] == int(np.argmax(finals.mean(axis=1)))
    tuned = read_tuned(out / "tuned.json")
    assert tuned.hyperparams["learning_rate"] == best["learning_rate"]
    assert tuned.baseline_return == pytest.approx(finals[best["setting"]].mean())
    assert "best: lr" in capsys.readouterr().out

    # The preset trains the best setting's agents again: the same returns.
    run = tmp_path / "train"
    main(
        [
            "train",
            "--env",
            "cartpole",
            "--tuned",
            str(out / "tuned.json"),
            "--seeds",
            "2",
            "--total-timesteps",
            "1024",
            "--out",
            str(run),
            "--no-progress",
        ]
    )
    trained = json.loads((run / "summary.json").read_text())
    np.testing.assert_allclose(
        trained["final_returns"], finals[best["setting"]], rtol=1e-5
    )
    config = json.loads((run / "config.json").read_text())
    assert config["optimizer"]["learning_rate"] == best["learning_rate"]
    assert "was tuned at" not in capsys.readouterr().err  # the budget it was tuned at
    # At another budget the run says so before it trains.
    shorter = ["--total-timesteps", "512", "--out", str(tmp_path / "t2")]
    main(["train", "--env", "cartpole", "--tuned", str(out / "tuned.json"), *shorter])
    assert "adam was tuned at 1,024 frames; this run takes 512" in (
        capsys.readouterr().err
    )
