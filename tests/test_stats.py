"""Summary statistics against hand-computed values."""

import numpy as np

from lopt.analysis.stats import mean_and_ci
from lopt.summary import iqm, summarise


def test_iqm_drops_the_outer_quartiles():
    # 8 scores: the middle 4 are 2, 3, 4, 5.
    assert iqm(np.array([100.0, 0, 1, 2, 3, 4, 5, 6])) == 3.5


def test_summary_and_band():
    s = summarise(np.array([1.0, 2.0, 3.0, 6.0]))
    assert (s["mean"], s["median"], s["min"], s["max"]) == (3.0, 2.5, 1.0, 6.0)
    assert np.isclose(s["std"], np.sqrt(14 / 3))
    mean, half = mean_and_ci(np.array([[0.0, 1.0], [2.0, 1.0]]))
    np.testing.assert_allclose(mean, [1.0, 1.0])
    np.testing.assert_allclose(half, [1.96 * np.sqrt(2) / np.sqrt(2), 0.0])


def test_rliable_bootstrap_imports():
    # rliable's interval estimates need arch, which breaks with pandas 3 (pinned).
    from rliable import library

    assert callable(library.get_interval_estimates)
