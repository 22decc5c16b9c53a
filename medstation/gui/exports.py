"""The open study's DICOM exports: findings and lengths as SR + SEG (to a folder or a PACS), and a
de-identified copy. Each runs as a background task of the application context."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from medstation.core.paths import user_data_path
from medstation.dicom.pacs import PacsNode, open_client


def current_results(ctx) -> tuple[list, list[dict]]:
    """The findings a reader would send (shown and not rejected) and the series' length measurements."""
    state = ctx.state
    findings = [f for f in state.findings.visible() if f.status != "rejected"]
    lengths = []
    if state.series_key:
        for mid, kind, data in ctx.db.annotations.measurements(state.series_key):
            if kind == "length":
                lengths.append({**data, "kind": kind, "id": mid})
    return findings, lengths


def export_results_task(ctx, out_dir: str | Path | None = None, node: PacsNode | None = None,
                        on_done=None):
    """Write the open series' findings as SR + SEG into ``out_dir`` (or a temporary folder), and
    send them to ``node`` when given. Returns the Task, or None when there is nothing to export."""
    from medstation.dicom.results import export_results

    state = ctx.state
    volume = state.volume
    findings, lengths = current_results(ctx)
    if volume is None or (not findings and not lengths):
        ctx.notify("Nothing to export: run detection (D) or measure a length first.")
        return None
    findings = [replace(f) for f in findings]
    voxels = volume.voxels
    sources = list(volume.sources)
    spacing = volume.spacing

    def work(progress, cancel):
        if out_dir is None:
            base = user_data_path() / "exports"
            base.mkdir(parents=True, exist_ok=True)
            folder = tempfile.mkdtemp(prefix="results-", dir=base)
        else:
            folder = str(out_dir)
        result = export_results(findings, sources, folder, voxels=voxels if findings else None,
                                lengths=lengths, spacing=spacing)
        sent = None
        if node is not None:
            files = [result.sr] + ([result.seg] if result.seg else [])
            client = open_client(node, web=(node.retrieve == "wado"))
            sent = client.store(files, progress=progress, cancel=cancel)
        return result, sent

    def done(out):
        result, sent = out
        where = f"sent to {node.name}" if node is not None else f"written to {Path(result.sr).parent}"
        ctx.notify(f"{result.findings} findings and {result.measurements} measurements as DICOM SR"
                      + (" + SEG" if result.seg else "") + f": {where}.")
        if on_done is not None:
            on_done(out)

    label = f"Sending to {node.name}" if node is not None else "Exporting SR/SEG"
    return ctx.run_task(work, "export-results", label, on_done=done)


def deidentify_task(ctx, series_uids: list[str], out_dir: str | Path, allow_burned_in: bool = False,
                    on_done=None, parent=None):
    """De-identified copy of the given series (the open study's) into ``out_dir``."""
    from medstation.dicom.deid import BurnedInAnnotationError, deidentify

    files = [h.path for uid in series_uids for h in ctx.db.index.series_headers(uid)]

    def work(progress, cancel):
        return deidentify(files, out_dir, allow_burned_in=allow_burned_in, progress=progress, cancel=cancel)

    def failed(exc):
        if isinstance(exc, BurnedInAnnotationError) and not allow_burned_in:
            answer = QMessageBox.question(
                parent, "Burned-in annotation",
                f"{len(exc.files)} image(s) are marked or suspected to show patient details in their pixels. "
                "De-identification cannot remove text from pixels.\n\nExport them anyway?")
            if answer == QMessageBox.Yes:
                deidentify_task(ctx, series_uids, out_dir, allow_burned_in=True, on_done=on_done,
                                parent=parent)

    def done(report):
        ctx.notify(f"De-identified {len(report.files)} files into {report.out_dir} "
                      f"(dates moved by {report.date_shift_days} days).")
        if on_done is not None:
            on_done(report)

    return ctx.run_task(work, "deidentify", "De-identifying", on_done=done, on_error=failed)


def study_series(ctx) -> list[str]:
    """Series UIDs of the study the open series belongs to."""
    uid = ctx.state.ref.series_uid if ctx.state.ref is not None else ""
    if not uid:
        return []
    rows = ctx.db.index.series()
    study = next((r.study_uid for r in rows if r.series_uid == uid), "")
    return [r.series_uid for r in rows if r.study_uid == study]
