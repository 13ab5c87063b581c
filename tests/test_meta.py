"""Meta-training: the ES, population evaluation, checkpoints and resuming."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.configs.presets import task_for
from lopt.meta import checkpoint, strategy
from lopt.meta.config import ESConfig, MetaTrainConfig, TaskConfig
from lopt.meta.fitness import combine_tasks, pairwise, to_minimisation
from lopt.meta.loop import (
    MetaTrainer,
    meta_train,
    read_metrics,
    rollout_keys,
    tail_return,
)
from lopt.optim.files import load_open
from lopt.optim.network import OPENConfig, ravel_meta_params, zeros_meta_params
from lopt.rl.executor import Executor, MemberShardingError, member_mesh

from tiny import host_devices_flags, tiny_ppo


def tiny_config(**settings) -> MetaTrainConfig:
    return MetaTrainConfig(
        tasks=(TaskConfig(config=tiny_ppo(total_timesteps=64), baseline_return=1.0),),
        es=ESConfig(population_size=4, num_generations=4, sigma=0.1, lr=0.05),
        **{"save_every": 1, "eval_every": 2, "num_eval_seeds": 2, **settings},
    )


def test_fitness_flips_sign_once_and_handles_nan():
    raw = [jnp.array([1.0, jnp.nan, 3.0, jnp.inf])]
    combined = combine_tasks(raw, [2.0])
    np.testing.assert_array_equal(combined, [0.5, -np.inf, 1.5, -np.inf])
    np.testing.assert_array_equal(to_minimisation(combined)[:1], [-0.5])
    multi = combine_tasks([jnp.array([2.0, 4.0]), jnp.array([10.0, 0.0])], [2.0, 10.0])
    np.testing.assert_allclose(multi, [1.0, 1.0])


def _open_es(pop=6):
    es = ESConfig(population_size=pop, sigma=0.1, lr=0.05)
    template = {"w": jnp.zeros(5)}
    algo = strategy.make_strategy(es, template)
    return algo, strategy.init_state(algo, jax.random.key(0), template)


def test_antithetic_pairs():
    algo, state = _open_es()
    population, _ = algo.ask(jax.random.key(1), state, algo.default_params)
    w = population["w"]
    np.testing.assert_allclose(w[:3] + w[3:], 0.0, atol=1e-7)
    assert np.abs(w).min() > 0


def test_member_with_higher_return_is_moved_toward():
    algo, state = _open_es()
    population, state = algo.ask(jax.random.key(1), state, algo.default_params)
    fitness = jnp.array([5.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # member 0 is best
    new, _ = algo.tell(
        jax.random.key(2),
        population,
        to_minimisation(fitness),
        state,
        algo.default_params,
    )
    step = np.asarray(new.mean)
    direction = np.asarray(population["w"][0])
    assert step @ direction > 0
    assert np.isfinite(step).all()


def test_nan_fitness_never_reaches_the_state():
    algo, state = _open_es()
    population, state = algo.ask(jax.random.key(1), state, algo.default_params)
    raw = jnp.array([1.0, jnp.nan, 2.0, 0.5, jnp.nan, 3.0])
    fitness = combine_tasks([raw], [1.0])
    new, _ = algo.tell(
        jax.random.key(2),
        population,
        to_minimisation(fitness),
        state,
        algo.default_params,
    )
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(new.mean))
    assert np.isfinite(np.asarray(new.opt_state[0].mu)).all()


def test_genetic_strategy_mutates_copies_of_the_best():
    es = ESConfig(strategy="ga", population_size=4, sigma=0.1)
    template = {"w": jnp.zeros(3)}
    algo = strategy.make_strategy(es, template)
    state = strategy.init_state(algo, jax.random.key(0), {"w": jnp.ones(3)})
    population, state = algo.ask(jax.random.key(1), state, algo.default_params)
    np.testing.assert_allclose(population["w"], 1.0, atol=0.5)  # copies of the mean
    fitness = jnp.array([0.0, 10.0, 1.0, 2.0])
    state, _ = algo.tell(
        jax.random.key(2),
        population,
        to_minimisation(fitness),
        state,
        algo.default_params,
    )
    np.testing.assert_array_equal(
        strategy.current_solution(algo, state), population["w"][1]
    )


def test_one_generation_is_jitted_and_moves_the_mean():
    trainer = MetaTrainer(tiny_config())
    state = trainer.init_state()
    assert float(jnp.abs(state.mean).max()) == 0.0  # ES starts from zeros
    state, result = trainer.generation(state, 0)
    assert result["raw"][0].shape == (4,)
    assert np.isfinite(result["raw"][0]).all()
    assert float(jnp.abs(state.mean).max()) > 0.0


def test_population_must_divide_over_devices():
    with pytest.raises(MemberShardingError, match="multiple of 2"):
        member_mesh(3, devices=[jax.devices()[0]] * 2)


SHARDING_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    from lopt.meta.loop import MetaTrainer
    from test_meta import tiny_config

    trainer = MetaTrainer(tiny_config())
    state = trainer.init_state()
    fitness = []
    for generation in range(2):
        state, result = trainer.generation(state, generation)
        fitness.append(np.asarray(result["raw"][0]))
    params = trainer.strategy.default_params
    population, _ = trainer.strategy.ask(jax.random.key(0), state, params)
    keys = jax.random.split(jax.random.key(0), 1)
    executor = trainer.populations[0]
    _, metrics = executor._functions()["whole"](*executor._place(keys, population))
    used = jax.tree.leaves(metrics)[0].sharding.device_set
    print(len(jax.devices()), len(used))
    np.save(sys.argv[1], np.stack(fitness + [np.asarray(state.mean)[:4]]))
    """
)


@pytest.mark.heavy
def test_two_host_devices_give_the_same_fitness_as_one(tmp_path):
    results = {}
    for count in (1, 2):
        env = {
            **os.environ,
            "XLA_FLAGS": host_devices_flags(count),
            "PYTHONPATH": os.path.dirname(__file__),
        }
        out = subprocess.run(
            [sys.executable, "-c", SHARDING_SCRIPT, str(tmp_path / f"{count}.npy")],
            capture_output=True,
            text=True,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[-2:] == [str(count), str(count)]
        results[count] = np.load(tmp_path / f"{count}.npy")
    # Each device runs the one-device program on its own members: the same bits.
    np.testing.assert_array_equal(results[1], results[2])


def test_a_stopped_run_resumes_bit_identical(tmp_path):
    """Stopped at a generation boundary (Ctrl-C's path), a run checkpoints there
    even off its save_every; resumed, it ends as the run that never stopped."""
    config = tiny_config(save_every=3)
    whole = meta_train(config, tmp_path / "whole")
    asked = []
    # Asked before each generation: the third time, after generation 2.
    stop = lambda: asked.append(1) or len(asked) > 2  # noqa: E731
    stopped = meta_train(config, tmp_path / "resumed", stop=stop)
    assert stopped == {
        "interrupted": True,
        "generation": 2,
        "checkpoint": str(checkpoint.checkpoint_path(tmp_path / "resumed", 2)),
    }
    assert not (tmp_path / "resumed" / "optimizer.npy").exists()
    assert not (tmp_path / "resumed" / "summary.json").exists()
    assert checkpoint.resume_generation(tmp_path / "resumed") == 2
    # Generation 3 ran and then "the process died" before its checkpoint.
    (tmp_path / "resumed" / "metrics.jsonl").open("a").write('{"generation": 3, "tor')
    resumed = meta_train(config, tmp_path / "resumed", resume=True)
    assert resumed["generations"] == 4
    a = np.load(tmp_path / "whole" / "optimizer.npy")
    b = np.load(tmp_path / "resumed" / "optimizer.npy")
    assert a.tobytes() == b.tobytes()
    assert np.abs(a).max() > 0
    generations = [r["generation"] for r in read_metrics(tmp_path / "resumed")]
    assert generations == [0, 1, 2, 3, 4]
    assert whole["heldout"] == resumed["heldout"]
    meta, config_loaded = load_open(whole["optimizer"])
    assert config_loaded == OPENConfig()
    np.testing.assert_array_equal(ravel_meta_params(meta), a)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path, 1, {"a": jnp.zeros(3)})
    with pytest.raises(checkpoint.CheckpointError, match="holds 1 arrays"):
        checkpoint.load_checkpoint(path, {"a": jnp.zeros(3), "b": jnp.zeros(1)})
    with pytest.raises(checkpoint.CheckpointError, match="shape"):
        checkpoint.load_checkpoint(path, {"a": jnp.zeros(4)})
    assert checkpoint.latest_checkpoint(tmp_path) == path


def test_warm_start_must_match_the_architecture(tmp_path):
    from lopt.optim.files import save_open

    path = save_open(
        tmp_path / "large.npy",
        zeros_meta_params(OPENConfig.large()),
        OPENConfig.large(),
    )
    config = dataclasses.replace(tiny_config(), init_from=str(path))
    with pytest.raises(ValueError, match="architecture"):
        MetaTrainer(config).init_state()


@pytest.mark.heavy
def test_meta_train_cli_one_generation(tmp_path, capsys):
    from lopt.cli import main

    out = tmp_path / "meta"
    main(
        [
            "meta-train",
            "--envs",
            "cartpole",
            "--total-timesteps",
            "512",
            "--population",
            "2",
            "--generations",
            "1",
            "--out",
            str(out),
            "--no-progress",
            "--cell",
            "lstm",
        ]
    )
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "optimizer.npy",
        "optimizer.json",
        "fitness.png",
        "heldout.png",
        "checkpoints",
        "summary.json",
    } <= names
    records = read_metrics(out)
    assert records[-1]["generation"] == 1
    assert set(records[-1]["fitness"]["classic/cartpole"]) >= {"mean", "max", "min"}
    assert "held-out return" in capsys.readouterr().out
    saved = json.loads((out / "optimizer.json").read_text())
    assert saved["config"]["cell"] == "lstm"
    # A run killed before its first line of metrics resumes from the start.
    (out / "metrics.jsonl").write_text("")
    shutil.rmtree(out / "checkpoints")
    main(["meta-train", "--resume", str(out), "--generations", "2", "--no-progress"])
    assert [r["generation"] for r in read_metrics(out)] == [0, 1, 2]
    main(
        [
            "train",
            "--env",
            "cartpole",
            "--optimizer",
            f"open:{out / 'optimizer.npy'}",
            "--seeds",
            "1",
            "--total-timesteps",
            "512",
            "--out",
            str(tmp_path / "t"),
            "--no-progress",
        ]
    )


def test_pairwise_fitness_by_hand():
    # Pairs (0, 3), (1, 4), (2, 5): first better, a tie, second better.
    raw = jnp.array([3.0, 1.0, 2.0, 1.0, 1.0, 5.0])
    np.testing.assert_array_equal(pairwise(raw), [1, 0, 0, 0, 1, 1])
    # The paper's minimising form: better -1, other 0; a tie: first 0, second -1.
    np.testing.assert_array_equal(to_minimisation(pairwise(raw)), [-1, 0, 0, 0, -1, -1])
    np.testing.assert_array_equal(pairwise(jnp.array([jnp.nan, 0.0])), [0, 1])


def test_antithetic_pairs_share_keys_and_pairs_differ():
    keys = rollout_keys(jax.random.key(0), 6, 2, antithetic=True)
    data = jax.random.key_data(keys)
    assert keys.shape == (6, 2)
    np.testing.assert_array_equal(data[:3], data[3:])
    assert len({tuple(np.ravel(d)) for d in data[:3]}) == 3
    shared = rollout_keys(jax.random.key(0), 6, 2, antithetic=False)
    assert shared.shape == (2,)


def test_gridworld_meta_training_is_antithetic():
    task = task_for("gridworld/rand_sparse")
    assert task.antithetic_tasks
    ppo = tiny_ppo(env="gridworld/rand_sparse", total_timesteps=64)
    config = dataclasses.replace(
        tiny_config(), tasks=(dataclasses.replace(task, config=ppo),)
    )
    trainer = MetaTrainer(config)
    start = trainer.init_state()
    state, result = trainer.generation(start, 0)
    moved = np.asarray(state.mean - start.mean)
    assert np.all(np.isfinite(moved)) and np.any(moved != 0)
    assert set(np.unique(np.asarray(result["fitness"]))) <= {0.0, 1.0}
    assert float(np.sum(result["fitness"])) == 2.0  # one "better" per pair
    with pytest.raises(ValueError, match="single task and --strategy open-es"):
        dataclasses.replace(config, es=ESConfig(population_size=4, strategy="ga"))


def test_antithetic_tasks_option_sets_the_task_and_is_checked():
    from lopt.cli import MetaTrain, _meta_config

    assert not _meta_config(MetaTrain()).tasks[0].antithetic_tasks
    assert _meta_config(MetaTrain(antithetic_tasks=True)).tasks[0].antithetic_tasks
    gridworld = MetaTrain(envs=("gridworld",), preset="small")
    assert _meta_config(gridworld).tasks[0].antithetic_tasks
    off = dataclasses.replace(gridworld, antithetic_tasks=False)
    assert not _meta_config(off).tasks[0].antithetic_tasks
    two = MetaTrain(envs=("breakout", "asterix"), antithetic_tasks=True)
    with pytest.raises(ValueError, match="needs a single task"):
        _meta_config(two)


def test_fitness_window_by_hand():
    returns = jnp.arange(24.0).reshape(2, 12)  # (runs, updates)
    final = tail_return(12, 0.0)({"return": returns})["return"]
    np.testing.assert_array_equal(final, [[11.0], [23.0]])
    half = tail_return(12, 0.5)({"return": returns})["return"]
    np.testing.assert_allclose(half, [[8.5], [20.5]])  # mean of updates 6..11
    whole = tail_return(12, 1.0)({"return": returns})["return"]
    np.testing.assert_allclose(whole, [[5.5], [17.5]])
    # A window shorter than one update is the final return.
    np.testing.assert_array_equal(
        tail_return(12, 0.01)({"return": returns})["return"], final
    )
    with pytest.raises(ValueError, match="fitness_window must be"):
        ESConfig(fitness_window=1.5)
    from lopt.cli import MetaTrain, _meta_config

    assert _meta_config(MetaTrain(fitness_window=0.25)).es.fitness_window == 0.25


def test_fitness_window_reads_the_runs_returns():
    """A generation's raw fitness with a window is the mean over those updates of
    the same runs' returns."""
    config = dataclasses.replace(
        tiny_config(),
        tasks=(TaskConfig(config=tiny_ppo(total_timesteps=256)),),
        es=ESConfig(population_size=4, sigma=0.1, fitness_window=0.5),
    )
    trainer = MetaTrainer(config)
    num_updates = config.tasks[0].config.num_updates
    state = trainer.init_state()
    population, _ = trainer.strategy.ask(
        jax.random.key(1), state, trainer.strategy.default_params
    )
    keys = rollout_keys(jax.random.key(2), 4, 1, antithetic=False)
    windowed, _ = trainer.populations[0](keys, population)
    full = Executor(
        config.tasks[0].config, trainer.families[0], members=True, keep_state=False
    )
    metrics, _ = full(keys, population)
    last = round(0.5 * num_updates)
    assert last >= 2  # more than the final return
    np.testing.assert_allclose(
        np.asarray(windowed["return"])[..., 0],
        np.asarray(metrics["return"])[..., -last:].mean(-1),
        rtol=1e-6,
    )


def test_learning_rate_warm_up_by_hand():
    es = ESConfig(lr=0.1, lr_decay=0.5, lr_limit=0.0, lr_warmup=3)
    # lr * decay**g * min(1, (g + 1) / 4)
    expected = [0.1 * 0.25, 0.05 * 0.5, 0.025 * 0.75, 0.0125, 0.00625]
    got = [float(strategy.lr_schedule(es)(g)) for g in range(5)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    plain = dataclasses.replace(es, lr_warmup=0)
    got = [float(strategy.lr_schedule(plain)(g)) for g in range(3)]
    np.testing.assert_allclose(got, [0.1, 0.05, 0.025], rtol=1e-6)
    with pytest.raises(ValueError, match="lr_warmup must be a whole number >= 0"):
        ESConfig(lr_warmup=-1)


def _favour_seed(monkeypatch, seed: int) -> None:
    """Tiny runs score alike; the held-out return is made to favour ES seed ``seed``."""

    def heldout(self, meta_params):
        favoured = jax.random.key_data(jax.random.key(seed))
        score = 2.0 if (jax.random.key_data(self.master_key) == favoured).all() else 1.0
        env = self.config.tasks[0].config.env
        return {env: {"mean": score, "iqm": score, "returns": [score], "non_finite": 0}}

    monkeypatch.setattr(MetaTrainer, "evaluate_heldout", heldout)


def test_best_of_finished_probes_is_the_result(tmp_path, monkeypatch):
    """--probe-generations equal to --generations: each probe runs to the end and
    the best one's optimizer is the run's, bit for bit, with nothing run after."""
    es = dataclasses.replace(
        tiny_config().es, num_generations=2, probes=2, probe_generations=2
    )
    config = dataclasses.replace(tiny_config(seed=7, eval_every=2), es=es)
    _favour_seed(monkeypatch, 1007)
    summary = meta_train(config, tmp_path / "best")
    assert summary["probes"]["chosen_seed"] == 1007
    chosen = tmp_path / "best" / "probes" / "seed1007"
    result = np.load(tmp_path / "best" / "optimizer.npy")
    assert result.tobytes() == np.load(chosen / "optimizer.npy").tobytes()
    other = np.load(tmp_path / "best" / "probes" / "seed7" / "optimizer.npy")
    assert result.tobytes() != other.tobytes()
    records = read_metrics(tmp_path / "best")
    assert [r["generation"] for r in records] == [0, 1, 2]


def test_probes_continue_the_best_as_its_own_run(tmp_path, monkeypatch):
    """Two probes run a generation each; the one with the better held-out score
    (here, by construction, the second) continues, and the run ends bit for bit
    as the plain run of its seed."""
    es = dataclasses.replace(
        tiny_config().es, num_generations=3, probes=2, probe_generations=1
    )
    config = dataclasses.replace(tiny_config(seed=5, eval_every=3), es=es)
    assert config.probe_seeds == (5, 1005)

    _favour_seed(monkeypatch, 1005)
    run = tmp_path / "probes"
    summary = meta_train(config, run)
    choice = json.loads((run / "probes.json").read_text())
    assert choice == {
        "generations": 1,
        "heldout_score": {"5": 1.0, "1005": 2.0},
        "chosen_seed": 1005,
    }
    assert summary["probes"] == choice
    for seed in config.probe_seeds:
        probe = json.loads(
            (run / "probes" / f"seed{seed}" / "summary.json").read_text()
        )
        assert probe["generations"] == 1
    plain = dataclasses.replace(
        config, seed=1005, es=dataclasses.replace(es, probes=1, probe_generations=0)
    )
    meta_train(plain, tmp_path / "alone")
    a = np.load(run / "optimizer.npy")
    assert a.tobytes() == np.load(tmp_path / "alone" / "optimizer.npy").tobytes()
    start = checkpoint.checkpoint_path(run, 1).read_bytes()
    assert (
        start == checkpoint.checkpoint_path(run / "probes" / "seed1005", 1).read_bytes()
    )
    records = read_metrics(run)
    assert [r["generation"] for r in records] == [0, 1, 2, 3]
    walls = [r["wall_time_s"] for r in records]
    assert walls == sorted(walls)


def test_probes_resume_from_any_stop(tmp_path):
    """Stopped inside the second probe, and again after the choice, a run with
    probes resumes to the same optimizer as one that never stopped."""
    es = dataclasses.replace(
        tiny_config().es, num_generations=4, probes=2, probe_generations=2
    )
    config = dataclasses.replace(tiny_config(eval_every=2), es=es)
    whole = meta_train(config, tmp_path / "whole")
    run = tmp_path / "stopped"
    for stop_at in (3, 2):
        asked = []
        stop = lambda: asked.append(1) or len(asked) > stop_at  # noqa: E731
        stopped = meta_train(config, run, stop=stop, resume=run.exists())
        assert stopped["interrupted"]
    # First after 2 generations of probe 0 and 1 of probe 1000; then 2 more.
    assert checkpoint.resume_generation(run / "probes" / "seed1000") == 2
    assert checkpoint.resume_generation(run) == 3
    resumed = meta_train(config, run, resume=True)
    assert resumed["heldout"] == whole["heldout"]
    a = np.load(tmp_path / "whole" / "optimizer.npy")
    assert a.tobytes() == np.load(run / "optimizer.npy").tobytes()
    assert [r["generation"] for r in read_metrics(run)] == [0, 1, 2, 3, 4]


def test_probe_settings_are_checked():
    from lopt.cli import MetaTrain, _meta_config

    with pytest.raises(ValueError, match="--probe-generations between 1 and"):
        ESConfig(num_generations=10, probes=3, probe_generations=0)
    with pytest.raises(ValueError, match="--probe-generations between 1 and"):
        ESConfig(num_generations=10, probes=3, probe_generations=11)
    assert ESConfig(num_generations=10, probes=3, probe_generations=10).probes == 3
    with pytest.raises(ValueError, match="probes must be a whole number >= 1"):
        ESConfig(probes=0)
    with pytest.raises(ValueError, match="past the last seed"):
        dataclasses.replace(
            tiny_config(seed=2**32 - 500),
            es=ESConfig(num_generations=4, probes=2, probe_generations=1),
        )
    config = _meta_config(MetaTrain(probes=3, probe_generations=5))
    assert config.probe_seeds == (0, 1000, 2000)
    # The probes are chosen on the held-out seeds; the comparison uses the next ones.
    assert config.comparison_seed_base == config.eval_seed_base + config.num_eval_seeds
    assert _meta_config(MetaTrain()).comparison_seed_base == 1_000_000
    assert config.probe(1000).es.num_generations == 5
    assert config.probe(1000).es.probes == 1


@pytest.mark.heavy
def test_meta_train_ends_with_the_tuned_comparison(tmp_path, capsys):
    """With a tuned baseline for its task, meta-training ends with lopt eval's
    comparison on the held-out seeds: IQM with intervals and P(learned > tuned)."""
    from lopt.cli import main
    from lopt.configs.tuned import TunedSettings, write_tuned

    tuned = tmp_path / "tuned.json"
    write_tuned(
        tuned,
        TunedSettings(
            env="classic/cartpole",
            optimizer="adam",
            hyperparams={"learning_rate": 3e-3, "anneal": True},
            baseline_return=20.0,
            num_seeds=2,
            total_timesteps=512,
        ),
    )
    out = tmp_path / "meta"
    main(
        [
            *("meta-train", "--envs", "cartpole", "--total-timesteps", "512"),
            *("--population", "2", "--generations", "1", "--tuned", str(tuned)),
            *("--out", str(out), "--no-progress"),
        ]
    )
    printed = capsys.readouterr().out
    line = [x for x in printed.splitlines() if x.startswith("classic/cartpole: IQM")]
    assert len(line) == 1 and "P(learned > adam" in line[0], printed
    summary = json.loads(
        (out / "comparison" / "classic_cartpole" / "summary.json").read_text()
    )
    assert summary["num_seeds"] == 16
    assert len(summary["final_returns"]["classic/cartpole"]) == 2
    # Resumed past its end (--resume takes no --tuned: the run kept a copy of the
    # file), after the original is gone: the new optimizer's comparison goes
    # beside the first, which stays; resumed again at the same end: nothing is
    # compared twice.
    tuned.unlink()
    resume = ["meta-train", "--resume", str(out), "--generations", "2"]
    main([*resume, "--no-progress"])
    assert (out / "comparison" / "classic_cartpole" / "summary.json").exists()
    again = out / "comparison" / "classic_cartpole-gen2"
    assert json.loads((again / "generation.json").read_text()) == {"generation": 2}
    capsys.readouterr()
    main([*resume, "--no-progress"])
    assert f"comparison on classic/cartpole is in {again}" in capsys.readouterr().out


def test_builtin_tuned_baselines_match_their_presets():
    """Every shipped tuned file is found for its preset at the budget it was tuned
    at, and only there (the default meta-training's comparison depends on it)."""
    from lopt.configs.presets import CPU_META, preset_for
    from lopt.configs.tuned import BUILTIN_DIR, builtin_tuned, read_tuned

    paths = sorted(BUILTIN_DIR.glob("*.json"))
    assert paths
    for path in paths:
        s = read_tuned(path)
        config = preset_for(s.env, s.preset, s.algo).config
        at = dataclasses.replace(config, total_timesteps=s.total_timesteps)
        assert builtin_tuned(at, s.preset) == path
        other = dataclasses.replace(config, total_timesteps=3 * s.total_timesteps)
        assert builtin_tuned(other, s.preset) is None
    task = CPU_META.tasks[0]
    assert builtin_tuned(task.config, task.preset) is not None
