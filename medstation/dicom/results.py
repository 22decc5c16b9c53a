"""AI results and reader measurements as standard DICOM: Comprehensive 3D SR (TID 1500) and SEG.

``export_results()`` writes, for one series:

- a Comprehensive 3D SR holding a TID 1500 Measurement Report. Each finding
  is one TID 1411 volumetric ROI group: its tracking identifier (the finding
  id) and tracking UID, finding type "Nodule" (or "Mass" over 30 mm), the per-slice outline of the
  lesion as a closed POLYLINE in the image coordinates of each slice it spans,
  its centre as a SCOORD3D point (patient mm), Long Axis (mm), Volume (mm3)
  and the detector's Score, with the model name and version as algorithm
  identification. Each reader length measurement is a TID 1410 planar group
  with a two-point POLYLINE and its Length.
- a SEG (when a volume is given) with one segment per finding, linked to the
  SR group by the same tracking UID. The mask is the part of each slice's
  box-inscribed ellipse that is denser than the surrounding lung
  (> ``MASK_HU``): a derived outline, not a segmentation model's output,
  and the segment's algorithm identification says which detector drew it.

``read_sr()`` and ``read_seg()`` read them back (from medstation or any TID
1500 writer that uses the same concepts) into ``Finding`` objects and masks.
Both are written with highdicom; the tests check them with dciodvfy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.sr.codedict import codes

from medstation import __version__
from medstation.core.findings import Finding
from medstation.dicom._write import write_dataset
from medstation.dicom.sr_groups import (  # noqa: F401 (the concepts are re-exported: readers use them)
    ALGORITHM_NAME,
    ALGORITHM_VERSION,
    CENTER,
    DETECTION_SKIPPED,
    DETECTION_STATUS,
    LENGTH,
    LONG_AXIS,
    MEASUREMENT_GROUP,
    MEASUREMENT_METHOD,
    METHOD_BOX,
    METHOD_SEGMENTATION,
    PREDICTED_GROWTH,
    PREDICTED_VOLUME,
    REVIEW,
    REVIEW_VALUES,
    SCORE,
    SHORT_AXIS,
    TRACKING_ID,
    TRACKING_UID,
    VOLUME,
    ExportError,
    finding_group,
    is_axial_length,
    length_group,
    models_of,
    observation_context,
    skipped_group,
)

MASK_HU = -650.0
MANUFACTURER = "medstation"
SERIES_NUMBER_SR = 9001
SERIES_NUMBER_SEG = 9002

@dataclass
class ExportResult:
    sr: str
    seg: str | None
    findings: int
    measurements: int
    #: finding id -> tracking UID (shared by the SR group and the SEG segment)
    tracking_uids: dict[str, str] = field(default_factory=dict)


@dataclass
class ReaderLength:
    """A reader's length measurement read back from an SR."""

    tracking_id: str
    slice_index: int
    points: list[tuple[float, float, float]]  # (k, i, j) voxel indices
    length_mm: float


def _uid(*parts: str) -> str:
    """A UID derived from ``parts`` (2.25 + 128-bit hash), stable for the same inputs."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()[:16]
    return "2.25." + str(int.from_bytes(digest, "big"))


def _source_headers(sources: Sequence[tuple[str, int]]) -> list[Dataset]:
    from medstation.dicom.volume_files import FORMATS, is_volume_file, suffix_of

    headers: list[Dataset] = []
    for path, frame in sources:
        if is_volume_file(path):
            raise ExportError(f"{path}: a {FORMATS[suffix_of(path)]} file, not DICOM: an SR or SEG must "
                              "reference DICOM images",
                              "export the findings as a NIfTI label map instead (detect --masks, or "
                              "AI > Export findings as a NIfTI mask)")
        if frame:
            raise ExportError(f"{path}: frame {frame + 1} of a multi-frame image",
                              "export of results on multi-frame series is not supported yet")
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise ExportError(f"{path}: the source image could not be read ({type(exc).__name__})",
                              "the series' files may have moved: import the study again") from exc
        for keyword in _TYPE2_PATIENT_STUDY:  # highdicom copies them from the evidence; real files omit some
            if keyword not in ds:
                setattr(ds, keyword, "")
        headers.append(ds)
    return headers


#: type 2 patient and study attributes a report copies from its images (empty when a file lacks them)
_TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                        "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def finding_mask(volume_voxels: np.ndarray, finding: Finding) -> dict[int, np.ndarray]:
    """Per-slice boolean masks (full slice size) for a finding: its segmentation where it has one,
    else the dense voxels inside each box's ellipse."""
    rows, cols = volume_voxels.shape[1:3]
    seg = finding.mask_array()
    if seg is not None:
        block, (k0, i0, j0) = seg
        out: dict[int, np.ndarray] = {}
        for dk, plane in enumerate(block):
            k = k0 + dk
            if not plane.any() or not 0 <= k < volume_voxels.shape[0]:
                continue
            full = np.zeros((rows, cols), bool)
            sub = plane[: max(0, rows - i0), : max(0, cols - j0)]
            full[i0:i0 + sub.shape[0], j0:j0 + sub.shape[1]] = sub
            out[k] = full
        if out:
            return out
    dense: dict[int, np.ndarray] = {}
    ellipses: dict[int, np.ndarray] = {}
    ii, jj = np.mgrid[0:rows, 0:cols]
    for k, i0, j0, i1, j1, _score in finding.boxes:
        ci, cj = (i0 + i1) / 2, (j0 + j1) / 2
        ri, rj = max((i1 - i0) / 2, 0.5), max((j1 - j0) / 2, 0.5)
        ellipse = ((ii - ci) / ri) ** 2 + ((jj - cj) / rj) ** 2 <= 1.0
        ellipses[int(k)] = ellipse
        mask = ellipse & (volume_voxels[k] > MASK_HU)
        if mask.any():
            dense[int(k)] = mask
    # a lesion fainter than MASK_HU everywhere (pure ground glass) keeps its ellipses
    return dense or {k: e for k, e in ellipses.items() if e.any()}


def export_results(
    findings: Sequence[Finding],
    sources: Sequence[tuple[str, int]],
    out_dir: str | Path,
    *,
    voxels: np.ndarray | None = None,
    lengths: Sequence[dict] = (),
    spacing: tuple[float, float, float] | None = None,
    tracking_uids: dict[str, str] | None = None,
    tracking_ids: dict[str, str] | None = None,
    predictions: dict[str, dict] | None = None,
) -> ExportResult:
    """Write the SR (and the SEG when ``voxels`` is given) for one series into ``out_dir``.

    ``sources`` is the volume's ``(file, frame)`` per slice, in slice order
    (``Volume.sources``); finding boxes and measurement points index the same
    slices. ``lengths`` are reader measurements as stored (``Measurement.to_dict()``
    with ``kind == "length"``); ``spacing`` (slice, row, column mm) gives their length.
    One builder per template group (``dicom.sr_groups``); this puts them in one report.
    """
    if not sources:
        raise ExportError("the series has no source images", "open an image series before exporting")
    headers = _source_headers(sources)
    ref = headers[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = [str(ref.SeriesInstanceUID), repr([f.to_dict() for f in findings]), repr(list(lengths))]
    # a follow-up passes each lesion's track UID: the same at every timepoint of the patient
    tracking = {f.finding_id: (tracking_uids or {}).get(f.finding_id) or _uid(*key, "track", f.finding_id)
                for f in findings}
    context = observation_context(_uid(*key, "device"), models_of(list(findings)) or "reader measurements",
                                  MANUFACTURER)
    evidence: dict[str, Dataset] = {}
    frame_of_reference = str(ref.get("FrameOfReferenceUID") or "")
    groups = [finding_group(f, headers, evidence, tracking_uid=tracking[f.finding_id],
                            tracking_id=(tracking_ids or {}).get(f.finding_id) or f.finding_id,
                            frame_of_reference_uid=frame_of_reference,
                            prediction=(predictions or {}).get(f.finding_id))
              for f in findings]
    axial_lengths = [m for m in lengths if is_axial_length(m)]
    for n, m in enumerate(axial_lengths, 1):
        tid = f"M{m.get('id', n)}"
        groups.append(length_group(m, headers, evidence, tracking_uid=_uid(*key, "length", tid),
                                   tracking_id=tid, spacing=spacing))
    n_lengths = len(axial_lengths)

    if not groups:
        raise ExportError("nothing to export: no findings and no axial length measurements",
                          "run detection or measure a lesion first")
    sr_path = _write_report(groups, list(evidence.values()), context, key, out,
                            "medstation AI findings (not for clinical use)")

    seg_path = None
    if voxels is not None and findings:
        seg_path = _write_seg(findings, headers, voxels, tracking, key, out)
    return ExportResult(sr=str(sr_path), seg=seg_path, findings=len(findings), measurements=n_lengths,
                        tracking_uids=tracking)


def export_skipped(reason: str, sources: Sequence[tuple[str, int]], out_dir: str | Path, *,
                   model_name: str = "", model_version: str = "") -> str:
    """An SR saying why no finding was reported (e.g. "no lung in this series: detection skipped"):
    one TID 1501 group whose tracking identifier carries the reason and whose qualitative
    evaluation is "detection skipped", with the series' first image as its source. A PACS
    reader sees that detection was refused, not that it found nothing."""
    if not sources:
        raise ExportError("the series has no source images", "open an image series before exporting")
    headers = _source_headers(sources[:1])
    ref = headers[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = [str(ref.SeriesInstanceUID), "skipped", reason]
    models = f"{model_name} {model_version}".strip() or "medstation"
    context = observation_context(_uid(*key, "device"), models, MANUFACTURER)
    group = skipped_group(reason, ref, tracking_uid=_uid(*key, "track"), model_name=model_name,
                          model_version=model_version)
    return str(_write_report([group], [ref], context, key, out,
                             "medstation AI: detection skipped (not for clinical use)"))


def _write_report(groups: list, evidence: list[Dataset], context, key: list[str], out: Path,
                  description: str) -> Path:
    """The TID 1500 report of ``groups`` in a Comprehensive 3D SR, written atomically into ``out``."""
    import highdicom as hd
    report = hd.sr.MeasurementReport(observation_context=context,
                                     procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=groups)
    sr_uid = _uid(*key, "sr")
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=_uid(*key, "sr-series"),
        series_number=SERIES_NUMBER_SR, sop_instance_uid=sr_uid, instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=description)
    path = out / f"SR_{sr_uid[-12:]}.dcm"
    write_dataset(sr, path)
    return path


def read_skipped(path: str | Path) -> str | None:
    """The reason of an SR written by :func:`export_skipped` (None for any other SR)."""
    ds = dcmread(path)
    reason, skipped = None, False
    for item in _walk(ds.get("ContentSequence")):
        if item.get("ValueType") == "TEXT" and _concept(item) == TRACKING_ID:
            reason = str(item.TextValue)
        if item.get("ValueType") == "CODE" and _concept(item) == DETECTION_STATUS:
            skipped = _concept(item, "ConceptCodeSequence") == DETECTION_SKIPPED
    return reason if skipped else None


def _write_seg(findings, headers, voxels, tracking, key, out: Path) -> str:
    import highdicom as hd

    masks = [finding_mask(voxels, f) for f in findings]
    slices = sorted({k for m in masks for k in m})
    if not slices:
        raise ExportError("the findings have no voxels to segment", "run detection again before exporting")
    rows, cols = voxels.shape[1:3]
    array = np.zeros((len(slices), rows, cols, len(findings)), dtype=bool)
    at = {k: n for n, k in enumerate(slices)}
    for s, m in enumerate(masks):
        for k, mask in m.items():
            array[at[k], :, :, s] = mask
    descriptions = []
    for s, f in enumerate(findings, start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=s, segment_label=f"{f.finding_id} nodule",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Nodule,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=f.model_name or "unknown", version=f.model_version or "0",
                family=codes.DCM.ArtificialIntelligence,
                source="medstation: region growing from the detection (imaging.segment)"
                if f.mask else "medstation: dense voxels in the detector's boxes"),
            tracking_uid=tracking[f.finding_id], tracking_id=f.finding_id))
    seg_uid = _uid(*key, "seg")
    seg = hd.seg.Segmentation(
        source_images=[headers[k] for k in slices], pixel_array=array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=_uid(*key, "seg-series"), series_number=SERIES_NUMBER_SEG,
        sop_instance_uid=seg_uid, instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="medstation", software_versions=__version__, device_serial_number="0",
        series_description="medstation AI findings (not for clinical use)", omit_empty_frames=True)
    path = out / f"SEG_{seg_uid[-12:]}.dcm"
    write_dataset(seg, path)
    return str(path)


# --------------------------------------------------------------------------- reading back


def _concept(item: Dataset, seq: str = "ConceptNameCodeSequence") -> tuple[str, str]:
    s = item.get(seq)
    if not s:
        return ("", "")
    value = s[0].get("CodeValue") or s[0].get("LongCodeValue") or s[0].get("URNCodeValue") or ""
    return (str(value), str(s[0].get("CodingSchemeDesignator", "")))


#: a TID 1500 report nests a few levels; far deeper is not a measurement report (and must not
#: exhaust the stack)
MAX_SR_DEPTH = 32


def _walk(items, depth: int = 0):
    if depth > MAX_SR_DEPTH:
        raise ExportError(f"the content tree is nested deeper than {MAX_SR_DEPTH} levels: not a "
                          "TID 1500 measurement report", "export the report again, or choose another file")
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"), depth + 1)


def _num(item: Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def _opt_float(value) -> float | None:
    return None if value is None else float(value)


def _concept_of_value(item: Dataset) -> tuple[str, str]:
    return _concept(item, "ConceptCodeSequence")


def read_sr(path: str | Path, slice_uids: Sequence[str],
            spacing_index_to_mm=None) -> tuple[list[Finding], list[ReaderLength]]:
    """Findings and reader lengths of a TID 1500 SR, in the voxel indices of the series
    whose slices have the SOP Instance UIDs ``slice_uids`` (in slice order)."""
    try:
        ds = dcmread(path)
    except Exception as exc:
        raise ExportError(f"{path}: not a readable DICOM file ({type(exc).__name__})",
                          "choose a DICOM SR file") from exc
    if ds.get("Modality") != "SR" or "ContentSequence" not in ds:
        raise ExportError(f"{path}: not a structured report", "choose a DICOM SR file")
    try:
        return _read_groups(path, ds, slice_uids, spacing_index_to_mm)
    except ExportError as exc:
        if str(path) in exc.reason:
            raise
        raise ExportError(f"{path}: {exc.reason}", exc.hint) from None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
        # a group without a value, a UID or a coordinate where TID 1500 has one: one line, no traceback
        raise ExportError(f"{path}: a measurement group is malformed "
                          f"({type(exc).__name__}: {str(exc)[:120]})",
                          "export the report again from the series it was made on") from None


def _read_groups(path, ds, slice_uids, spacing_index_to_mm) -> tuple[list[Finding], list[ReaderLength]]:
    index = {uid: k for k, uid in enumerate(slice_uids)}
    findings: list[Finding] = []
    lengths: list[ReaderLength] = []
    for item in _walk(ds.ContentSequence):
        if item.get("ValueType") != "CONTAINER" or _concept(item) != MEASUREMENT_GROUP:
            continue
        group = list(item.get("ContentSequence", []))
        values: dict[tuple[str, str], object] = {}
        regions = []
        algo_name = algo_version = ""
        for child in _walk(group):
            c = _concept(child)
            vt = child.get("ValueType")
            if vt == "TEXT" and c == TRACKING_ID:
                values[TRACKING_ID] = str(child.TextValue)
            elif vt == "UIDREF" and c == TRACKING_UID:
                values[TRACKING_UID] = str(child.UID)
            elif vt == "NUM" and c in (LONG_AXIS, SHORT_AXIS, VOLUME, SCORE, LENGTH) \
                    and "MeasuredValueSequence" in child:
                values[c] = _num(child)
            elif vt == "CODE" and c == MEASUREMENT_METHOD and c not in values:
                values[MEASUREMENT_METHOD] = _concept_of_value(child)
            elif vt == "CODE" and c == REVIEW:
                values[REVIEW] = _concept_of_value(child)
            elif vt == "SCOORD3D" and c == CENTER:
                values[CENTER] = tuple(float(v) for v in child.GraphicData[:3])
                if len(values[CENTER]) != 3:
                    raise ExportError(f"the centre of a group has {len(values[CENTER])} coordinates, not 3",
                                      "export the report again")
            elif vt == "SCOORD":
                refs = [r for r in _walk(child.get("ContentSequence")) if r.get("ValueType") == "IMAGE"]
                uid = str(refs[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID) if refs else ""
                regions.append((uid, np.asarray(child.GraphicData, dtype=float).reshape(-1, 2)))
            elif vt == "TEXT" and c == ALGORITHM_NAME:
                algo_name = str(child.TextValue)
            elif vt == "TEXT" and c == ALGORITHM_VERSION:
                algo_version = str(child.TextValue)
        tid = str(values.get(TRACKING_ID, ""))
        names = {LONG_AXIS: "the long axis", SHORT_AXIS: "the short axis", VOLUME: "the volume",
                 SCORE: "the score", LENGTH: "the length"}
        bad = [names.get(c, "a value") for c, v in values.items()
               if isinstance(v, float) and not math.isfinite(v)]
        bad += ["an outline"] if any(not np.isfinite(pts).all() for _uid, pts in regions) else []
        bad += ["the centre"] if CENTER in values and not all(map(math.isfinite, values[CENTER])) else []
        if bad:
            raise ExportError(f"group {tid or '?'}: {bad[0]} is not a finite number",
                              "export the report again from the series it was made on")
        missing = [uid for uid, _ in regions if uid not in index]
        if missing:
            raise ExportError(f"{path}: group {tid or '?'} refers to image {missing[0]}, not in this series",
                              "open the series the report was made on")
        if LENGTH in values and len(regions) == 1 and len(regions[0][1]) == 2:
            uid, pts = regions[0]
            k = index[uid]
            lengths.append(ReaderLength(tid, k, [(float(k), float(y - 0.5), float(x - 0.5)) for x, y in pts],
                                        float(values[LENGTH])))
            continue
        if LONG_AXIS not in values or not regions:
            continue
        boxes = []
        for uid, pts in regions:
            xs, ys = pts[:, 0] - 0.5, pts[:, 1] - 0.5
            boxes.append((index[uid], round(float(ys.min()), 2), round(float(xs.min()), 2),
                          round(float(ys.max()), 2), round(float(xs.max()), 2),
                          float(values.get(SCORE, 0.0))))
        boxes.sort()
        ks = [b[0] for b in boxes]
        center_mm = values.get(CENTER)
        if center_mm is not None and spacing_index_to_mm is not None:
            center_voxel = tuple(round(float(v), 2) for v in spacing_index_to_mm(center_mm))
        else:
            arr = np.array(boxes, dtype=float)
            center_voxel = (float(arr[:, 0].mean()), float(((arr[:, 1] + arr[:, 3]) / 2).mean()),
                            float(((arr[:, 2] + arr[:, 4]) / 2).mean()))
        findings.append(Finding(
            finding_id=tid, center_mm=tuple(center_mm) if center_mm is not None else (0.0, 0.0, 0.0),
            center_voxel=center_voxel, diameter_mm=float(values[LONG_AXIS]),
            score=float(values.get(SCORE, 0.0)), slice_range=(min(ks), max(ks)),
            volume_mm3=_opt_float(values.get(VOLUME)), boxes=boxes,
            model_name=algo_name, model_version=algo_version,
            status=next((k for k, (code, _m) in REVIEW_VALUES.items() if code == values.get(REVIEW)), ""),
            short_axis_mm=_opt_float(values.get(SHORT_AXIS)),
            size_method="box" if values.get(MEASUREMENT_METHOD) == METHOD_BOX else "segmentation",
            mean_diameter_mm=(round((float(values[LONG_AXIS]) + float(values[SHORT_AXIS])) / 2, 1)
                              if SHORT_AXIS in values and values.get(MEASUREMENT_METHOD) != METHOD_BOX
                              else None)))
    return findings, lengths


def read_seg(path: str | Path, slice_uids: Sequence[str]) -> dict[str, dict[int, np.ndarray]]:
    """Per tracking id (finding id), the per-slice masks of a SEG on the series with ``slice_uids``."""
    import highdicom as hd
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise ExportError(f"{path}: not a readable DICOM SEG ({type(exc).__name__})",
                          "choose a DICOM segmentation file") from exc
    index = {uid: k for k, uid in enumerate(slice_uids)}
    refs = [sop for _study, _series, sop in seg.get_source_image_uids()]
    missing = [u for u in refs if u not in index]
    if missing:
        raise ExportError(f"{path}: the segmentation refers to image {missing[0]}, not in this series",
                          "open the series the segmentation was made on")
    out: dict[str, dict[int, np.ndarray]] = {}
    for number in seg.get_segment_numbers():
        desc = seg.get_segment_description(number)
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=refs, segment_numbers=[number], ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True)
        masks = {index[uid]: pixels[n, :, :, 0].astype(bool) for n, uid in enumerate(refs)
                 if pixels[n, :, :, 0].any()}
        out[str(desc.tracking_id or desc.segment_label)] = masks
    return out
