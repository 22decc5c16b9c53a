"""The follow-up predictor: its behaviour on known courses, its honesty outside its range, the baselines."""

from __future__ import annotations

import math

import pytest

from medstation.ai.predictor import load_predictor
from medstation.ai.store import builtin_models_dir
from medstation.training.followup_rnn import auc, baseline_predictions, evaluate, make_tracks


@pytest.fixture(scope="module")
def predictor():
    return load_predictor(builtin_models_dir() / "followup-rnn")


def course(volumes, gap=180, typ="solid"):
    return [{"days": n * gap, "volume_mm3": v, "diameter_mm": (6 * v / math.pi) ** (1 / 3), "mean_hu": 20.0,
             "type": typ} for n, v in enumerate(volumes)]


def test_a_doubling_solid_nodule_is_predicted_to_grow_and_a_stable_one_not(predictor):
    growing = course([300, 300 * 2 ** (180 / 200), 300 * 2 ** (360 / 200)])
    stable = course([300, 305, 298])
    g, s = predictor.predict_many([growing, stable], [180, 180])
    assert g.volume_mm3 > growing[-1]["volume_mm3"] * 1.3 and g.p_growth > 0.5
    assert abs(math.log(s.volume_mm3 / 300)) < 0.15 and s.p_growth < 0.3
    assert g.volume_low < g.volume_mm3 < g.volume_high
    # one timepoint: no history, a wider interval than a stable three-point history
    single = predictor.predict(course([300]), 180)
    assert single.no_history and not s.no_history
    assert math.log(single.volume_high / single.volume_low) > math.log(s.volume_high / s.volume_low)


def test_tracks_outside_the_training_range_are_withheld_with_the_reason(predictor):
    assert predictor.withheld(course([300, 320]), 180) == ""
    assert "mm" in predictor.withheld(course([50000, 51000]), 180)  # a 46 mm mass
    assert "days between studies" in predictor.withheld(course([300, 320], gap=1500), 180)
    assert "days ahead" in predictor.withheld(course([300, 320]), 3000)


def test_the_model_beats_the_baselines_on_held_out_courses(predictor):
    r = evaluate(predictor, make_tracks(1500, seed=5))
    assert set(r["rows"]) == {"model", "no change", "VDT of the last two", "linear diameter trend"}
    assert r["mae_ratio_to_best"] <= 0.8
    assert 0.75 <= r["rows"]["model"]["coverage_80"] <= 0.85
    assert r["auc_vs_best_baseline"] >= 0
    assert r["rows"]["no change"]["auc_growth"] == pytest.approx(0.5)  # a constant score


def test_baselines_and_auc():
    h = course([100, 200])
    b = baseline_predictions(h, 180)
    assert b["no change"][0] == pytest.approx(math.log(200))
    assert b["VDT of the last two"][0] == pytest.approx(math.log(400))
    assert auc([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0 and auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
