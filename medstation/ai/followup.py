"""Follow-up across a patient's studies: detections matched through registrations into lesion tracks.

For timepoints in date order (one series each, its detector findings and sizes),
each consecutive pair is registered (prior onto current, ``imaging.registration``)
and the prior's findings, mapped into the current study's patient mm, are matched
to the current ones by the Hungarian algorithm (``core.matching``) on distance,
with a penalty for a different size: a pair farther apart than the larger of
``MATCH_MM`` and the lesions' mean radius, or twice that when the registration
failed (patient coordinates only), stays unmatched. Chained matches make
``LesionTrack`` s; a lesion unmatched at a timepoint starts a track there (new)
or ends one (resolved). Findings under the operating point help in two ways: a
tracked lesion missing at one study is looked for among them where the
registration puts it (gap filling), and a sized one found again in the same place
at the next study starts a track of its own (a faint lesion that persists).
Each track gets Lung-RADS v2022 and Fleischner 2017 at the last timepoint
(``core.guidelines``), and a DICOM tracking UID derived from the patient and the track
(the same at every timepoint).

Pure: volumes, findings and registrations in, tracks out; no file is opened here. Opening a
patient's studies, detecting and writing SRs is ``workflows.followup``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medstation.core.findings import Finding
from medstation.core.guidelines import fleischner, lung_rads, lung_rads_growth, lung_rads_slow_growth
from medstation.core.matching import match
from medstation.core.tracks import LesionTrack, TrackPoint, days_between
from medstation.imaging.registration import Registration

MATCH_MM = 10.0
FALLBACK_FACTOR = 2.0
CANDIDATE_SHARE = 0.15
#: a weaker finding this share of the operating point or more, segmented as a lesion, and found again
#: where the registration puts it at another study, is a lesion (a track of its own)
PERSISTENT_SHARE = 0.6  # the detector sizes findings from 0.6 of its operating point up


@dataclass
class Timepoint:
    study_uid: str
    study_date: str  # YYYYMMDD
    series_uid: str
    findings: list[Finding] = field(default_factory=list)
    sources: list = field(default_factory=list, repr=False)  # the series' (file, frame) per slice
    #: findings below the operating point (down to ``CANDIDATE_SHARE`` of it), and lesions measured
    #: where a neighbouring study's lesion maps (``probed``): the segmented ones may be a tracked
    #: lesion's measurement there, or a faint lesion's track when it recurs (``_persistent``)
    candidates: list[Finding] = field(default_factory=list, repr=False)
    operating_point: float = 0.0  # the detector's threshold the findings passed
    #: lesions measured where a lesion of the neighbouring study maps (:func:`probe`); also in candidates
    probed: list[Finding] = field(default_factory=list, repr=False)

    def persistent_candidates(self) -> list[Finding]:
        """Weaker findings that may start a track when they recur at another study: at least
        ``PERSISTENT_SHARE`` of the operating point, and segmented as a compact lesion."""
        return [f for f in self.candidates if f.score >= PERSISTENT_SHARE * self.operating_point
                and f.size_method == "segmentation"]

    def measured_candidates(self) -> list[Finding]:
        """Weaker findings that were segmented as a lesion (the sized ones and the probed ones): what
        a track may take where it is missing. A weaker box nobody could segment is not a lesion."""
        return [f for f in self.candidates if f.size_method == "segmentation"]

    def to_dict(self) -> dict:
        return {"study_uid": self.study_uid, "study_date": self.study_date, "series_uid": self.series_uid}


def _size(f: Finding) -> float:
    return f.size.mm


def _point(tp: Timepoint, f: Finding) -> TrackPoint:
    size = f.size
    return TrackPoint(tp.study_date, tp.series_uid, tuple(float(v) for v in f.center_mm), round(size.mm, 1),
                      None if f.volume_mm3 is None else float(f.volume_mm3),
                      0.0 if f.mean_hu is None else float(f.mean_hu), f.nodule_type or "solid", f.finding_id,
                      round(float(f.solid_diameter_mm or 0.0), 1), size.method, size.what,
                      round(float(f.score), 4) if f.score > 0 else None,
                      round(float(f.diameter_mm), 1) if f.size_method == "segmentation" else None,
                      None if f.short_axis_mm is None else round(float(f.short_axis_mm), 1))


def match_pair(prior: list[Finding], current: list[Finding], reg: Registration) -> list[tuple[int, int]]:
    """Pairs (prior index, current index) of the same lesion."""
    if not prior or not current:
        return []
    mapped = np.array([reg.map_point(f.center_mm) for f in prior])
    cur = np.array([f.center_mm for f in current], float)
    dist = np.linalg.norm(mapped[:, None, :] - cur[None, :, :], axis=2)
    sp = np.array([_size(f) for f in prior])[:, None]
    sc = np.array([_size(f) for f in current])[None, :]
    ratio = np.maximum(sp, sc) / np.maximum(np.minimum(sp, sc), 0.5)
    cost = dist + 2.0 * np.log(ratio)  # a few mm for a lesion that doubled in diameter
    limit = np.maximum(MATCH_MM, (sp + sc) / 4) * (1.0 if reg.ok else FALLBACK_FACTOR)
    cost = np.where(dist <= limit, cost, np.inf)
    finite = cost[np.isfinite(cost)]
    ceiling = float(finite.max()) + 1.0 if finite.size else 1.0
    return match(np.where(np.isfinite(cost), cost, ceiling * 10), ceiling)


def _fill_gaps(tracks: list[list], timepoints: list[Timepoint], registrations: list[Registration]) -> None:
    """Where a track is absent next to a timepoint where it is present, look for the lesion where the
    registration puts it among that timepoint's weaker findings (a small or faint lesion the detector
    scored under its operating point at one study): as a reader looks for a new nodule on the prior."""
    n = len(timepoints)
    for _ in range(n):
        changed = False
        used = [{p[t].finding_id for p in tracks if p[t] is not None} for t in range(n)]
        for pts in tracks:
            for t in range(n):
                if pts[t] is not None:
                    continue
                if t + 1 < n and pts[t + 1] is not None:  # back through registration t -> t+1
                    reg, ref = registrations[t], pts[t + 1]
                    where = np.linalg.solve(reg.matrix, np.asarray(ref.center_patient) - reg.offset)
                elif t > 0 and pts[t - 1] is not None:
                    reg, ref = registrations[t - 1], pts[t - 1]
                    where = reg.map_point(ref.center_patient)
                else:
                    continue
                limit = max(MATCH_MM, ref.diameter_mm / 2) * (1.0 if reg.ok else FALLBACK_FACTOR)
                best = None
                for f in timepoints[t].measured_candidates():
                    if f.finding_id in used[t]:
                        continue
                    d = float(np.linalg.norm(np.asarray(f.center_mm) - where))
                    if d <= limit and (best is None or d < best[0]):
                        best = (d, f)
                if best is not None:
                    pts[t] = _point(timepoints[t], best[1])
                    used[t].add(best[1].finding_id)
                    changed = True
        if not changed:
            return


def _persistent(tracks: list[list], timepoints: list[Timepoint], registrations: list[Registration]) -> None:
    """Tracks of lesions the detector scored under its operating point at every study, but found
    in the same place (through the registrations) at two or more consecutive studies, with a
    segmentation each time (a sized weaker finding, or a lesion measured where one maps): a faint
    lesion that persists is read, as a reader reads it on the prior. At least one of them must be
    a finding the detector scored; each link must pass ``match_pair`` (distance, then size)."""
    n = len(timepoints)
    used = [{p[t].finding_id for p in tracks if p[t] is not None} for t in range(n)]
    # the faint ones, and what was measured where a lesion of a neighbouring study maps (a probe)
    pools = [[f for f in tp.persistent_candidates() + tp.probed if f.finding_id not in used[t]]
             for t, tp in enumerate(timepoints)]
    chains: dict[int, list] = {}  # candidate index at the current timepoint -> its chain
    faint: dict[int, bool] = {}  # the chain holds a finding the detector scored (not only probes)
    done: list[tuple[list, bool]] = []
    for t in range(n - 1):
        pairs = dict(match_pair(pools[t], pools[t + 1], registrations[t]))
        nxt: dict[int, list] = {}
        nxt_faint: dict[int, bool] = {}
        for a, b in pairs.items():
            chain = chains.get(a)
            scored = faint.get(a, False)
            if chain is None:
                chain = [None] * n
                chain[t] = _point(timepoints[t], pools[t][a])
                scored = pools[t][a].score > 0
            chain[t + 1] = _point(timepoints[t + 1], pools[t + 1][b])
            nxt[b], nxt_faint[b] = chain, scored or pools[t + 1][b].score > 0
        done += [(chain, faint[a]) for a, chain in chains.items() if a not in pairs]
        chains, faint = nxt, nxt_faint
    done += [(chain, faint[a]) for a, chain in chains.items()]
    tracks.extend(chain for chain, scored in done if scored)


#: a measured lesion's centre at most this far (mm, or its radius + 2 mm) from where the registration puts
#: it, its volume at most PROBE_GROWTH x the reference's (a lesion that grew that much was detected)
PROBE_MM = 5.0
PROBE_GROWTH = 3.0


def measure_at(volume, where, reference: Finding, name: str = "probe") -> Finding | None:
    """Look for ``reference`` 's lesion in ``volume`` where the registration puts it (``where``,
    patient mm) as a reader does on a prior or a follow-up: seed at the densest voxel near
    ``where``, segment (``imaging.segment``), and keep it only if it is a compact lesion that stands
    out from the lung, does not run out of its region (a vessel does), lies where it should, and is
    not far larger than the reference. A ``Finding`` (score 0, ``size_method`` "segmentation") or
    None: nothing there, as for a resolved lesion."""
    from medstation.imaging.segment import measure_nodule

    if volume.is_color or volume.voxels.ndim != 3:
        return None
    ref_d = float(_size(reference)) or 4.0
    search = max(3.0, ref_d / 2)
    c = volume.patient_to_index(np.asarray(where, float))
    sk, si, sj = (abs(float(v)) for v in volume.spacing)
    half = [max(1, int(np.ceil(search / s))) for s in (sk, si, sj)]
    lo = [max(0, int(round(c[a])) - half[a]) for a in range(3)]
    hi = [min(volume.shape[a], int(round(c[a])) + half[a] + 1) for a in range(3)]
    if any(h - lo_ < 1 for lo_, h in zip(lo, hi)):
        return None
    # the 3x3x3 mean, so that the seed is a lesion's inside rather than one bright voxel at its edge
    plo = [max(0, v - 1) for v in lo]
    phi = [min(volume.shape[a], hi[a] + 1) for a in range(3)]
    padded = np.pad(np.asarray(volume.voxels[plo[0]:phi[0], plo[1]:phi[1], plo[2]:phi[2]], np.float32),
                    [(1 - (lo[a] - plo[a]), 1 - (phi[a] - hi[a])) for a in range(3)], mode="edge")
    n = [hi[a] - lo[a] for a in range(3)]
    block = sum(padded[dk:dk + n[0], di:di + n[1], dj:dj + n[2]]
                for dk in range(3) for di in range(3) for dj in range(3)) / 27.0
    kk, ii, jj = np.meshgrid(*(np.arange(lo[a], hi[a]) for a in range(3)), indexing="ij")
    dist = np.sqrt(((kk - c[0]) * sk) ** 2 + ((ii - c[1]) * si) ** 2 + ((jj - c[2]) * sj) ** 2)
    block = np.where(dist <= search, block, -np.inf)
    seed = np.unravel_index(int(np.argmax(block)), block.shape)
    seed = tuple(int(lo[a] + seed[a]) for a in range(3))
    size = measure_nodule(volume, seed, radius_mm=0.75 * max(ref_d, 4.0) + 4.0)
    if size is None or size.touches_edge or size.mask is None or size.voxels < 4:
        return None
    ref_mm3 = reference.volume_mm3
    if ref_mm3 is not None and size.volume_mm3 > PROBE_GROWTH * max(float(ref_mm3), 1.0):
        return None
    if size.short_axis_mm < 0.4 * size.long_axis_mm:  # a vessel's run, not a round lesion
        return None
    nz = np.nonzero(size.mask)
    centre_idx = tuple(float(np.mean(a)) + o for a, o in zip(nz, size.origin))
    centre = volume.index_to_patient(centre_idx)
    if float(np.linalg.norm(centre - np.asarray(where, float))) > max(PROBE_MM, ref_d / 2 + 2.0):
        return None
    f = Finding(finding_id=name, center_mm=tuple(round(float(v), 2) for v in centre),
                center_voxel=tuple(round(v, 2) for v in centre_idx), diameter_mm=size.long_axis_mm, score=0.0,
                slice_range=(int(nz[0].min() + size.origin[0]), int(nz[0].max() + size.origin[0])),
                volume_mm3=size.volume_mm3, short_axis_mm=size.short_axis_mm,
                equivalent_diameter_mm=size.equivalent_diameter_mm, size_method="segmentation",
                mean_diameter_mm=size.mean_diameter_mm, mean_hu=size.mean_hu, max_hu=size.max_hu,
                nodule_type=size.nodule_type, solid_diameter_mm=size.solid_long_axis_mm,
                model_name=reference.model_name, model_version=reference.model_version)
    f.set_mask(size.mask, size.origin)
    return f


def probe_into(lesions: list[Finding], target: Timepoint, volume, reg: Registration, forward: bool) -> int:
    """Measure in ``volume`` (``target`` 's) where each of ``lesions`` maps, where ``target`` has
    nothing near (:func:`measure_at`); found lesions join ``target`` 's weaker findings."""
    found = 0
    inverse = np.linalg.inv(reg.matrix)
    for f in list(lesions):
        centre = np.asarray(f.center_mm, float)
        where = reg.map_point(centre) if forward else inverse @ (centre - reg.offset)
        limit = max(MATCH_MM, _size(f) / 2) * (1.0 if reg.ok else FALLBACK_FACTOR)
        if any(np.linalg.norm(np.asarray(g.center_mm) - where) <= limit
               for g in target.findings + target.measured_candidates()):
            continue
        g = measure_at(volume, where, f, name=f"P{len(target.probed) + 1}")
        if g is not None:
            target.candidates.append(g)
            target.probed.append(g)
            found += 1
    return found


def _lesions(tp: Timepoint) -> list[Finding]:
    return tp.findings + tp.persistent_candidates() + tp.probed


def probe(prior: Timepoint, prior_volume, current: Timepoint, volume, reg: Registration) -> int:
    """For each lesion of ``prior`` with nothing where the registration puts it in ``current`` (no
    finding, no weaker one), measure what is there (:func:`measure_at`) and keep it among
    ``current`` 's weaker findings; and the same backwards, for ``current`` 's lesions on
    ``prior``. Gap filling then takes them: a lesion that shrank below what the detector sees is
    followed down instead of being called resolved. Returns how many were found."""
    return (probe_into(_lesions(prior), current, volume, reg, True)
            + probe_into(_lesions(current), prior, prior_volume, reg, False))


def _join(tracks: list[list], registrations: list[Registration]) -> list[list]:
    """Join a track that ends at timepoint t to one that starts at t + 1 where the registration maps the
    one onto the other (a lesion found again after a gap was filled with a weaker finding)."""
    def span(pts):
        idx = [i for i, p in enumerate(pts) if p is not None]
        return (idx[0], idx[-1]) if idx else (None, None)

    joined = True
    while joined:
        joined = False
        for a in tracks:
            _a0, a1 = span(a)
            if a1 is None or a1 + 1 >= len(a):
                continue
            reg = registrations[a1]
            where = reg.map_point(a[a1].center_patient)
            limit = max(MATCH_MM, a[a1].diameter_mm / 2) * (1.0 if reg.ok else FALLBACK_FACTOR)
            best = None
            for b in tracks:
                b0, _b1 = span(b)
                if b is a or b0 != a1 + 1 or any(p is not None for p in b[:a1 + 1]):
                    continue
                d = float(np.linalg.norm(np.asarray(b[b0].center_patient) - where))
                if d <= limit and (best is None or d < best[0]):
                    best = (d, b)
            if best is not None:
                b = best[1]
                for i, p in enumerate(b):
                    if p is not None:
                        a[i] = p
                tracks = [t for t in tracks if t is not b]
                joined = True
                break
    return tracks


def tracking_uid(patient_id: str, track_id: str, first: TrackPoint) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[patient_id, track_id, first.study_date, first.series_uid,
                                      *(f"{v:.1f}" for v in first.center_patient)])


def build_tracks(patient_id: str, timepoints: list[Timepoint], registrations: list[Registration], *,
                 risk: str = "high") -> list[LesionTrack]:
    """Tracks over ``timepoints`` (date order); ``registrations[i]`` maps timepoint i onto i + 1."""
    n = len(timepoints)
    open_tracks: dict[int, list] = {}  # current finding index -> its track's points
    tracks: list[list] = []
    for t, tp in enumerate(timepoints):
        if t == 0:
            for i, f in enumerate(tp.findings):
                pts = [None] * n
                pts[0] = _point(tp, f)
                tracks.append(pts)
                open_tracks[i] = pts
            continue
        prior = timepoints[t - 1]
        pairs = dict(match_pair(prior.findings, tp.findings, registrations[t - 1]))
        nxt: dict[int, list] = {}
        for pi, ci in pairs.items():
            pts = open_tracks.get(pi)
            if pts is None:
                continue
            pts[t] = _point(tp, tp.findings[ci])
            nxt[ci] = pts
        for ci, f in enumerate(tp.findings):
            if ci not in nxt:
                pts = [None] * n
                pts[t] = _point(tp, f)
                tracks.append(pts)
                nxt[ci] = pts
        open_tracks = nxt
    _fill_gaps(tracks, timepoints, registrations)
    _persistent(tracks, timepoints, registrations)
    _fill_gaps(tracks, timepoints, registrations)
    tracks = _join(tracks, registrations)
    out = []
    last_date = timepoints[-1].study_date if timepoints else ""
    for k, pts in enumerate(sorted(tracks, key=lambda p: next(i for i, x in enumerate(p) if x is not None)),
                            start=1):
        first = next(p for p in pts if p is not None)
        track = LesionTrack(f"T{k}", tracking_uid(patient_id, f"T{k}", first), pts)
        track.confirmed, track.evidence = new_lesion_evidence(pts, timepoints, registrations)
        out.append(track)
    present_at_last = sum(1 for t in out if t.confirmed and t.points and t.points[-1] is not None)
    for track in out:
        track.guideline = guideline(track, last_date, multiple=present_at_last > 1, risk=risk)
    return out


#: a lesion first seen after the first study is a new lesion only if the detector scored it at least
#: this far above its operating point (or it was found again at a later study): a false positive at
#: the last study must not read as a new 4B nodule
NEW_LESION_MARGIN = 0.2


def new_lesion_evidence(pts: list, timepoints: list[Timepoint], registrations: list[Registration]
                        ) -> tuple[bool, str]:
    """Whether a track that starts after the first study is a confirmed new lesion, and why."""
    t0 = next(i for i, p in enumerate(pts) if p is not None)
    if t0 == 0:
        return True, ""
    reg = registrations[t0 - 1]
    seen = [p for p in pts if p is not None]
    best = max((p.score for p in seen if p.score is not None), default=None)
    strict = min(0.95, timepoints[t0].operating_point + NEW_LESION_MARGIN)
    if not reg.ok:
        return False, ("not looked for on the prior: the registration failed, so where it would lie there "
                       "is unknown")
    looked = f"nothing on the prior ({timepoints[t0 - 1].study_date}) where the registration maps it"
    if len(seen) >= 2:
        return True, f"{looked}; found again at {len(seen) - 1} later study(ies)"
    if best is not None and best >= strict:
        return True, f"{looked}; score {best:.2f} at or above the new-lesion point {strict:.2f}"
    return False, (f"{looked}, but seen at one study only with score "
                   f"{'-' if best is None else f'{best:.2f}'} below the new-lesion point {strict:.2f}: "
                   "unconfirmed (check it; it does not set the patient's category)")


def patient_summary(tracks: list[LesionTrack]) -> dict:
    """The patient's Lung-RADS category: the highest of the confirmed tracks present at the last study
    (Lung-RADS v2022 categorises an exam by its most suspicious nodule); unconfirmed new tracks are
    listed apart."""
    order = ["0", "1", "2", "3", "4A", "4B", "4X"]
    confirmed, unconfirmed = [], []
    for t in tracks:
        cat = ((t.guideline or {}).get("lung_rads") or {}).get("category")
        if not cat:
            continue
        (confirmed if t.confirmed else unconfirmed).append((cat, t.track_id))
    top = max(confirmed, key=lambda c: order.index(c[0]) if c[0] in order else -1, default=None)
    return {"lung_rads": top[0] if top else None, "set_by": top[1] if top else None,
            "unconfirmed_tracks": [tid for _c, tid in unconfirmed]}


def summary_text(summary: dict) -> str:
    """", Lung-RADS 4A (set by T2), unconfirmed new: T5" for a status line."""
    text = ""
    if summary.get("lung_rads"):
        text = f", Lung-RADS {summary['lung_rads']} (set by {summary['set_by']})"
    if summary.get("unconfirmed_tracks"):
        text += f", unconfirmed new: {', '.join(summary['unconfirmed_tracks'])}"
    return text


def edited(tracks: list[LesionTrack], edits: list[dict], exam_date: str,
           risk: str = "high") -> list[LesionTrack]:
    """``core.tracks.apply_edits``, then every track's guideline again (link and unlink change them)."""
    from medstation.core.tracks import apply_edits

    tracks = apply_edits(tracks, edits)
    multiple = sum(1 for t in tracks if t.confirmed and t.points and t.points[-1] is not None) > 1
    for t in tracks:
        t.guideline = guideline(t, exam_date, multiple=multiple, risk=risk)
    return tracks


def guideline(track: LesionTrack, exam_date: str, *, multiple: bool, risk: str = "high") -> dict:
    """Lung-RADS v2022 and Fleischner 2017 for the track's last measurement ({} if it is gone).

    Lung-RADS is assigned visit by visit, in date order, each visit's category from the category
    assigned at the visit before it (v2022's stepped management reads the prior *category*, not the
    prior size); the history is in the output. Where a rule needs what was not measured (a part-solid
    nodule's solid component) or the text is silent, the output says so."""
    last = track.points[-1] if track.points else None
    if last is None:
        return {}
    history = visit_categories(track, exam_date)
    lr, status, solid_note = history[-1]["result"], history[-1]["status"], history[-1]["solid_note"]
    kind = _kind(last)
    fl = fleischner(kind, last.diameter_mm, multiple=multiple, risk=risk,
                    solid_mm=(last.solid_mm or None) if kind == "part-solid" else None)
    # the number the rule read, named, and whether it came from a measurement or only a box
    size = {"mm": last.diameter_mm, "what": last.size_name, "method": last.size_method}
    caveats = ["from the detector's box (the lesion was not segmented): check the size before acting on it"
               if last.size_method == "box" else "", solid_note]
    caveat = "; ".join(c for c in caveats if c)
    prior = next((h for h in reversed(history[:-1]) if h is not None), None)
    return {"lung_rads": {"category": lr.category, "management": lr.management, "rule": lr.rule,
                          "next_ct_date": lr.next_ct_date, "status": status, "size": size, "caveat": caveat,
                          "prior_category": prior["result"].category if prior else None,
                          "history": [None if h is None else {"study_date": h["study_date"],
                                                              "category": h["result"].category,
                                                              "status": h["status"]} for h in history]},
            "fleischner": {"recommendation": fl["recommendation"], "risk": fl["risk"], "size": size,
                           "rule": fl["rule"], "remark": fl["remark"], "caveat": caveat}}


def _kind(p: TrackPoint) -> str:
    return p.type if p.type in ("solid", "part-solid", "ground-glass", "calcified") else "solid"


def visit_categories(track: LesionTrack, exam_date: str = "") -> list[dict | None]:
    """Per timepoint (None where the lesion is absent): the Lung-RADS status and category assigned at that
    visit, each from the one before it."""
    out: list[dict | None] = []
    run: list[TrackPoint] = []  # consecutive present points up to this one (for slow growth)
    for n, p in enumerate(track.points):
        if p is None:
            out.append(None)
            run = []
            continue
        kind = _kind(p)
        prev = track.points[n - 1] if n else None
        prior = out[n - 1] if n else None
        if n == 0:
            status = "baseline"
        elif prev is None:
            status = "new"
        elif lung_rads_growth(prev.diameter_mm, p.diameter_mm, days_between(prev.study_date, p.study_date)):
            status = "growing"
        elif lung_rads_slow_growth([q.diameter_mm for q in [*run, p]]):
            status = "slow-growing"
        else:
            status = "stable"
        run.append(p)
        solid_note = ""
        solid = 0.0
        if kind == "part-solid":
            if p.solid_mm > 0:
                solid = p.solid_mm
            else:  # the text sizes part-solid nodules by the solid component: not measured, so said
                solid = p.diameter_mm / 2
                solid_note = ("solid component not measured: taken as half the nodule's size; measure it "
                              "before acting on the category")
        date = exam_date if n == len(track.points) - 1 and exam_date else p.study_date
        result = lung_rads(kind, p.diameter_mm, solid_mm=solid, status=status,
                           prior_category=prior["result"].category if prior else None,
                           prior_mean_mm=prev.diameter_mm if prior else None,
                           prior_solid_mm=prior["solid"] if prior else 0.0, exam_date=date)
        out.append({"study_date": p.study_date, "status": status, "result": result, "solid_note": solid_note,
                    "solid": solid})
    return out


def add_predictions(report: dict, predictor, predict_at: str) -> None:
    """Each track of ``report`` gets ``prediction`` at ``predict_at`` (YYYY-MM-DD or YYYYMMDD) from the
    follow-up predictor (``ai.predictor``), or ``prediction: None`` with ``prediction_withheld`` saying
    why (gone at the last study, outside what the model learned)."""
    from medstation.core.errors import MedstationError

    date = predict_at.replace("-", "")
    last = report["timepoints"][-1]["study_date"] if report["timepoints"] else ""
    if not (len(date) == 8 and date.isdigit()):
        raise MedstationError(f"--predict-at {predict_at!r} is not a date", "give it as YYYY-MM-DD")
    if last and date <= last:
        raise MedstationError(f"--predict-at {predict_at} is not after the last study "
                              f"({last[:4]}-{last[4:6]}-{last[6:]})", "predict a date after the last study")
    todo, where = [], []
    for t in report["tracks"]:
        t["prediction"] = None
        pts = [m for m in t["measurements"] if m is not None]
        if t["measurements"] and t["measurements"][-1] is None:
            t["prediction_withheld"] = "the lesion is gone at the last study"
            continue
        ahead = days_between(pts[-1]["study_date"], date)
        unmeasured = sum(m.get("volume_mm3") is None for m in pts)
        why = (f"{unmeasured} of its {len(pts)} measurement(s) have no volume (not segmented)" if unmeasured
               else predictor.withheld(pts, ahead))
        if why:
            t["prediction_withheld"] = f"outside what the model learned: {why}"
            continue
        todo.append((pts, ahead))
        where.append(t)
    for t, p in zip(where, predictor.predict_many([a for a, _ in todo], [b for _, b in todo])):
        t["prediction"] = {"model": predictor.name, "version": predictor.version,
                           "date": f"{date[:4]}-{date[4:6]}-{date[6:]}", **p.to_dict()}
