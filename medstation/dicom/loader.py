"""The safe, progressive series loader.

``scan`` reads headers of many files in the worker pool. ``load_stack`` turns
a ``SeriesStack`` into a ``Volume``: native (uncompressed) slices are read
straight from their known byte offset into the volume, everything else is
decoded by pydicom in the worker processes. Slices arrive middle first and
``on_slice(k)`` is called as each lands, so a viewer can show the series before
it is complete. ``LoadJob`` runs a load on a background thread with cancel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from medstation.core.errors import CancelledError, LoadError
from medstation.core.volume import Volume
from medstation.dicom import _tasks
from medstation.dicom._pool import WorkerPool
from medstation.dicom.header import InstanceHeader
from medstation.dicom.series import SeriesStack, SliceRef


@dataclass
class ScanResult:
    headers: list[InstanceHeader] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)  # damaged files
    skipped: list[LoadError] = field(default_factory=list)  # not DICOM


def scan(
    files: Iterable[str],
    pool: WorkerPool,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ScanResult:
    """Read the headers of ``files`` in the worker pool."""
    from medstation.dicom.header import NotDicomError

    files = [str(f) for f in files]
    out = ScanResult()
    results: list = [None] * len(files)
    # Files go in batches (one pipe round trip each); a batch that times out or
    # kills its worker is retried file by file, so only the bad file fails.
    size = max(1, min(16, len(files) // (4 * pool.size) or 1))
    batches = [tuple(range(i, min(i + size, len(files)))) for i in range(0, len(files), size)]
    retry: list[int] = []
    done = 0
    for b, res in pool.map_unordered(_tasks.scan_batch,
                                     [tuple(files[i] for i in batch) for batch in batches],
                                     cancel=cancel):
        if isinstance(res, LoadError):
            if len(batches[b]) == 1:
                results[batches[b][0]] = res
                done += 1
            else:
                retry.extend(batches[b])
                continue
        else:
            for i, r in zip(batches[b], res):
                results[i] = r
            done += len(batches[b])
        if progress:
            progress(done, len(files))
    for i, res in pool.map_unordered(_tasks.scan, [files[i] for i in retry], cancel=cancel):
        results[retry[i]] = res
        done += 1
        if progress:
            progress(done, len(files))
    for result in results:  # keep input order: deterministic output
        if isinstance(result, NotDicomError):
            out.skipped.append(result)
        elif isinstance(result, LoadError):
            out.errors.append(result)
        else:
            out.headers.append(result)
    return out


@dataclass
class LoadResult:
    volume: Volume
    errors: list[LoadError] = field(default_factory=list)
    seconds: float = 0.0
    first_slice_seconds: float = 0.0


def middle_out(n: int) -> list[int]:
    """0..n-1 ordered from the middle outwards: the first slice shown is the middle one."""
    mid = (n - 1) // 2
    order = [mid]
    for d in range(1, n):
        if mid + d < n:
            order.append(mid + d)
        if mid - d >= 0:
            order.append(mid - d)
    return order


def empty_volume(stack: SeriesStack) -> Volume:
    """A zero-filled ``Volume`` with the stack's geometry, ready to be filled."""
    h = stack.first
    return Volume(
        voxels=np.zeros(stack.shape, dtype=stack.dtype),
        spacing=stack.spacing,
        origin=stack.origin,
        direction=stack.direction,
        frame_of_reference_uid=h.frame_of_reference_uid,
        series_uid=stack.series_uid,
        modality=h.modality,
        units=stack.units,
        slice_positions=stack.slice_positions,
        windows=list(h.windows),
        warnings=list(stack.warnings),
        has_geometry=stack.has_geometry,
        sources=[(s.header.path, s.frame) for s in stack.slices],
        photometric=h.photometric,
        geometry_errors=list(stack.geometry_errors),
    )


def load_stack(
    stack: SeriesStack,
    pool: WorkerPool,
    *,
    on_slice: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    volume: Volume | None = None,
) -> LoadResult:
    """Decode every slice of ``stack`` into a ``Volume`` (middle slice first).

    Slices that fail leave zeros and add a ``LoadError``; the load goes on.
    Raises ``CancelledError`` if ``cancel`` is set.
    """
    t0 = time.perf_counter()
    vol = volume if volume is not None else empty_volume(stack)
    result = LoadResult(vol)
    first = [0.0]

    def landed(k: int) -> None:
        if not first[0]:
            first[0] = time.perf_counter() - t0
        if on_slice is not None:
            on_slice(k)

    order = middle_out(len(stack.slices))
    fast = [k for k in order if stack.slices[k].header.fast_native]
    slow = [k for k in order if not stack.slices[k].header.fast_native]
    reader = _NativeReader(stack.dtype)
    for k in fast:
        if cancel is not None and cancel.is_set():
            raise CancelledError("loading was cancelled")
        try:
            reader.read(stack.slices[k], vol.voxels[k])
        except LoadError as exc:
            result.errors.append(exc)
            continue
        landed(k)
    if slow:
        tasks, targets = _decode_tasks(stack, slow)
        for index, res in pool.map_unordered(_tasks.decode, tasks, cancel=cancel):
            if isinstance(res, LoadError):
                result.errors.append(res)
                continue
            for n, k in enumerate(targets[index]):
                vol.voxels[k] = res[n]
                landed(k)
    if result.errors:
        vol.warnings.append(f"{len(result.errors)} of {len(stack.slices)} slices could not be "
                            "read and are left blank")
    result.seconds = time.perf_counter() - t0
    result.first_slice_seconds = first[0]
    return result


def _decode_tasks(stack: SeriesStack, ks: list[int]):
    """One task per file (with all its wanted frames), in the order of ``ks``."""
    by_file: dict[str, list[int]] = {}
    for k in ks:
        by_file.setdefault(stack.slices[k].header.path, []).append(k)
    tasks, targets = [], []
    for path, klist in by_file.items():
        refs = [stack.slices[k] for k in klist]
        h = refs[0].header
        tasks.append(_tasks.DecodeTask(path, tuple(r.frame for r in refs),
                                       tuple(r.rescale for r in refs), stack.dtype,
                                       h.rows, h.columns, stack.color))
        targets.append(klist)
    return tasks, targets


class _NativeReader:
    """Reads native little-endian grey frames straight from the file at a known offset.

    Matches pydicom's decoding: bits above Bits Stored are cleared (unsigned)
    or sign-extended (signed), then the modality rescale is applied.
    """

    def __init__(self, out_dtype: str) -> None:
        self.out_dtype = np.dtype(out_dtype)
        self._buf: np.ndarray | None = None

    def read(self, ref: SliceRef, out: np.ndarray) -> None:
        h = ref.header
        kind = "i" if h.pixel_representation else "u"
        dtype = np.dtype(f"<{kind}{h.bits_allocated // 8}")
        slope, intercept = ref.rescale
        # Fast lane: 16-bit stored values whose rescaled range fits int16 are read
        # into the volume itself and rescaled in place, with no temporary.
        in_place = (
            out.dtype == np.int16 and dtype.itemsize == 2 and out.flags.c_contiguous
            and slope == 1.0 and float(intercept).is_integer()
            and (h.pixel_representation == 1 or h.bits_stored <= 15)
        )
        if in_place:
            buf = out.reshape(-1).view(dtype)
        else:
            count = h.rows * h.columns
            if self._buf is None or self._buf.dtype != dtype or self._buf.size != count:
                self._buf = np.empty(count, dtype)
            buf = self._buf
        try:
            with open(h.path, "rb", buffering=0) as f:
                f.seek(h.pixel_offset + ref.frame * h.frame_bytes)
                got = f.readinto(memoryview(buf).cast("B"))
        except OSError as exc:
            raise LoadError(h.path, f"cannot read the file: {exc.strerror}",
                            "check that the file still exists and is readable") from None
        if got != buf.nbytes:
            raise LoadError(h.path, f"the file ended inside its pixel data ({got} of "
                                    f"{buf.nbytes} bytes)", "the file is truncated; copy it again")
        shift = h.bits_allocated - h.bits_stored
        if shift:
            np.left_shift(buf, shift, out=buf)
            np.right_shift(buf, shift, out=buf)
        if in_place:
            if intercept:
                np.add(out, np.int16(intercept), out=out)
            return
        img = buf.reshape(h.rows, h.columns)
        out[...] = _tasks.apply_rescale(img, slope, intercept, self.out_dtype)


class LoadJob:
    """A load running on a background thread; the volume fills in as slices land.

    ``volume`` exists from the start (zeros); ``ready[k]`` tells which slices
    have arrived. Call ``cancel()`` to stop, ``result()`` to wait for the end.
    """

    def __init__(self, stack: SeriesStack, pool: WorkerPool,
                 on_slice: Callable[[int], None] | None = None,
                 on_done: Callable[[LoadJob], None] | None = None) -> None:
        self.stack = stack
        self._pool = pool
        self.volume = empty_volume(stack)
        self.ready = np.zeros(len(stack.slices), bool)
        self._on_slice = on_slice
        self._on_done = on_done
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="medstation-load", daemon=True)
        self._thread.start()

    def _slice(self, k: int) -> None:
        self.ready[k] = True
        if self._on_slice is not None:
            self._on_slice(k)

    def _run(self) -> None:
        try:
            self._result = load_stack(self.stack, self._pool, on_slice=self._slice,
                                      cancel=self._cancel, volume=self.volume)
        except BaseException as exc:  # delivered through result()
            self._error = exc
        finally:
            self._done.set()
            if self._on_done is not None:
                self._on_done(self)

    @property
    def progress(self) -> tuple[int, int]:
        return int(self.ready.sum()), len(self.ready)

    def cancel(self) -> None:
        self._cancel.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> LoadResult:
        if not self._done.wait(timeout):
            raise TimeoutError("the load is still running")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
