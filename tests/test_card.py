"""Optimizer cards: what a learned optimizer was meta-trained on, and the horizon
warning."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from lopt.configs.presets import preset_for
from lopt.optim.card import (
    RELEASED_CARDS,
    card_from_dict,
    card_to_dict,
    format_card,
    horizon_mismatch,
    make_card,
    read_card,
    task_card,
)
from lopt.optim.files import save_learned
from lopt.optim.learned import make_config, zeros_meta_params
from lopt.optim.network import OPENConfig, init_meta_params
from lopt.optim.optim4rl import Optim4RLConfig

from tiny import BREAKOUT, PRETRAINED, tiny_ppo

needs_released = pytest.mark.skipif(
    not BREAKOUT.exists(), reason="../shared/pretrained is not available"
)


def test_released_horizons_from_the_papers_settings():
    # OPEN §3.5: NUM_UPDATES = TOTAL_TIMESTEPS // NUM_STEPS // NUM_ENVS, times
    # epochs x minibatches optimizer steps each.
    expected = {
        "breakout_OPEN.npy": [(10_000_000, 1220, 1220 * 4 * 8)],
        "ant_OPEN.npy": [(50_000_000, 2441, 2441 * 4 * 32)],
        "gridworld_OPEN.npy": [(30_000_000, 1464, 1464 * 2 * 16)],
        "multi_OPEN.npy": [(10_000_000, 1220, 39_040)] * 4,
    }
    for name, horizons in expected.items():
        card = RELEASED_CARDS[name]
        assert [(t.frames, t.num_updates, t.optimizer_steps) for t in card.tasks] == (
            horizons
        )
    assert RELEASED_CARDS["breakout_OPEN.npy"].tasks[0].optimizer_steps == 39_040
    assert RELEASED_CARDS["ant_OPEN.npy"].tasks[0].optimizer_steps == 312_448
    assert RELEASED_CARDS["gridworld_OPEN.npy"].tasks[0].optimizer_steps == 46_848
    multi = RELEASED_CARDS["multi_OPEN.npy"]
    assert [t.env for t in multi.tasks] == [
        "minatar/asterix",
        "minatar/breakout",
        "minatar/freeway",
        "minatar/spaceinvaders",
    ]
    assert len(RELEASED_CARDS) == 7


@pytest.mark.skipif(
    not list(PRETRAINED.glob("*.npy")), reason="../shared/pretrained is not available"
)
def test_every_released_file_has_its_card():
    for path in sorted(PRETRAINED.glob("*.npy")):
        assert read_card(path) is RELEASED_CARDS[path.name]


@needs_released
def test_released_card_is_found_by_content(tmp_path):
    renamed = tmp_path / "mine.npy"
    shutil.copy(BREAKOUT, renamed)
    assert read_card(renamed) is RELEASED_CARDS["breakout_OPEN.npy"]
    # Another file of the released name is not the released optimizer.
    changed = tmp_path / "breakout_OPEN.npy"
    values = np.load(BREAKOUT)
    values[0] += 1.0
    np.save(changed, values)
    assert read_card(changed) is None
    assert "no card" in format_card(changed)


@needs_released
def test_format_card_of_released_breakout():
    text = format_card(BREAKOUT)
    assert text.startswith("breakout_OPEN.npy: open (GRU 8, MLP 16), 1,211 meta-param")
    assert "ppo on minatar/breakout" in text
    assert "10,000,000 frames, 1,220 updates, 39,040 optimizer steps" in text
    assert "num_envs 64, num_steps 128, update_epochs 4, num_minibatches 8" in text
    assert "Goldie et al. 2024" in text
    assert "generations: unknown" in text


def _breakout_run(frames: int) -> int:
    preset = preset_for("breakout")
    config = dataclasses.replace(preset.config, total_timesteps=frames)
    return config.num_optimizer_steps


def test_horizon_warning_for_a_short_breakout_run():
    card = RELEASED_CARDS["breakout_OPEN.npy"]
    steps = _breakout_run(500_000)
    assert steps == 61 * 32
    warning = horizon_mismatch(card, steps, name="breakout_OPEN.npy")
    assert warning is not None
    assert "1,952 optimizer steps" in warning
    assert "breakout_OPEN.npy was meta-trained at 39,040 optimizer steps" in warning
    assert "20x faster" in warning
    assert horizon_mismatch(card, _breakout_run(10_000_000)) is None


def test_horizon_warning_beyond_a_factor_of_two_only():
    card = RELEASED_CARDS["breakout_OPEN.npy"]
    assert horizon_mismatch(card, 2 * 39_040) is None
    assert horizon_mismatch(card, 39_040 // 2) is None
    assert "2x slower" in horizon_mismatch(card, 2 * 39_040 + 1)
    assert horizon_mismatch(card, 39_040 // 2 - 1) is not None
    assert horizon_mismatch(None, 10) is None


def test_no_horizon_warning_without_training_prop():
    card = RELEASED_CARDS["breakout_OPEN.npy"]
    ablated = make_config("open", ablate=["training_prop"])
    assert (
        horizon_mismatch(dataclasses.replace(card, features=ablated.features), 10)
        is None
    )
    assert horizon_mismatch(dataclasses.replace(card, features=None), 10) is None


def test_multi_task_horizons_warn_only_away_from_all():
    card = RELEASED_CARDS["multi_OPEN.npy"]
    ant = RELEASED_CARDS["ant_OPEN.npy"].tasks[0]
    both = dataclasses.replace(card, tasks=(card.tasks[0], ant))
    assert horizon_mismatch(both, 300_000) is None
    assert horizon_mismatch(both, 40_000) is None
    warning = horizon_mismatch(both, 150_000)
    assert "39,040 to 312,448 optimizer steps" in warning


def _card(config, ppo):
    return make_card(
        config,
        [task_card(ppo, "ppo", preset="default", heldout_return=21.5)],
        es={"strategy": "open-es", "population_size": 4, "sigma": 0.1},
        generations=2,
        seed=7,
        heldout_seeds=16,
    )


@pytest.mark.parametrize("config", [OPENConfig(), Optim4RLConfig()], ids=str)
def test_card_round_trips_through_the_sidecar(tmp_path, config):
    ppo = tiny_ppo()
    card = _card(config, ppo)
    assert card.tasks[0].optimizer_steps == ppo.num_optimizer_steps == 3 * 2 * 2
    assert card.tasks[0].frames == ppo.total_timesteps
    assert card.jax_version == jax.__version__ and card.lopt_version
    path = save_learned(
        tmp_path / "opt.npy", zeros_meta_params(config), config, card=card, generation=2
    )
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["generation"] == 2 and sidecar["card"]["seed"] == 7
    assert read_card(path) == card
    text = format_card(path)
    assert (
        "ppo on cartpole (preset default): 96 frames, 3 updates, 12 optimizer" in text
    )
    assert "held-out return 21.5" in text
    assert "generations: 2; seed: 7; held-out seeds: 16" in text


def test_file_without_card(tmp_path):
    config = OPENConfig()
    path = save_learned(
        tmp_path / "old.npy",
        init_meta_params(jax.random.key(0), config),
        config,
        generation=3,
        envs=["cartpole"],
    )
    assert read_card(path) is None
    text = format_card(path)
    assert "no card" in text and '"generation": 3' in text


def test_card_from_dict_ignores_new_keys_and_refuses_broken_ones():
    card = _card(OPENConfig(), tiny_ppo())
    data = card_to_dict(card)
    data["from_a_newer_lopt"] = 1
    data["tasks"][0]["also_new"] = 2
    assert card_from_dict(data) == card
    del data["tasks"]
    with pytest.raises(ValueError, match="not a valid optimizer card"):
        card_from_dict(data)
