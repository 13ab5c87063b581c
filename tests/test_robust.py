"""Nothing lost, nothing silent: bad settings, diverged runs, run directories,
resuming, interrupts and errors, each as a user meets them."""

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from lopt import cli
from lopt.atomic import write_json
from lopt.meta import checkpoint
from lopt.meta.config import ESConfig, MetaTrainConfig, TaskConfig
from lopt.meta.loop import (
    MetaTrainer,
    MetaTrainingDivergedError,
    meta_train,
    read_metrics,
)
from lopt.optim.handcrafted import adam, sgd
from lopt.rl.executor import Executor, seed_keys
from lopt.runs.rundir import (
    LOCK_NAME,
    RunDirectoryError,
    prepare_run_dir,
    release_run_dir,
    set_aside,
)
from lopt.serialise import to_dict
from lopt.summary import diverged_at
from lopt.validation import OPTION_RANGES, SettingError, check_options

from tiny import run_seeds, tiny_ppo

SRC = Path(__file__).resolve().parents[1] / "src"
# Two seeds of CartPole's preset, 4 updates of 4 x 128 steps.
TRAIN = ["train", "--env", "cartpole", "--seeds", "2", "--total-timesteps", "2048"]


def strict_json(path: Path):
    """``path``'s JSON, refusing the bare NaN and Infinity Python would accept."""

    def refuse(name):
        raise ValueError(f"{path} holds a bare {name}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``lopt ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        cli.main(args)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_meta(generations: int = 3, **changes) -> MetaTrainConfig:
    settings = {"save_every": 1, "eval_every": 3, "num_eval_seeds": 2, **changes}
    return MetaTrainConfig(
        tasks=(TaskConfig(config=tiny_ppo(total_timesteps=64)),),
        es=ESConfig(population_size=4, num_generations=generations, sigma=0.1, lr=0.05),
        **settings,
    )


# 1. ONE VALIDATION OF NUMBERS ------------------------------------------------------
def _numeric(hint) -> bool:
    args = typing.get_args(hint)
    return hint in (int, float) or any(_numeric(a) for a in args if a is not Ellipsis)


def test_every_number_a_user_can_type_has_a_range():
    found = []
    for name, (cls, _) in cli.COMMANDS.items():
        hints = typing.get_type_hints(cls, include_extras=True)
        numeric = [f.name for f in dataclasses.fields(cls) if _numeric(hints[f.name])]
        missing = [f for f in numeric if f not in OPTION_RANGES]
        assert not missing, (name, missing)
        found += numeric
    assert {"lr", "lrs", "sigma", "seed", "seeds", "population"} <= set(found)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"lr": float("nan")},
            "--lr must be a finite number in (0, 1] (got nan); pass e.g.",
        ),
        ({"lr": -1.0}, "--lr must be a finite number in (0, 1] (got -1.0)"),
        ({"lr": float("inf")}, "--lr must be a finite number in (0, 1] (got inf)"),
        ({"seed": -1}, "--seed must be a whole number in [0, 4294967295]"),
        ({"seed": 2**32 - 1, "seeds": 2}, "runs past the last seed 4294967295"),
        ({"seeds": 0}, "--seeds must be a whole number >= 1 (got 0)"),
    ],
)
def test_train_options_out_of_range_name_the_flag(options, message):
    args = dataclasses.replace(cli.Train(), **options)
    with pytest.raises(SettingError) as info:
        check_options(args)
    assert message in str(info.value)


def test_meta_training_options_out_of_range():
    good = cli.MetaTrain()
    check_options(dataclasses.replace(good, seed=0, sigma=0.1, lr=1.0, lr_decay=1.0))
    for option, value in [
        ("sigma", 0.0),
        ("sigma", -1.0),
        ("lr", float("nan")),
        ("sigma_decay", 1.5),
        ("lr_decay", 0.0),
        ("lr_warmup", -1),
        ("population", 3),
        ("generations", 0),
        ("optim4rl_lr", float("nan")),
    ]:
        with pytest.raises(SettingError, match="--" + option.replace("_", "-")):
            check_options(dataclasses.replace(good, **{option: value}))
    with pytest.raises(SettingError, match="--b2s must be a finite number in"):
        check_options(cli.Tune(b2s=(0.99, 1.0)))


def test_configs_check_the_same_ranges():
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        ESConfig(sigma=0.0)
    with pytest.raises(ValueError, match=r"lr must be a finite number in \(0, 1\]"):
        ESConfig(lr=float("nan"))
    with pytest.raises(ValueError, match=r"sigma_decay must be a finite number in"):
        ESConfig(sigma_decay=0.0)
    with pytest.raises(ValueError, match="seed must be"):
        tiny_meta(seed=-1)
    with pytest.raises(ValueError, match="learning_rate must be"):
        adam(learning_rate=float("nan"))


# 2. DIVERGENCE IS A RESULT -----------------------------------------------------------
def _widen_learning_rates(monkeypatch):
    """Learning rates above 1 are refused (options, optimizers, grids); the tests
    below widen the range to force an overflow (SGD or Adam at 1e30)."""
    from lopt import validation
    from lopt.optim.handcrafted import HYPERPARAM_RANGES

    wide = validation.Range(low=0, low_open=True)
    for name in ("lr", "lrs"):
        monkeypatch.setitem(validation.OPTION_RANGES, name, wide)
    monkeypatch.setitem(HYPERPARAM_RANGES, "learning_rate", wide)


def test_each_update_says_whether_the_run_is_still_finite(monkeypatch):
    _widen_learning_rates(monkeypatch)
    config = tiny_ppo()
    good, _ = run_seeds(config, adam(1e-3), [0, 1])
    assert good["finite"].shape == (2, config.num_updates)
    assert good["finite"].all()
    # SGD at 1e30 throws the parameters past float32's range in its first steps.
    bad, _ = run_seeds(config, sgd(1e30), [0, 1])
    assert not bad["finite"][:, -1].any()
    first = [int(np.argmin(row)) + 1 for row in bad["finite"]]
    assert diverged_at(bad["finite"]) == first
    assert diverged_at(np.array([[True, True], [True, False]])) == [None, 2]


def test_the_flag_leaves_the_run_as_it_was():
    # The flag is computed beside the update; the numbers are those of a run
    # without it (the same as the update with the flag dropped by select).
    config = tiny_ppo()
    with_flag, _ = run_seeds(config, adam(1e-3), [0])
    without = Executor(config, adam(1e-3), select=lambda m: {"return": m["return"]})
    metrics, _ = without(seed_keys([0]))
    np.testing.assert_array_equal(with_flag["return"], metrics["return"])


def test_train_marks_diverged_seeds_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    _widen_learning_rates(monkeypatch)
    out = tmp_path / "run"
    args = ["--optimizer", "sgd", "--lr", "1e30", "--no-progress", "--out"]
    code, _, err = run_cli([*TRAIN, *args, str(out)], capsys)
    assert code == cli.EXIT_DIVERGED
    assert "lopt: warning: 2 of 2 seeds diverged" in err
    assert "every seed diverged" in err
    summary = strict_json(out / "summary.json")
    assert summary["diverged_seeds"] == [0, 1]
    assert all(isinstance(u, int) and u >= 1 for u in summary["diverged_at_update"])
    assert summary["status"] == "finished"
    finite = np.load(out / "metrics.npz")["finite"]
    assert diverged_at(finite) == summary["diverged_at_update"]


def test_json_is_strict_and_non_finite_numbers_are_null(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [np.float32("inf"), 1]})
    assert strict_json(tmp_path / "a.json") == {"x": None, "y": [None, 1]}


def test_report_shows_diverged_runs():
    from lopt.analysis.report import _cell, diverged_runs, notes

    finite = np.array([[True, True, True], [True, False, False]])
    curves = [
        _curves("adam", finite=np.ones((2, 3), bool)),
        _curves("sgd", finite=finite),
    ]
    diverged = diverged_runs(curves)
    assert diverged == {"cartpole": {"sgd": {"seeds": [1], "at_update": [None, 2]}}}
    summary = {"diverged": diverged, "num_seeds": 2, "normalised_skipped": None}
    assert notes(summary) == [
        "Diverged: sgd on cartpole, 1 of 2 seeds (non-finite parameters, losses or "
        "updates; counted from the first seed, 0): seed 1 at update 2."
    ]
    assert _cell({"point": float("nan"), "low": 0.0, "high": 1.0}) == "diverged"


def _curves(name, finite):
    from lopt.runs.evaluation import Curves

    returns = np.ones(finite.shape)
    return Curves("cartpole", name, np.arange(3), {"return": returns, "finite": finite})


def test_tuning_never_picks_a_setting_that_diverged_on_a_seed():
    from lopt.runs.tuning import TuningError, best_setting

    final = np.array([[10.0, 10.0], [5.0, 5.0]])
    assert best_setting(final) == 0
    diverged = np.array([[False, True], [False, False]])
    assert best_setting(final, diverged=diverged) == 1
    with pytest.raises(TuningError, match="every setting diverged"):
        best_setting(final, diverged=np.ones((2, 2), bool))


@pytest.mark.heavy
def test_tune_skips_a_diverging_learning_rate(tmp_path, capsys, monkeypatch):
    _widen_learning_rates(monkeypatch)
    out = tmp_path / "tune"
    args = "tune --env cartpole --lrs 1e30 1e-3 --b2s 0.99 --anneal off --seeds 2"
    args += " --total-timesteps 1024 --no-progress --out"
    code, _, err = run_cli([*args.split(), str(out)], capsys)
    assert code == 0, err
    assert "1 of 2 settings diverged" in err
    summary = strict_json(out / "summary.json")
    assert [s["diverged"] for s in summary["settings"]] == [True, False]
    assert strict_json(out / "tuned.json")["hyperparams"]["learning_rate"] == 1e-3


def test_meta_training_stops_when_the_mean_is_not_finite(tmp_path, monkeypatch):
    real = MetaTrainer.generation

    def generation(self, state, g):
        state, result = real(self, state, g)
        if g == 1:  # the second generation leaves a NaN in the mean
            state = state.replace(mean=state.mean.at[0].set(jnp.nan))
        return state, result

    monkeypatch.setattr(MetaTrainer, "generation", generation)
    with pytest.raises(MetaTrainingDivergedError, match="generation 2: the ES mean"):
        meta_train(tiny_meta(), tmp_path)
    assert checkpoint.resume_generation(tmp_path) == 1
    assert not (tmp_path / "optimizer.npy").exists()
    assert [r["generation"] for r in read_metrics(tmp_path)] == [0, 1]
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}"))


def test_an_optimizer_file_is_never_written_non_finite(tmp_path):
    from lopt.optim.files import OptimizerFileError, save_learned
    from lopt.optim.network import OPENConfig, zeros_meta_params

    meta = zeros_meta_params(OPENConfig.small())
    meta = jax_tree_set_nan(meta)
    with pytest.raises(OptimizerFileError, match="not finite"):
        save_learned(tmp_path / "o.npy", meta, OPENConfig.small())
    assert not (tmp_path / "o.npy").exists()


def jax_tree_set_nan(tree):
    import jax

    leaves, treedef = jax.tree.flatten(tree)
    leaves[0] = jnp.full_like(leaves[0], jnp.nan)
    return jax.tree.unflatten(treedef, leaves)


# 3. RUN DIRECTORIES --------------------------------------------------------------
def test_a_run_directory_is_claimed_by_one_process(tmp_path):
    out = tmp_path / "run"
    prepare_run_dir(out, overwrite=False)
    try:
        script = (
            "import sys; from lopt.runs.rundir import prepare_run_dir\n"
            "try:\n    prepare_run_dir(sys.argv[1], overwrite=True)\n"
            "except ValueError as err:\n    print(err)\n"
        )
        found = subprocess.run(
            [sys.executable, "-c", script, str(out)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        assert "is in use by another lopt run (process" in found.stdout
        assert str(os.getpid()) in found.stdout
    finally:
        release_run_dir(out)
    # Released: the directory (holding only the lock file) is free and empty.
    prepare_run_dir(out, overwrite=False)
    release_run_dir(out)
    (out / "summary.json").write_text("{}")
    with pytest.raises(RunDirectoryError, match="already holds results"):
        prepare_run_dir(out, overwrite=False)


def test_set_aside_moves_an_old_run_out_of_the_way(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "es_state_gen000003.npz").write_text("old")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / LOCK_NAME).write_text("")
    moved = set_aside(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, moved.name]
    assert (moved / "checkpoints" / "es_state_gen000003.npz").read_text() == "old"
    assert checkpoint.resume_generation(tmp_path) == 0
    assert set_aside(tmp_path) is None


@contextlib.contextmanager
def _read_only(path: Path):
    """``path`` made unwritable, also for root (which ignores permissions): the
    immutable attribute (chattr +i) when running as root."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot make a directory immutable: {done.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_unwritable_directory_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with _read_only(out):
        code, _, err = run_cli(
            [*TRAIN, "--out", str(out), "--overwrite", "--no-progress"], capsys
        )
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"lopt: error: cannot write to {out} (")
    assert err.strip().endswith("); choose another --out")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


@pytest.mark.heavy
def test_two_trainings_aimed_at_one_directory(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lopt.cli",
                *TRAIN[:3],
                "--seeds",
                str(n),
                "--total-timesteps",
                "2048",
                "--out",
                str(out),
                "--no-progress",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in (1, 2)
    ]
    results = [(r.wait(), r.stderr.read()) for r in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another lopt run" in loser or "already holds results" in loser
    winner = [n for (code, _), n in zip(results, (1, 2), strict=True) if code == 0]
    assert len(strict_json(out / "summary.json")["final_returns"]) == winner[0]


# 4. RESUMING ------------------------------------------------------------------------
def _stored_run(tmp_path, generations_done: int = 0) -> Path:
    """A meta-training directory holding config.json and checkpoints (fake ES
    states: nothing here trains)."""
    run = tmp_path / "meta"
    write_json(run / "config.json", {"command": [], "config": to_dict(tiny_meta())})
    for g in range(1, generations_done + 1):
        checkpoint.save_checkpoint(run, g, {"mean": jnp.full(3, float(g))})
    return run


def test_resume_refuses_settings_that_differ(tmp_path, capsys):
    run = _stored_run(tmp_path)
    code, _, err = run_cli(
        ["meta-train", "--resume", str(run), "--population", "8", "--sigma", "0.5"],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "--population 8 (the run has 4), --sigma 0.5 (the run has 0.1)" in err
    # The same values are harmless; what picks tasks cannot be given at all.
    code, _, err = run_cli(
        ["meta-train", "--resume", str(run), "--envs", "cartpole"], capsys
    )
    assert code == 2 and "leave out --envs" in err


def test_resume_refuses_fewer_generations_than_done(tmp_path, capsys):
    run = _stored_run(tmp_path, generations_done=3)
    code, _, err = run_cli(
        ["meta-train", "--resume", str(run), "--generations", "2"], capsys
    )
    assert code == 2
    assert "has done 3 generations; --generations 2 would end before them" in err


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:100] + bytes([b[100] ^ 0x10]) + b[101:],  # one bit flipped
        lambda b: b"",  # empty
    ],
    ids=["truncated", "bit-flipped", "empty"],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, damage):
    run = _stored_run(tmp_path, generations_done=2)
    path = checkpoint.checkpoint_path(run, 2)
    path.write_bytes(damage(path.read_bytes()))
    reports = []
    generation, state = checkpoint.load_latest(
        run, {"mean": jnp.zeros(3)}, reports.append
    )
    assert generation == 1
    np.testing.assert_array_equal(state["mean"], [1.0, 1.0, 1.0])
    assert len(reports) == 1 and "generation 2 skipped" in reports[0]
    assert checkpoint.resume_generation(run) == 1


def test_checkpoints_without_checksums(tmp_path):
    run = _stored_run(tmp_path, generations_done=2)
    # The newest lost its checksum (the writer died between the two files).
    checkpoint.checkpoint_path(run, 2).with_suffix(".npz.json").unlink()
    assert checkpoint.resume_generation(run) == 1
    # A run from before checksums: trusted if it loads.
    checkpoint.checkpoint_path(run, 1).with_suffix(".npz.json").unlink()
    assert checkpoint.resume_generation(run) == 2
    # Every checkpoint damaged: refused, not restarted from scratch.
    for g in (1, 2):
        checkpoint.checkpoint_path(run, g).write_bytes(b"")
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint can be"):
        checkpoint.load_latest(run, {"mean": jnp.zeros(3)})


@pytest.mark.heavy
def test_overwrite_resume_and_damage_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "meta"
    base = ["meta-train", "--envs", "cartpole", "--total-timesteps", "512"]
    base += ["--population", "2", "--save-every", "1", "--no-progress"]
    assert run_cli([*base, "--generations", "3", "--out", str(out)], capsys)[0] == 0
    # A new run over the old one: nothing of the old one can be resumed.
    code, printed, _ = run_cli(
        [*base, "--generations", "1", "--seed", "1", "--overwrite", "--out", str(out)],
        capsys,
    )
    assert code == 0 and "the old run's files moved to" in printed
    assert checkpoint.resume_generation(out) == 1
    code, _, err = run_cli(
        ["meta-train", "--resume", str(out), "--generations", "3", "--no-progress"],
        capsys,
    )
    assert code == 0, err
    assert [r["generation"] for r in read_metrics(out)] == [0, 1, 2, 3]
    config = strict_json(out / "config.json")
    assert config["config"]["seed"] == 1
    assert config["config"]["es"]["num_generations"] == 3
    # A damaged newest checkpoint: reported, the one before it used.
    path = checkpoint.checkpoint_path(out, 3)
    path.write_bytes(path.read_bytes()[:-7])
    code, _, err = run_cli(
        ["meta-train", "--resume", str(out), "--generations", "4", "--no-progress"],
        capsys,
    )
    assert code == 0
    assert "lopt: warning: checkpoint of generation 3 skipped" in err
    assert [r["generation"] for r in read_metrics(out)] == [0, 1, 2, 3, 4]


# 5. INTERRUPTS ----------------------------------------------------------------------
def test_the_executor_stops_between_chunks():
    config = tiny_ppo()
    executor = Executor(config, adam(1e-3), chunk=1)
    asked = []
    metrics, _ = executor(seed_keys([0, 1]), stop=lambda: asked.append(1) or True)
    assert metrics["return"].shape == (2, 1) and len(asked) == 1
    whole, _ = executor(seed_keys([0, 1]))
    np.testing.assert_array_equal(whole["return"][:, :1], metrics["return"])


class _SignallingBar:
    """A progress bar that sends ``signum`` to this process after the first chunk."""

    def __init__(self, signum):
        self.n, self.signum = 0, signum

    def update(self, n):
        self.n += n
        if self.signum is not None:
            os.kill(os.getpid(), self.signum)
            self.signum = None

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_the_updates_done(tmp_path, capsys, monkeypatch, signum):
    monkeypatch.setattr(cli, "_progress_bar", lambda *a: _SignallingBar(signum))
    out = tmp_path / "run"
    before = signal.getsignal(signum)
    # As in a terminal (a background job of a script starts with SIGINT ignored).
    monkeypatch.setattr(signal, "getsignal", lambda s: signal.default_int_handler)
    # 8 updates in chunks of 1: the run stops after the first.
    code, _, err = run_cli(
        [*TRAIN[:5], "--total-timesteps", "4096", "--out", str(out)], capsys
    )
    assert code == 128 + signum
    assert f"lopt: stopped by {signal.Signals(signum).name}" in err
    summary = strict_json(out / "summary.json")
    assert summary["status"] == "partial"
    assert (summary["updates_done"], summary["updates_planned"]) == (1, 8)
    assert len(summary["final_returns"]) == 2
    returns = np.loadtxt(out / "returns.csv", delimiter=",", skiprows=1, ndmin=2)
    assert returns.shape == (1, 4)
    monkeypatch.undo()
    assert signal.getsignal(signum) is before  # the command's handler is gone


def test_an_ignored_signal_stays_ignored():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with cli._stoppable("stopping"):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGTERM))
    finally:
        signal.signal(signal.SIGINT, old)


def _wait_for(predicate, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.heavy
def test_ctrl_c_during_lopt_train_writes_a_partial_run(tmp_path):
    out = tmp_path / "run"
    err_path = tmp_path / "err.txt"
    # Ctrl-C as in a terminal: not ignored, as it is in a script's background job
    # (which may be running these tests) and in the processes it starts.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(err_path, "w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lopt.cli",
                *TRAIN[:5],
                "--total-timesteps",
                "200000",
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        signal.signal(signal.SIGINT, previous)
        # tqdm shows the updates done: wait for the first chunk (15 of 390).
        assert _wait_for(lambda: " 15/390 " in err_path.read_text())
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=300) == 130
    summary = strict_json(out / "summary.json")
    assert summary["status"] == "partial" and summary["stopped_by"] == "SIGINT"
    assert 15 <= summary["updates_done"] < 390
    assert "Traceback" not in err_path.read_text()


@pytest.mark.heavy
def test_sigterm_during_meta_training_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "meta"
    args = ["meta-train", "--envs", "cartpole", "--total-timesteps", "512"]
    args += ["--population", "2", "--generations", "50", "--save-every", "100"]
    process = subprocess.Popen(
        [sys.executable, "-m", "lopt.cli", *args, "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert _wait_for(lambda: len(read_metrics(out)) >= 2)  # generation 1 done
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    assert f"Resume with: lopt meta-train --resume {out}" in err
    done = checkpoint.resume_generation(out)
    assert done >= 1 and not (out / "optimizer.npy").exists()
    assert [r["generation"] for r in read_metrics(out)] == list(range(done + 1))


# 6. EVERY USER ERROR IS ONE LINE ---------------------------------------------------
@pytest.fixture
def files(tmp_path):
    """Bad inputs: a plain file, a directory, broken JSON, a tuned file with NaN."""
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "dir").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    tuned = {
        "format": "lopt-tuned/1",
        "env": "classic/cartpole",
        "optimizer": "adam",
        "hyperparams": {"learning_rate": float("nan"), "anneal": True},
        "baseline_return": 1.0,
    }
    (tmp_path / "nan_tuned.json").write_text(json.dumps(tuned))
    (tmp_path / "run" / "config.json").parent.mkdir()
    (tmp_path / "run" / "config.json").write_text('{"config": {"tasks": 3}}')
    return tmp_path


BAD_INVOCATIONS = [
    (["train", "--seed", "-1"], "--seed must be a whole number in [0, 4294967295]"),
    (["train", "--seed", "4294967295"], "runs past the last seed"),
    (["train", "--lr", "nan"], "--lr must be a finite number in (0, 1] (got nan)"),
    (["train", "--lr", "-1"], "--lr must be a finite number in (0, 1] (got -1.0)"),
    (
        ["train", "--lr", "1e9"],
        "--lr must be a finite number in (0, 1] (got 1000000000.0)",
    ),
    (["train", "--total-timesteps", "0"], "--total-timesteps must be"),
    (["train", "--out", "{file}"], "{file} exists and is not a directory"),
    (["train", "--out", "{file}/run"], "cannot create {file}/run: {file} is a file"),
    (["train", "--tuned", "{dir}"], "{dir}: cannot read it (Is a directory)"),
    (["train", "--tuned", "{bad.json}"], "{bad.json}: not JSON"),
    (["train", "--tuned", "{nan_tuned.json}"], "learning_rate must be a finite"),
    (["train", "--optimizer", "open:{dir}"], "{dir}: no such file"),
    (["train", "--optimizer", "open:{garbage.npy}"], "{garbage.npy}: unreadable"),
    (
        ["tune", "--lrs", "nan", "1e-3"],
        "--lrs must be a finite number in (0, 1] (got nan)",
    ),
    (["tune", "--b2s", "1.0"], "--b2s must be a finite number in [0, 1)"),
    (["tune", "--max-parallel", "0"], "--max-parallel must be a whole number >= 1"),
    (["eval", "--seeds", "1"], "--seeds must be at least 2"),
    (["eval", "--reps", "0"], "--reps must be a whole number >= 1"),
    (["meta-train", "--sigma", "0"], "--sigma must be a finite number > 0 (got 0.0)"),
    (["meta-train", "--sigma", "-1"], "--sigma must be a finite number > 0"),
    (["meta-train", "--lr", "nan"], "--lr must be a finite number in (0, 1] (got nan)"),
    (["meta-train", "--sigma-decay", "1.5"], "--sigma-decay must be a finite number"),
    (["meta-train", "--population", "3"], "--population must be an even whole"),
    (["meta-train", "--seed", "-1"], "--seed must be a whole number"),
    (["meta-train", "--resume", "{dir}"], "{dir}/config.json: cannot read it"),
    (["meta-train", "--resume", "{file}"], "{file}/config.json: cannot read it"),
    (["meta-train", "--resume", "{run}"], "not a meta-training run's configuration"),
    (
        ["meta-train", "--envs", "cartpole", "--init-from", "{garbage.npy}"],
        "{garbage.npy}: unreadable",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INVOCATIONS)
def test_a_bad_invocation_is_one_error_line(files, capsys, args, message):
    names = {f"{{{p.name}}}": str(p) for p in files.iterdir()}

    def fill(text):
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    args = [fill(a) for a in args]
    if "--out" not in args and "--resume" not in args:
        args += ["--out", str(files / "out")]
    code, _, err = run_cli([*args, "--no-progress"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lopt: error: "), err
    assert fill(message) in lines[0]
    assert not (files / "out" / "summary.json").exists()
