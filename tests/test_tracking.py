"""Experiment tracking (--log tensorboard|wandb), optimizer cards from the command
line (lopt info) and the horizon warning."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lopt.cli import main
from lopt.runs.tracking import TrackingError, check_kinds, per_update, scalars

from tiny import BREAKOUT

TINY = ["--env", "cartpole", "--total-timesteps", "2048", "--seeds", "2"]


def read_events(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files under ``directory``: the
    TFRecord framing (length, CRC, data, CRC) read by hand, the events by
    tensorboardX's protobuf."""
    from tensorboardX.proto import event_pb2

    scalars_found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars_found.setdefault(value.tag, []).append(
                        (event.step, value.simple_value)
                    )
    return scalars_found


def read_wandb_history(path: Path) -> list[dict[str, float]]:
    """The history rows of an offline W&B run file: LevelDB's log format (32 KiB
    blocks of records with a 7-byte header: CRC, length, type) read by hand, the
    records by wandb's own protobuf."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, rows, pieces = path.read_bytes(), 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = struct.unpack("<H", data[pos + 4 : pos + 6])[0], data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # padding to the block's end
            pos += left
            continue
        pieces += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or its last piece
            record = wandb_internal_pb2.Record.FromString(pieces)
            pieces = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {
                        i.key or "/".join(i.nested_key): json.loads(i.value_json)
                        for i in record.history.item
                    }
                )
    return rows


def test_records_from_metrics_by_hand():
    metrics = {
        "return": np.array([[1.0, 2.0], [3.0, 6.0]]),  # (seeds, updates)
        "cos_momentum": np.zeros((2, 2, 6)),  # not a scalar per update: left out
    }
    records = per_update(metrics, seeds=[7, 8])
    assert records == [
        {"return/mean": 2.0, "return/seed_7": 1.0, "return/seed_8": 3.0},
        {"return/mean": 4.0, "return/seed_7": 2.0, "return/seed_8": 6.0},
    ]
    nested = {"generation": 3, "fitness": {"mean": 1.5, "non_finite": 0}, "x": None}
    assert scalars(nested) == {"generation": 3.0, "fitness/mean": 1.5,
                               "fitness/non_finite": 0.0}  # fmt: skip
    with pytest.raises(TrackingError, match="unknown --log mlflow"):
        check_kinds(["mlflow"])


def test_train_logs_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX")
    out = tmp_path / "run"
    main(["train", *TINY, "--out", str(out), "--no-progress", "--log", "tensorboard"])
    found = read_events(out / "tensorboard")
    returns = np.loadtxt(out / "returns.csv", delimiter=",", skiprows=1)
    # Every update's mean return over the two seeds, at its update number.
    steps, values = zip(*found["return/mean"], strict=True)
    assert list(steps) == list(range(1, len(returns) + 1))
    np.testing.assert_allclose(values, returns[:, 2:].mean(axis=1), rtol=1e-5)
    assert {"return/seed_0", "dormant_fraction/mean", "update_magnitude/mean"} <= set(
        found
    )


@pytest.mark.heavy
def test_train_logs_to_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    main(["train", *TINY, "--out", str(out), "--no-progress", "--log", "wandb"])
    runs = list((out / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1
    rows = [r for r in read_wandb_history(runs[0]) if "return/mean" in r]
    returns = np.loadtxt(out / "returns.csv", delimiter=",", skiprows=1)
    assert [r["update"] for r in rows] == list(range(1, len(returns) + 1))
    np.testing.assert_allclose(
        [r["return/mean"] for r in rows], returns[:, 2:].mean(axis=1), rtol=1e-5
    )


def test_an_unknown_tracker_is_refused_before_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *TINY, "--out", str(tmp_path / "r"), "--log", "mlflow"])
    assert exit_info.value.code == 2
    assert "unknown --log mlflow" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not BREAKOUT.exists(), reason="released optimizers not available")
def test_info_prints_the_card_and_train_warns_off_horizon(tmp_path, capsys):
    main(["info", str(BREAKOUT)])
    card = capsys.readouterr().out
    assert "10,000,000 frames" in card and "39,040 optimizer steps" in card
    main(
        [
            "train",
            "--env",
            "breakout",
            "--preset",
            "small",
            "--total-timesteps",
            "4096",
            "--seeds",
            "1",
            "--optimizer",
            f"open:{BREAKOUT}",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert err.count("lopt: warning:") == 1
    assert "was meta-trained at 39,040 optimizer steps" in err


def test_info_refuses_a_file_that_is_not_an_optimizer(tmp_path, capsys):
    path = tmp_path / "x.npy"
    path.write_text("not numpy")
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("lopt: error:")
