"""The evented view model: each field has its own signal; the findings layer holds reviews."""

from __future__ import annotations

import pytest

from medstation.gui.state import ViewState
from medstation.imaging import Measurement, Window
from tests.conftest import nodule_finding

SIGNALS = ("volume_changed", "data_changed", "position_changed", "centre_requested", "window_changed",
           "tool_changed", "measurements_changed", "layers_changed")


@pytest.fixture
def recorded(qapp):
    st = ViewState()
    seen: list[str] = []
    for name in SIGNALS:
        getattr(st, name).connect(lambda *_, n=name: seen.append(n))
    return st, seen


def test_each_change_emits_its_own_signal(recorded, small_volume):
    st, seen = recorded
    volume, _ = small_volume
    st.set_volume(volume)
    assert seen == ["layers_changed", "volume_changed"]  # the findings layer is emptied for the new series
    for call, expected in ((lambda: st.set_position((3, 10, 10)), "position_changed"),
                           (lambda: st.set_window(Window(-600, 1500, "Lung")), "window_changed"),
                           (lambda: st.set_invert(True), "window_changed"),
                           (lambda: st.set_tool("length"), "tool_changed"),
                           (lambda: st.add_measurement(Measurement("length", 0, 3, [(3, 1, 1), (3, 5, 5)])),
                            "measurements_changed"),
                           (st.data_arrived, "data_changed")):
        seen.clear()
        call()
        assert seen == [expected]
    seen.clear()
    st.set_position((3, 10, 10))  # no move, no signal
    assert seen == []
    st.centre_on((5, 20, 20))
    assert seen == ["position_changed", "centre_requested"]
    with pytest.raises(ValueError):
        st.set_tool("scalpel")


def test_the_findings_layer_selects_steps_and_reviews(recorded, small_volume):
    st, seen = recorded
    volume, _ = small_volume
    st.set_volume(volume)
    layer = st.findings
    high, low = nodule_finding(volume, score=0.9), nodule_finding(volume, finding_id="F2", score=0.3)
    reviewed = []
    layer.reviewed.connect(lambda f, s: reviewed.append((f.finding_id, s)))
    seen.clear()
    layer.set_items([low, high])
    assert layer.items == [high, low] and seen == ["layers_changed"]
    layer.set_threshold(0.5)
    assert layer.visible() == [high]
    seen.clear()
    layer.step(1)
    assert layer.selected is high and seen == ["position_changed", "centre_requested", "layers_changed"]
    assert tuple(st.position) == pytest.approx(high.center_voxel)
    layer.toggle_review("accepted")
    layer.toggle_review("accepted")  # the same key again clears it
    layer.review(low, "rejected")
    assert reviewed == [("F1", "accepted"), ("F1", ""), ("F2", "rejected")] and low.status == "rejected"
    with pytest.raises(ValueError):
        layer.review(low, "maybe")
    seen.clear()
    layer.set_opacity(0.3)
    layer.set_show(False)
    assert seen == ["layers_changed", "layers_changed"] and not layer.show and layer.opacity == 0.3
