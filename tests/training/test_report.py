"""The site validation report's figures and page (training.report), on constructed scans whose answers
are known by hand; the CLI test (tests/cli/test_train_cli.py) runs it on a real fine-tune."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from medstation.ai.registry import default_detector_dir
from medstation.ai.store import load_detector
from medstation.training.metrics import Candidate, Reference, froc
from medstation.training.report import (
    at_operating_point,
    bland_altman,
    bootstrap_draws,
    build_report,
    cpm_interval,
    describe_data,
    operating_point_source,
    paired_difference,
    render_html,
    version_figures,
)


def _scans(hit_scores: list[float | None], fp_scores: list[list[float]]):
    """One 10 mm nodule per scan at the origin, hit with the given score (None: missed), plus false
    positives far away with the given scores."""
    cands, refs = [], []
    for hit, fps in zip(hit_scores, fp_scores):
        c = [Candidate((1.0, 0.0, 0.0), hit)] if hit is not None else []
        c += [Candidate((100.0 + 10 * k, 0.0, 0.0), s) for k, s in enumerate(fps)]
        cands.append(c)
        refs.append([Reference((0.0, 0.0, 0.0), 10.0)])
    return cands, refs


def test_operating_point_reads_the_froc_counting():
    cands, refs = _scans([0.9, 0.4, None, 0.7], [[0.8], [0.3], [0.95], []])
    r = froc(cands, refs)
    # at 0.5: hits 0.9 and 0.7 (2 of 4 nodules); false positives 0.8 and 0.95 over 4 scans
    op = at_operating_point(r, 0.5, "test")
    assert op == {"threshold": 0.5, "source": "test", "sensitivity": 0.5, "fp_per_scan": 0.5}
    # exactly at a score: that candidate counts (score >= threshold, as the viewer draws it)
    assert at_operating_point(r, 0.4)["sensitivity"] == 0.75
    assert at_operating_point(r, 0.99) == {"threshold": 0.99, "source": "", "sensitivity": 0.0,
                                           "fp_per_scan": 0.0}


def test_bland_altman_bias_and_limits_of_agreement():
    values = [(11.0, 10.0), (9.0, 8.0), (14.0, 12.0), (5.0, 6.0)]
    pairs = [{"measured_mm": m, "truth_mm": t} for m, t in values]
    ba = bland_altman(pairs)
    d = np.array([1.0, 1.0, 2.0, -1.0])
    assert ba["pairs"] == 4 and ba["bias_mm"] == pytest.approx(d.mean(), abs=0.005)
    sd = d.std(ddof=1)
    assert ba["loa_mm"] == [round(d.mean() - 1.96 * sd, 2), round(d.mean() + 1.96 * sd, 2)]
    assert ba["points"][2] == [13.0, 2.0]  # (mean of the two, difference)
    # nothing measured is null, not zero; one pair has a bias but no spread
    assert bland_altman([])["bias_mm"] is None and bland_altman([])["loa_mm"] == [None, None]
    one = bland_altman(pairs[:1])
    assert one["bias_mm"] == 1.0 and one["sd_mm"] is None and one["loa_mm"] == [None, None]


def test_bootstrap_interval_is_reproducible_holds_the_point_and_pairs_the_draws():
    cands, refs = _scans([0.9, 0.4, None, 0.7, 0.8, 0.6], [[0.8], [0.3], [0.95], [], [0.2, 0.1], [0.5]])
    r = froc(cands, refs)
    draws = bootstrap_draws(len(refs), 300, seed=3)
    lo, hi, values = cpm_interval((cands, refs), r.size_range, draws)
    assert lo <= r.cpm <= hi and lo < hi and len(values) == 300
    assert cpm_interval((cands, refs), r.size_range, bootstrap_draws(len(refs), 300, seed=3))[:2] == (lo, hi)
    # a version that is the same one: a difference of zero with an interval of zero
    same = paired_difference(values, values, r.cpm, r.cpm)
    assert same == {"cpm_difference": 0.0, "interval_95": [0.0, 0.0]}
    # a version that finds every nodule first: better on every draw
    better_c, _ = _scans([0.99] * 6, [[0.8], [0.3], [0.95], [], [0.2, 0.1], [0.5]])
    b = froc(better_c, refs)
    _lo, _hi, bv = cpm_interval((better_c, refs), b.size_range, draws)
    diff = paired_difference(bv, values, b.cpm, r.cpm)
    assert diff["cpm_difference"] > 0 and diff["interval_95"][0] >= 0
    # one scan has no interval (a resample of one scan is that scan)
    assert cpm_interval((cands[:1], refs[:1]), r.size_range, bootstrap_draws(1, 50))[:2] == (None, None)


def test_the_page_is_self_contained_and_says_both_versions():
    detector = load_detector(default_detector_dir())
    cands, refs = _scans([0.9, 0.4, None, 0.7], [[0.8], [0.3], [0.95], []])
    r = froc(cands, refs)
    extra = {"per_scan": (cands, refs), "size_pairs": [{"measured_mm": 11.0, "truth_mm": 10.0},
                                                       {"measured_mm": 9.5, "truth_mm": 10.0}],
             "sizes": [],
             "studies": [{"series": f"S{n}", "patient": f"P{n % 2}", "nodules": 1} for n in range(4)]}
    rel = {"ece": 0.1, "findings": 8, "table": [{"mean_score": 0.3, "share_nodules": 0.2},
                                                {"mean_score": 0.8, "share_nodules": 0.9}]}
    draws = bootstrap_draws(4, 100)
    columns = [version_figures(detector, "/a", r, extra, rel, draws),
               version_figures(detector, "/b", r, {**extra, "size_pairs": []}, rel, draws)]
    report = build_report(columns, describe_data("site <series>", r, extra), title="Site & test",
                          draws=draws, seed=0)
    page = render_html(report)
    assert report["data"]["patients"] == 2 and report["difference"]["cpm_difference"] == 0.0
    # nothing fetched from anywhere: every image is inline, no script, no external link
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(images) == 4  # FROC, reliability, one Bland-Altman per version
    for b in images:
        ET.fromstring(base64.b64decode(b))  # each a well-formed SVG
    assert "Site &lt;series&gt;" in page and "Site &amp; test" in page  # text is escaped
    assert page.count(detector.manifest["sha256"][:16]) == 2 and "not for clinical use" in page
    assert "no segmented hit to compare with a label" in base64.b64decode(images[3]).decode()
    assert "not shown to differ here" in page


def test_operating_point_source_says_where_it_came_from():
    assert "default 0.5" in operating_point_source({})
    assert "1 FP/scan" in operating_point_source({"metrics": {"froc": {"threshold_at_1fp": 0.4}}})
    assert "site series" in operating_point_source({"operating_point": 0.3,
                                                    "calibration": {"fitted_on_data": "3 site series"}})


def test_a_calibration_fitted_on_the_measured_scans_is_flagged():
    from medstation.ai.detector import Detector

    base = load_detector(default_detector_dir())
    cands, refs = _scans([0.9, 0.4], [[0.8], [0.3]])
    r = froc(cands, refs)
    extra = {"per_scan": (cands, refs), "size_pairs": [], "sizes": [],
             "studies": [{"series": "S0", "patient": "P0", "nodules": 1},
                         {"series": "S1", "patient": "P1", "nodules": 1}]}
    rel = {"ece": 0.1, "findings": 4, "table": []}
    fitted = Detector(base.model, {**base.manifest, "calibration": {
        "method": "platt", "a": 1.0, "b": 0.0, "fitted_on_series": ["S1", "S9"]}, "operating_point": 0.4})
    draws = bootstrap_draws(2, 20)
    columns = [version_figures(fitted, "/a", r, extra, rel, draws), version_figures(base, "/b", r, extra, rel,
                                                                                      draws)]
    assert [c["calibrated_on_these_scans"] for c, _v in columns] == [1, 0]
    page = render_html(build_report(columns, describe_data("d", r, extra), title="t", draws=draws, seed=0))
    assert page.count("not an independent check") == 1
