"""The worker pool survives hangs, crashes, memory bombs and untyped exceptions."""

import threading

import pytest

from medstation.core.errors import CancelledError, LoadError
from medstation.dicom import WorkerPool
from tests.dicom import _crashy


@pytest.fixture()
def fresh_pool():
    with WorkerPool(2, timeout=1.5, memory_cap=1024**3) as p:
        yield p


def run(pool, func, items):
    return dict(pool.map_unordered(func, items))


def test_results_in_any_order_all_delivered(fresh_pool):
    assert run(fresh_pool, _crashy.ok, list(range(50))) == {i: 2 * i for i in range(50)}


def test_hanging_task_times_out_and_others_finish(fresh_pool):
    out = run(fresh_pool, _crashy.hang, ["a", "hang", "b", "c"])
    assert isinstance(out[1], LoadError) and "longer than 1.5 s" in out[1].reason
    assert out[1].file == "hang"
    assert [out[i] for i in (0, 2, 3)] == ["a", "b", "c"]
    assert fresh_pool.replaced == 1
    assert run(fresh_pool, _crashy.ok, [1]) == {0: 2}  # still usable


def test_segfault_becomes_load_error(fresh_pool):
    out = run(fresh_pool, _crashy.segfault, ["a", "crash", "b"])
    assert isinstance(out[1], LoadError) and "SIGSEGV" in out[1].reason
    assert out[0] == "a" and out[2] == "b"


def test_memory_cap_stops_a_bomb(fresh_pool):
    out = run(fresh_pool, _crashy.allocate, ["a", "bomb"])
    assert out[0] == "a"
    assert isinstance(out[1], LoadError) and "memory" in out[1].reason


def test_untyped_exception_becomes_load_error(fresh_pool):
    out = run(fresh_pool, _crashy.raise_untyped, ["x"])
    assert isinstance(out[0], LoadError) and "KeyError" in out[0].reason


def test_cancel(fresh_pool):
    cancel = threading.Event()
    got = []
    with pytest.raises(CancelledError):
        for _i, r in fresh_pool.map_unordered(_crashy.ok, range(1000), cancel=cancel):
            got.append(r)
            if len(got) == 5:
                cancel.set()
    assert 5 <= len(got) < 1000


def test_close_leaves_no_processes():
    pool = WorkerPool(2).start()
    procs = [w.process for w in pool._workers]
    pool.close()
    assert all(not p.is_alive() for p in procs)
