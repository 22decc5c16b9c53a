"""The free-core measure the CPU inference lane sizes its torch team by (issue 31, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from medstation.core import cpu
from medstation.core.cpu import CpuShare

TICK = os.sysconf("SC_CLK_TCK")


def _stat(path, busy_s: float, idle_s: float) -> None:
    busy, idle = int(busy_s * TICK), int(idle_s * TICK)
    path.write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


def test_threads_follow_what_other_processes_leave_free(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    own = [0.0]
    monkeypatch.setattr(cpu, "_own_cpu_s", lambda: own[0])
    monkeypatch.setattr(cpu, "cores", lambda: 4)
    clock = [100.0]
    monkeypatch.setattr(cpu.time, "monotonic", lambda: clock[0])
    _stat(stat, 0, 0)
    share = CpuShare(most=4, stat_path=str(stat))

    def after(seconds: float, machine_busy: float, ours: float) -> int:
        clock[0] += seconds
        own[0] += ours
        busy_before = share._last[1]
        _stat(stat, busy_before + machine_busy, 0)
        return share.threads()

    assert after(1.0, 2.0, 2.0) == 4  # only we were busy: every core is ours
    assert share.others == 0.0
    assert after(1.0, 4.0, 1.0) == 1  # others held 3 of 4 cores
    assert after(1.0, 3.0, 1.0) == 2  # 2 of 4
    assert after(1.0, 4.0, 0.0) == 1  # all 4: never fewer than one thread
    assert after(1.0, 0.6, 0.5) == 4  # quiet again (0.1 core of noise rounds away)
    assert after(0.01, 4.0, 0.0) == 4  # 10 ms is below the kernel's resolution: the last measure stands


def test_before_the_first_interval_the_runnable_count_sizes_the_team(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "cores", lambda: 4)
    stat = tmp_path / "stat"

    def share_with(running: int | None) -> CpuShare:
        tail = f"procs_running {running}\n" if running is not None else ""
        stat.write_text(f"cpu  100 0 0 100 0 0 0 0 0 0\nctxt 5\n{tail}procs_blocked 0\n")
        return CpuShare(most=4, stat_path=str(stat))

    assert share_with(1).threads() == 4  # only the caller runnable: every core
    assert share_with(3).threads() == 2  # two others runnable at this instant
    assert share_with(9).threads() == 1  # never fewer than one
    assert share_with(None).threads() == 4  # no count in the file: nothing changed
    assert share_with(3).others is None  # an instant reading, not a measured interval


def test_itk_threads_holds_inside_the_block_and_comes_back_after_an_error():
    import SimpleITK as sitk

    from medstation.imaging.threads import itk_threads

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    with pytest.raises(RuntimeError), itk_threads(1):
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
        raise RuntimeError("a filter failed")
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before
    with itk_threads(None):
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before


def test_most_bounds_the_team_and_an_unreadable_stat_changes_nothing(tmp_path):
    assert CpuShare(most=1).threads() == 1
    share = CpuShare(most=3, stat_path=str(tmp_path / "absent"))
    time.sleep(0.06)
    assert share.threads() == 3 and share.others is None
    garbage = tmp_path / "garbage"
    garbage.write_text("not a stat file\n")
    assert CpuShare(most=2, stat_path=str(garbage)).threads() == 2


def test_a_busy_process_beside_us_is_seen_on_this_machine():
    if not os.path.exists(cpu.PROC_STAT):
        pytest.skip("no /proc/stat on this system")
    share = CpuShare()
    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(1.5)
        others = share.sample()
    finally:
        busy.kill()
        busy.wait()
    assert others is not None and others >= 0.5  # one spinning process is about one core
