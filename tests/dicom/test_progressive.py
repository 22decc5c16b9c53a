"""Progressive, cancelable loading: middle slice first, slices stream as they land."""

import threading
from pathlib import Path

import numpy as np
import pytest

from medstation.core.errors import CancelledError
from medstation.dicom import LoadJob, assemble, load_stack, middle_out, scan


def test_middle_out_order():
    assert middle_out(5) == [2, 3, 1, 4, 0]
    assert sorted(middle_out(300)) == list(range(300))


@pytest.mark.parametrize("series", [0, 1], ids=["native", "rle"])
def test_slices_stream_middle_first(small_study, pool, series):
    files = small_study.series[series].files
    stack = assemble(scan(files, pool).headers)[0]
    seen = []
    res = load_stack(stack, pool, on_slice=seen.append)
    if series == 0:  # native slices are read in order: strictly the middle first
        assert seen[0] == (len(files) - 1) // 2
    else:  # decoded in parallel: the middle slice is among the first handed out
        assert seen[0] in middle_out(len(files))[:pool.size]
    assert sorted(seen) == list(range(len(files)))
    assert res.first_slice_seconds <= res.seconds


def test_load_job_fills_in_and_can_be_cancelled(small_study, pool):
    stack = assemble(scan(small_study.series[1].files, pool).headers)[0]  # RLE: goes via workers
    first = threading.Event()
    gate = threading.Event()

    def on_slice(k):
        first.set()
        gate.wait(5)  # hold the loader so cancel lands mid-series

    job = LoadJob(stack, pool, on_slice=on_slice)
    assert first.wait(10)
    assert job.ready.sum() >= 1 and job.progress[1] == len(stack.slices)
    job.cancel()
    gate.set()
    with pytest.raises(CancelledError):
        job.result(10)
    assert job.done()


def test_load_job_result(small_study, pool):
    stack = assemble(scan(small_study.series[0].files, pool).headers)[0]
    done = threading.Event()
    job = LoadJob(stack, pool, on_done=lambda j: done.set())
    res = job.result(30)
    assert done.wait(5) and job.ready.all()
    assert res.volume is job.volume and np.any(job.volume.voxels != 0)
    assert Path(res.volume.sources[0][0]).exists()
