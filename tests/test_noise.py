"""The elementwise Threefry normal sampler behind OPEN's actor noise."""

import jax
import jax.extend.random as jax_random
import jax.numpy as jnp
import numpy as np
from scipy import stats

from lopt.optim.noise import normal, threefry_2x32


def test_threefry_matches_jax_bit_for_bit():
    key_pair = jnp.array([0x12345678, 0x9ABCDEF0], jnp.uint32)
    x0 = jnp.arange(50, dtype=jnp.uint32) * 7919
    x1 = jnp.arange(50, dtype=jnp.uint32) + 123
    y0, y1 = threefry_2x32(key_pair, x0, x1)
    expected = jax_random.threefry_2x32(key_pair, jnp.concatenate([x0, x1]))
    np.testing.assert_array_equal(np.concatenate([y0, y1]), expected)


def test_normal_is_standard_normal_and_keyed():
    draws = np.asarray(normal(jax.random.key(0), 50_001))
    assert draws.shape == (50_001,) and draws.dtype == np.float32
    assert np.isfinite(draws).all()
    assert stats.kstest(draws, "norm").pvalue > 1e-3
    assert abs(draws.mean()) < 0.02 and abs(draws.std() - 1) < 0.02
    again = np.asarray(normal(jax.random.key(0), 50_001))
    other = np.asarray(normal(jax.random.key(1), 50_001))
    np.testing.assert_array_equal(draws, again)
    assert abs(np.corrcoef(draws, other)[0, 1]) < 0.02
    # A prefix of a longer draw is the shorter draw: draws do not depend on n.
    np.testing.assert_array_equal(np.asarray(normal(jax.random.key(0), 10)), draws[:10])
