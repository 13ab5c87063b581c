"""Loading released and saved OPEN optimizers, and refusing bad files clearly."""

import numpy as np
import pytest

from lopt.optim.files import OptimizerFileError, load_open, save_open
from lopt.optim.network import OPENConfig, init_meta_params, ravel_meta_params

from tiny import PRETRAINED

RELEASED = sorted(PRETRAINED.glob("*.npy"))


@pytest.mark.skipif(not RELEASED, reason="../shared/pretrained is not available")
@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.name)
def test_every_released_optimizer_loads(path):
    meta, config = load_open(path)
    flat = np.load(path)
    assert flat.size in (1211, 3571)
    expected = OPENConfig.large() if path.name == "multi_OPEN.npy" else OPENConfig()
    assert config == expected
    np.testing.assert_array_equal(ravel_meta_params(meta), flat)


def test_save_and_load_round_trip_with_sidecar(tmp_path):
    import jax

    config = OPENConfig(cell="lstm")
    meta = init_meta_params(jax.random.key(0), config)
    path = save_open(tmp_path / "opt.npy", meta, config, generation=3)
    assert (tmp_path / "opt.json").exists()
    loaded, loaded_config = load_open(path)
    assert loaded_config == config
    np.testing.assert_array_equal(ravel_meta_params(loaded), ravel_meta_params(meta))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def _write(tmp_path, array, name="bad.npy"):
    path = tmp_path / name
    np.save(path, array, allow_pickle=True)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: np.zeros(1000, np.float32), r"1000 values; expected 1211 \(small\)"),
        (lambda: np.zeros(1211, np.int32), "int32"),
        (lambda: np.zeros((1211, 1), np.float32), r"shape \(1211, 1\)"),
        (lambda: np.array([{"a": 1}], dtype=object), "object array"),
        (
            lambda: np.where(np.arange(1211) == 7, np.nan, 0.0).astype(np.float32),
            "1 of 1211 values are NaN or infinite \\(first at index 7\\)",
        ),
        (
            lambda: np.where(np.arange(1211) >= 1200, np.inf, 0.0).astype(np.float32),
            "11 of 1211 values are NaN or infinite",
        ),
    ],
    ids=["wrong-length", "integers", "not-flat", "object", "nan", "inf"],
)
def test_bad_arrays_are_refused(tmp_path, make, message):
    path = _write(tmp_path, make())
    with pytest.raises(OptimizerFileError, match=message):
        load_open(path)


def test_truncated_file_is_refused(tmp_path):
    path = _write(tmp_path, np.zeros(1211, np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(OptimizerFileError, match="truncated"):
        load_open(path)


def test_non_npy_and_missing_files_are_refused(tmp_path):
    text = tmp_path / "notes.npy"
    text.write_text("not an array")
    with pytest.raises(OptimizerFileError, match=r"not a \.npy file"):
        load_open(text)
    with pytest.raises(OptimizerFileError, match="no such file"):
        load_open(tmp_path / "missing.npy")


def test_sidecar_that_disagrees_is_refused(tmp_path):
    import jax

    meta = init_meta_params(jax.random.key(0), OPENConfig())
    path = save_open(tmp_path / "opt.npy", meta, OPENConfig())
    sidecar = tmp_path / "opt.json"
    sidecar.write_text(
        sidecar.read_text().replace('"cell_features": 8', '"cell_features": 16')
    )
    with pytest.raises(OptimizerFileError, match="describes"):
        load_open(path)
    with pytest.raises(ValueError, match="do not match"):
        save_open(tmp_path / "other.npy", meta, OPENConfig.large())
