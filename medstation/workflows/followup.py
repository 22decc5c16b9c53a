"""A patient's follow-up from files: open each study, pick its comparable series, detect, register
each prior onto the next study, track (``ai.followup``, pure) and write one SR per study."""

from __future__ import annotations

import numpy as np

from medstation.ai.followup import (
    CANDIDATE_SHARE,
    LesionTrack,
    Timepoint,
    build_tracks,
    edited,
    patient_summary,
    probe,
    probe_into,
)
from medstation.core.findings import Finding
from medstation.imaging.registration import Registration


def _comparable(stacks, kernel: str = ""):
    """The series of a study a follow-up reads: CT, axial, the same reconstruction kernel as the other
    studies' where there is one, the thinnest slices, the most slices."""
    def key(st):
        h = st.first
        axial = abs(float(np.asarray(st.direction)[0][2])) > 0.9
        same_kernel = bool(kernel) and h.convolution_kernel.upper() == kernel.upper()
        return (h.modality == "CT", axial and st.has_geometry, same_kernel, -abs(float(st.spacing[0])),
                len(st.slices))
    return max(stacks, key=key)


def follow(paths, detector, *, patient: str | None = None, risk: str = "high", pool=None,
           progress=None, check=None, cache=None, edits: list[dict] | None = None, aliases=(),
           timepoints_out: list | None = None,
           dates: list[str] | None = None, stage=None) -> tuple[dict, list[LesionTrack]]:
    """The whole follow-up of one patient's studies under ``paths``: the report (the JSON
    ``medstation followup`` prints) and its tracks. ``cache`` (the study database's ``followup``
    records, or anything with ``registration(from, to)`` and ``save_registration(from, to, dict)``)
    keeps the transforms;
    ``timepoints_out`` receives the ``Timepoint`` s (their findings and slices, for :func:`export_sr`);
    ``aliases`` are other IDs of the same patient (a reader's link); ``dates`` date NIfTI / MetaImage /
    NRRD timepoints (one per path, in order), which carry none. ``stage(text, fraction)`` hears
    where the work is, in stages that move: reading the headers, detecting study i of n (slice by
    slice), registering pair j of n - 1, matching; ``fraction`` of the whole, each detection and
    each registration one equal part."""
    import tempfile

    from medstation.core.cpu import CpuShare
    from medstation.core.errors import LoadError, MedstationError
    from medstation.dicom import WorkerPool, list_series, open_series
    from medstation.dicom.volume_files import date_timepoints
    from medstation.imaging.registration import register
    from medstation.imaging.threads import itk_threads

    say = progress or (lambda _text: None)
    at = stage or (lambda _text, _fraction: None)
    own_pool = pool is None
    with tempfile.TemporaryDirectory(prefix="medstation-followup-") as tmp:
        pool = pool or WorkerPool()
        try:
            at(f"reading the headers under {len(paths)} path(s)", 0.0)
            listing = list_series(list(paths), pool, extract_dir=tmp)
            if not listing.stacks:
                raise LoadError(", ".join(str(p) for p in paths), "no image series found",
                                "give the studies' folders or files")
            date_timepoints(listing.stacks, paths, dates, patient)
            same = {patient, *aliases} if patient else set()
            patients = sorted({s.first.patient_id for s in listing.stacks})
            if patient:
                stacks = [s for s in listing.stacks if s.first.patient_id in same]
                if not stacks:
                    raise MedstationError(f"no series of patient {patient!r} (found {', '.join(patients)})",
                                          "name one of the patients found")
            elif len(patients) > 1:
                raise MedstationError(f"the series belong to {len(patients)} patients: "
                                      f"{', '.join(patients)}", "follow one with --patient ID")
            else:
                stacks = listing.stacks
            patient = patient or patients[0]
            by_study: dict[str, list] = {}
            for st in stacks:
                by_study.setdefault(st.first.study_uid, []).append(st)
            studies = sorted(by_study.values(), key=lambda v: (v[0].first.study_date or "",
                                                               v[0].first.study_time or ""))
            latest = _comparable(studies[-1])  # the kernel of the newest study sets the others'
            chosen = [_comparable(v, latest.first.convolution_kernel) for v in studies]
            threshold = detector.threshold
            timepoints, registrations = [], []
            probed_seen: list[int] = []  # per timepoint, its probed lesions once its pairs were done
            previous = previous_lungs = None
            parts = max(1, 2 * len(chosen) - 1)  # n detections and n - 1 registrations
            for i, st in enumerate(chosen):
                if check:
                    check()
                doing = f"detecting study {i + 1} of {len(chosen)} ({st.first.study_date or 'undated'})"
                part = max(0, 2 * i - 1)  # detect 1, detect 2, register 1-2, detect 3, register 2-3 ...
                at(f"{doing}: opening the series", part / parts)
                volume = open_series(st, pool=pool).volume

                def slices(done, total, doing=doing, part=part):
                    at(f"{doing}: slice {done} of {total}", (part + done / max(1, total)) / parts)

                run = detector.detect(volume, heatmap=False, check=check, progress=slices)
                found = [f for f in run.findings if f.score >= threshold]
                weaker = [f for f in run.findings if CANDIDATE_SHARE * threshold <= f.score < threshold]
                timepoints.append(Timepoint(st.first.study_uid, st.first.study_date, st.series_uid, found,
                                            list(volume.sources), weaker, threshold))
                say(f"{st.first.study_date}: {len(found)} finding(s) at the operating point "
                    f"({threshold:.2f})")
                if previous is not None:  # one pair of volumes in memory at a time
                    pair = (timepoints[-2].series_uid, st.series_uid)
                    cached = cache.registration(*pair) if cache is not None else None
                    if cached is not None:
                        reg = Registration.from_dict(cached)
                        reg.message = (reg.message + " (cached)").strip()
                    else:
                        at(f"registering study {i} onto study {i + 1} (pair {i} of {len(chosen) - 1})",
                           2 * i / parts)
                        # the detector's lung masks, not two more of them; ITK's team sized to the free
                        # cores (an instant reading)
                        with itk_threads(CpuShare().threads()):
                            reg = register(volume, previous, current_lungs=run.lungs,
                                           prior_lungs=previous_lungs)
                        if cache is not None and reg.ok:
                            cache.save_registration(*pair, reg.to_dict())
                    registrations.append(reg)
                    say(f"  registered onto the prior: {reg.method} "
                        f"{'ok' if reg.ok else 'FAILED: ' + reg.message} ({reg.seconds:.1f} s)")
                    looked = probe(timepoints[-2], previous, timepoints[-1], volume, reg)
                    if looked:
                        say(f"  {looked} lesion(s) measured where the other study's lesions map")
                probed_seen.append(len(timepoints[-1].probed))
                previous, previous_lungs = volume, run.lungs
            at(f"matching the lesions across {len(chosen)} studies", (parts - 0.5) / parts)
            # a lesion measured on a study only by looking back from a later one is looked for on
            # the study before it too (that study's volume is opened again, only when needed)
            for t in range(len(timepoints) - 3, -1, -1):
                new = timepoints[t + 1].probed[probed_seen[t + 1]:]
                if new:
                    back = open_series(chosen[t], pool=pool).volume
                    if probe_into(new, timepoints[t], back, registrations[t], False):
                        say(f"  {timepoints[t].study_date}: looked back for lesions first measured later")
                    del back
        finally:
            if own_pool:
                pool.close()
    tracks = build_tracks(patient, timepoints, registrations, risk=risk)
    if edits:
        tracks = edited(tracks, edits, timepoints[-1].study_date if timepoints else "", risk)
    regs = []
    for i, reg in enumerate(registrations):
        pairs = [(t.points[i], t.points[i + 1]) for t in tracks if t.points[i] and t.points[i + 1]]
        gaps = [np.linalg.norm(reg.map_point(a.center_patient) - np.asarray(b.center_patient))
                for a, b in pairs]
        regs.append({"from_series_uid": timepoints[i].series_uid,
                     "to_series_uid": timepoints[i + 1].series_uid, "method": reg.method, "ok": reg.ok,
                     "message": reg.message, "seconds": round(reg.seconds, 2),
                     "residual_mm": round(float(np.mean(gaps)), 2) if gaps else None,
                     "matrix": reg.matrix.round(6).tolist(), "offset": reg.offset.round(4).tolist()})
    report = {"patient_id": patient, "timepoints": [tp.to_dict() for tp in timepoints], "registrations": regs,
              "tracks": [t.to_dict() for t in tracks], "patient": patient_summary(tracks),
              "model": {"name": detector.name, "version": detector.version}, "not_for_clinical_use": True}
    if timepoints_out is not None:
        timepoints_out.extend(timepoints)
    return report, tracks


def export_sr(timepoints: list[Timepoint], tracks: list[LesionTrack], out_dir,
              predictions: dict[str, dict] | None = None) -> list[str]:
    """One TID 1500 SR per timepoint; a lesion's measurement group carries its track's tracking UID
    at every timepoint, so a PACS viewer links the same lesion across the studies."""
    from pathlib import Path

    from medstation.dicom.results import export_results

    written = []
    for t, tp in enumerate(timepoints):
        # every track point of this study: detected, below the operating point (a weaker finding that
        # continues a track) or measured where another study's lesion maps (a probe): each in the SR
        pool = {f.finding_id: f for f in [*tp.probed, *tp.candidates, *tp.findings]}
        uids, names = {}, {}
        for tr in tracks:
            p = tr.points[t]
            if p is not None and p.finding_id in pool:
                uids[p.finding_id] = tr.tracking_uid
                names[p.finding_id] = tr.name or tr.track_id  # the track's name at every study
        findings = [_with_outline(pool[fid]) for fid in uids]
        # predictions (by tracking UID) go with the lesion's measurement group of the last study
        preds = ({fid: (predictions or {})[uid] for fid, uid in uids.items() if uid in (predictions or {})}
                 if t == len(timepoints) - 1 else {})
        if findings and tp.sources:
            written.append(export_results(findings, tp.sources, Path(out_dir) / tp.study_date,
                                          tracking_uids=uids, tracking_ids=names, predictions=preds).sr)
    return written


def _with_outline(f: Finding) -> Finding:
    """``f``, with per-slice boxes from its segmentation where it has none (a probe measurement): an SR
    group needs its outline on the slices."""
    import copy

    from medstation.ai.sizing import boxes_from_mask

    got = f.mask_array() if not f.boxes else None
    if got is None:
        return f
    f = copy.copy(f)
    boxes_from_mask(f, *got)
    return f


