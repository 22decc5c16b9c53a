"""``medstation bench render``: the real viewer widget's scroll frame against its redraw floor, and
the same frames while a detection runs on a worker thread beside busy processes (issue 31)."""

from __future__ import annotations

import json
import os

import pytest

from tests.cli.test_cli import medstation


def test_bench_render_quiet_and_beside_a_detection():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = medstation("bench", "render", "--frames", "40", "--json", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["frames"] >= 40 and r["median_ms"] > 0 and r["baseline_redraw_only_median_ms"] > 0
    assert r["contended"] is None  # not asked for
    proc = medstation("bench", "render", "--frames", "40", "--contend", "1", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "while a detection runs on a worker thread beside 1 busy process:" in proc.stdout
    proc = medstation("bench", "render", "--frames", "40", "--contend", "0", "--json", env=env, timeout=600)
    c = json.loads(proc.stdout)["contended"]
    assert c["busy_processes"] == 0 and c["frames"] >= 40 and c["median_ms"] > 0
    # the ratio of the unrounded medians: within rounding of the ratio of the printed ones
    assert c["ratio_vs_quiet"] == pytest.approx(c["median_ms"] / c["quiet_median_ms"], abs=2e-3)
