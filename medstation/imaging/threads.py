"""SimpleITK's thread count for a block of work (the lung mask, lesion segmentation, registration).

ITK's filters run on a pool of ``GetGlobalDefaultNumberOfThreads()`` threads (the machine's cores)
and, like torch's team, wait for every member at the end of each filter: beside busy processes a
team larger than the free cores runs several times slower than its share. The inference lane sizes
both teams from one ``core.cpu.CpuShare`` reading.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def itk_threads(n: int | None):
    """ITK's default thread count set to ``n`` inside the block (``None``: left as it is), the
    previous count restored after."""
    if not n:
        yield
        return
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(n))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
