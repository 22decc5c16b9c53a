"""Label masks in the window: open a NIfTI / NRRD / MetaImage label map over the shown series (read
and resampled on a background thread), and export the shown findings as a NIfTI label map."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

MASK_FILTER = "Label masks (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd);;All files (*)"


def open_mask_task(ctx, path: str | Path | None = None, parent=None):
    """Read ``path`` (asked for when None) and show it over the open series; returns the Task."""
    from medstation.dicom.masks import mask_on_grid, read_mask

    state = ctx.state
    volume = state.volume
    if volume is None or not volume.has_geometry:
        ctx.notify("Open a series with patient geometry first, then the mask drawn on it.")
        return None
    if path is None:
        path, _ = QFileDialog.getOpenFileName(parent, "Open a label mask over this series", "", MASK_FILTER)
        if not path:
            return None
    grid, ref = volume.grid, state.ref

    def work(progress, cancel):
        progress(0, 2)
        mask = read_mask(path)
        progress(1, 2)
        return mask_on_grid(mask, grid)

    def done(array):
        if state.ref != ref:  # another series was opened meanwhile: the mask is not of it
            ctx.notify(f"{Path(path).name} was read for the series shown before; open it again.")
            return
        state.mask.set_mask(array, Path(path).name)
        values = state.mask.values
        ctx.notify(f"{Path(path).name}: {len(values)} structure value(s) shown over the series"
                   + ("" if values else " (the mask is empty)")
                   + ". `medstation labels import` stores them as nodule labels.")

    return ctx.run_task(work, "open-mask", f"Reading {Path(path).name}", on_done=done)


def export_findings_mask_task(ctx, path: str | Path | None = None, parent=None):
    """The shown (not rejected) findings as a NIfTI label map with its JSON legend."""
    from medstation.dicom.masks import export_findings_mask

    from .exports import current_results

    state = ctx.state
    findings, _ = current_results(ctx)
    if state.volume is None or not findings:
        ctx.notify("Nothing to export: run detection (D) first.")
        return None
    if path is None:
        path, _ = QFileDialog.getSaveFileName(parent, "Export findings as a NIfTI label map",
                                              f"{state.ref.series_uid}-findings.nii.gz", MASK_FILTER)
        if not path:
            return None
    findings = [replace(f) for f in findings]
    volume, uid = state.volume, state.ref.series_uid

    def work(progress, cancel):
        return export_findings_mask(volume, findings, uid, path)

    def done(out):
        ctx.notify(f"{len(findings)} finding(s) written as a label map: {out} (legend beside it, .json).")

    return ctx.run_task(work, "export-mask", "Exporting the findings mask", on_done=done)
