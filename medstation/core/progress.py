"""The one typed progress line of long work run as a child process (training, the site report, the
site calibration): ``{"event": "stage", "stage", "done", "total", "eta_s"}``, what the fine-tuning
panel and the CLI show from the first second, whatever the stage."""

from __future__ import annotations

import time


def stage_event(stage: str, done: int, total: int, t0: float, **extra) -> dict:
    """The stage line; ``eta_s`` from the pace since ``t0`` (``time.perf_counter()``) once one is done."""
    elapsed = time.perf_counter() - t0
    eta = {"eta_s": round(elapsed / done * (total - done), 1)} if 0 < done < total else {}
    return {"event": "stage", "stage": stage, "done": done, "total": total, **eta, **extra}
