"""The command line, run as a user would."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lopt.cli import main

from tiny import BREAKOUT


def test_entry_point_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "lopt.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "train" in out.stdout


def test_train_writes_a_complete_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    main(
        [
            "train",
            "--env",
            "cartpole",
            "--optimizer",
            "adam",
            "--seeds",
            "2",
            "--total-timesteps",
            "4096",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "returns.csv",
        "metrics.npz",
        "learning_curve.png",
        "summary.json",
    } <= names
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["final_returns"]) == 2
    returns = np.loadtxt(out / "returns.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(returns[-1, 2:], summary["final_returns"], rtol=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["ppo"]["total_timesteps"] == 4096
    assert config["optimizer"]["name"] == "adam"
    printed = capsys.readouterr().out
    assert "iqm" in printed and "mean" in printed

    # An existing run directory is refused (before any work) unless --overwrite.
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--env", "cartpole", "--out", str(out), "--no-progress"])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text()) == summary


@pytest.mark.heavy
def test_train_reruns_identically_and_overwrites(tmp_path):
    out, again = tmp_path / "run", tmp_path / "again"
    for where in (out, again):
        main(
            [
                "train",
                "--env",
                "cartpole",
                "--seeds",
                "2",
                "--total-timesteps",
                "4096",
                "--out",
                str(where),
                "--no-progress",
            ]
        )
    summary = json.loads((out / "summary.json").read_text())
    assert (
        json.loads((again / "summary.json").read_text())["final_returns"]
        == (summary["final_returns"])
    )

    main(
        [
            "train",
            "--env",
            "cartpole",
            "--seeds",
            "1",
            "--total-timesteps",
            "4096",
            "--out",
            str(out),
            "--overwrite",
            "--no-progress",
        ]
    )
    assert len(json.loads((out / "summary.json").read_text())["final_returns"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "pong"], "unknown environment 'pong'"),
        (["--optimizer", "adamw"], "unknown optimizer 'adamw'"),
        (["--optimizer", "open:missing.npy"], "no such file"),
        (["--seeds", "0"], "--seeds must be a whole number >= 1 (got 0)"),
        (["--total-timesteps", "10"], "less than one update"),
    ],
)
def test_bad_arguments_fail_clearly(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), "--no-progress", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.skipif(not BREAKOUT.exists(), reason="released optimizers not available")
def test_train_with_a_released_optimizer(tmp_path):
    out = tmp_path / "open"
    main(
        [
            "train",
            "--env",
            "breakout",
            "--optimizer",
            f"open:{BREAKOUT}",
            "--seeds",
            "2",
            "--total-timesteps",
            "16384",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizer"] == "open:breakout_OPEN"
    assert np.isfinite(summary["final_returns"]).all()
