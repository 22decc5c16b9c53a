"""The evaluation's breakdown by kernel, slice thickness and size: hits as LUNA16 counts them,
at the score asked, and false positives per scan of each group."""

from __future__ import annotations

from medstation.training.evaluate import breakdown
from medstation.training.metrics import Candidate, Reference


def test_sensitivity_and_false_positives_per_group():
    refs = [[Reference((0.0, 0.0, 0.0), 5.0), Reference((50.0, 0.0, 0.0), 40.0)],
            [Reference((0.0, 0.0, 0.0), 8.0), Reference((90.0, 0.0, 0.0), 12.0, excluded=True)]]
    cands = [[Candidate((1.0, 0.0, 0.0), 0.9),  # inside the 5 mm nodule (radius 2.5)
              Candidate((50.0, 25.0, 0.0), 0.8),  # 25 mm off a 40 mm mass: outside its radius, an FP
              Candidate((50.0, 5.0, 0.0), 0.2)],  # on the mass but under the score
             [Candidate((4.0, 0.0, 0.0), 0.95),  # exactly on the 8 mm nodule's radius: not strictly inside
              Candidate((90.0, 1.0, 0.0), 0.99)]]  # inside an excluded annotation: neither hit nor FP
    studies = [{"kernel": "sharp", "slice_mm": 1.0}, {"kernel": "soft", "slice_mm": 5.0}]
    b = breakdown(cands, refs, studies, 0.5)
    assert b["by_kernel"]["sharp"] == {"nodules": 2, "sensitivity": 0.5, "fp_per_scan": 1.0}
    assert b["by_kernel"]["soft"] == {"nodules": 1, "sensitivity": 0.0, "fp_per_scan": 1.0}
    assert b["by_slice_mm"]["5.0"]["nodules"] == 1
    assert b["by_size_mm"]["4-6"] == {"nodules": 1, "sensitivity": 1.0}
    assert b["by_size_mm"]["30+"] == {"nodules": 1, "sensitivity": 0.0}
    assert b["by_size_mm"]["6-10"] == {"nodules": 1, "sensitivity": 0.0}
    # at a lower score the mass is found by its third candidate
    assert breakdown(cands, refs, studies, 0.1)["by_size_mm"]["30+"]["sensitivity"] == 1.0
    # only the sizes asked for count
    assert "30+" not in breakdown(cands, refs, studies, 0.5, max_diameter=30.0)["by_size_mm"]
