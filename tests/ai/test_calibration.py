"""Score calibration: Platt scaling fitted on (score, is-a-nodule) pairs, applied by the detector."""

from __future__ import annotations

import numpy as np
import pytest

from medstation.ai.calibration import apply, ece, fit_platt, reliability


def overconfident(n=4000, seed=0):
    """Scores whose true chance is sigmoid(0.5 * logit(s) - 1): a model far too sure of itself."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.02, 0.98, n)
    logit = np.log(s / (1 - s))
    p = 1 / (1 + np.exp(-(0.5 * logit - 1.0)))
    y = rng.random(n) < p
    return list(zip(s.tolist(), y.tolist()))


def test_platt_recovers_the_true_mapping_and_lowers_the_ece():
    pairs = overconfident()
    cal = fit_platt(pairs)
    assert cal["method"] == "platt"
    assert cal["a"] == pytest.approx(0.5, abs=0.08) and cal["b"] == pytest.approx(-1.0, abs=0.12)
    before = reliability(pairs)["ece"]
    fresh = overconfident(seed=1)  # judged on data it was not fitted on
    after = reliability([(apply(s, cal), y) for s, y in fresh])["ece"]
    assert before > 0.15 and after < 0.04, (before, after)


def test_calibration_is_monotone_and_absent_calibration_changes_nothing():
    cal = {"method": "platt", "a": 0.7, "b": -0.4}
    s = np.linspace(0.01, 0.99, 50)
    out = apply(s, cal)
    assert np.all(np.diff(out) > 0)
    assert apply(0.3, None) == 0.3 and apply(0.3, {"method": "unknown"}) == 0.3


def test_ece_of_a_perfectly_calibrated_model_is_near_zero():
    rng = np.random.default_rng(3)
    s = rng.uniform(0, 1, 20000)
    y = rng.random(20000) < s
    e, table = ece(s, y.astype(float))
    assert e < 0.02 and len(table) == 10


def test_fitting_refuses_one_sided_data():
    from medstation.core.errors import MedstationError

    with pytest.raises(MedstationError, match="true and false positives both") as caught:
        fit_platt([(0.9, True)] * 50)
    assert "50 true, 0 false" in caught.value.reason and "--site" in caught.value.hint
