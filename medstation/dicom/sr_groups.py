"""The TID 1500 Measurement Report's parts, one builder per template group (highdicom's cut):

- :func:`observation_context` — TID 1002 observer context: the device (medstation and the models
  whose findings the report holds).
- :func:`finding_group` — TID 1411 volumetric ROI measurements and qualitative evaluations: one AI
  finding with its outline on every slice it spans, its centre (SCOORD3D), its TID 300 measurements
  (:func:`size_measurements`, :func:`prediction_measurements`) and the reader's review.
- :func:`length_group` — TID 1410 planar ROI measurements: one reader length (two-point POLYLINE).

The concepts are here too; ``dicom.results`` writes the report with them and reads it back by them.
"""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from medstation.core.errors import MedstationError
from medstation.core.findings import Finding, Review

#: concepts used in the report (and looked for when reading one back)
LONG_AXIS = ("103339001", "SCT")
SHORT_AXIS = ("103340004", "SCT")
PREDICTED_VOLUME = ("PREDVOL", "99MEDSTATION")
PREDICTED_GROWTH = ("PREDGROWTH", "99MEDSTATION")
VOLUME = ("118565006", "SCT")
SCORE = ("246262008", "SCT")
LENGTH = ("410668003", "SCT")
CENTER = ("111010", "DCM")
#: TID 300 "Measurement Method" and how medstation measured a size (the voxels, or only the detector's box)
MEASUREMENT_METHOD = ("370129005", "SCT")
METHOD_SEGMENTATION = ("SEGVOXELS", "99MEDSTATION")
METHOD_BOX = ("DETBOX", "99MEDSTATION")
#: the reader's decision on an AI finding (``core.findings.Review``), a qualitative evaluation of its group
REVIEW = ("REVIEW", "99MEDSTATION")
REVIEW_VALUES = {Review.ACCEPTED.value: (("ACCEPTED", "99MEDSTATION"), "Accepted by the reader"),
                 Review.REJECTED.value: (("REJECTED", "99MEDSTATION"), "Rejected by the reader")}
TRACKING_ID = ("112039", "DCM")
TRACKING_UID = ("112040", "DCM")
ALGORITHM_NAME = ("111001", "DCM")
ALGORITHM_VERSION = ("111003", "DCM")
MEASUREMENT_GROUP = ("125007", "DCM")


class ExportError(MedstationError):
    """AI results or measurements could not be written or read as DICOM."""


def code(value: tuple[str, str], meaning: str):
    import highdicom as hd
    return hd.sr.CodedConcept(value=value[0], scheme_designator=value[1], meaning=meaning)


def mm():
    import highdicom as hd
    return hd.sr.CodedConcept("mm", "UCUM", "millimeter")


def _mm3():
    import highdicom as hd
    return hd.sr.CodedConcept("mm3", "UCUM", "cubic millimeter")


def _no_units():
    import highdicom as hd
    return hd.sr.CodedConcept("1", "UCUM", "no units")


def polyline(i0: float, j0: float, i1: float, j1: float) -> np.ndarray:
    """A box's closed outline in image coordinates: (column, row), the top left corner of the top left
    pixel at (0, 0)."""
    x0, y0, x1, y1 = j0 + 0.5, i0 + 0.5, j1 + 0.5, i1 + 0.5
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def _region(src: Dataset, graphic_data: np.ndarray):
    import highdicom as hd
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=graphic_data,
        source_image=hd.sr.SourceImageForRegion(referenced_sop_class_uid=src.SOPClassUID,
                                                referenced_sop_instance_uid=src.SOPInstanceUID))


# -- TID 1002 -------------------------------------------------------------------------------------

def observation_context(device_uid: str, models: str, manufacturer: str):
    """The device observer: medstation, its model name the models whose findings the report holds
    (:func:`models_of`)."""
    import highdicom as hd
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid, name="medstation", manufacturer_name=manufacturer, model_name=models))
    return hd.sr.ObservationContext(observer_device_context=device)


def models_of(findings: list[Finding]) -> str:
    return ", ".join(f"{n} {v}" for n, v in sorted({(f.model_name, f.model_version) for f in findings}))


# -- TID 300 measurements ---------------------------------------------------------------------------

def size_measurements(f: Finding, algo) -> list:
    """Long axis, short axis, volume and score, each as measured with its method; what was not
    measured is left out (never a 0 that reads as a measurement)."""
    import highdicom as hd
    method = (code(METHOD_SEGMENTATION, "Measured on the segmented lesion") if f.size_method == "segmentation"
              else code(METHOD_BOX, "Longest side of the detector's box (not segmented)"))
    out = [hd.sr.Measurement(name=code(LONG_AXIS, "Long Axis"), value=float(f.diameter_mm), unit=mm(),
                             method=method, algorithm_id=algo)]
    if f.short_axis_mm:
        out.append(hd.sr.Measurement(name=code(SHORT_AXIS, "Short Axis"), value=float(f.short_axis_mm),
                                     unit=mm(), method=method, algorithm_id=algo))
    if f.volume_mm3:
        out.append(hd.sr.Measurement(name=code(VOLUME, "Volume"), value=float(f.volume_mm3), unit=_mm3(),
                                     method=method, algorithm_id=algo))
    # a lesion measured where another study's lesion maps was not scored by the detector: no score
    if f.score > 0:
        out.append(hd.sr.Measurement(name=code(SCORE, "Score"), value=float(f.score), unit=_no_units(),
                                     algorithm_id=algo))
    return out


def prediction_measurements(pred: dict) -> list:
    """The follow-up model's prediction for a lesion, identified by its own algorithm."""
    import highdicom as hd
    algo = hd.sr.AlgorithmIdentification(name=pred["model"] or "followup", version=pred["version"] or "0")
    return [
        hd.sr.Measurement(name=code(PREDICTED_VOLUME, f"Predicted volume at {pred['date']}"),
                          value=float(pred["volume_mm3"]), unit=_mm3(), algorithm_id=algo),
        hd.sr.Measurement(name=code(PREDICTED_GROWTH, f"Probability of growth by {pred['date']}"),
                          value=float(pred["p_growth"]), unit=_no_units(), algorithm_id=algo)]


# -- TID 1411 ---------------------------------------------------------------------------------------

def finding_group(f: Finding, headers: list[Dataset], evidence: dict[str, Dataset], *, tracking_uid: str,
                  tracking_id: str, frame_of_reference_uid: str = "", prediction: dict | None = None):
    """One AI finding as a volumetric ROI group; the images its outline refers to are added to
    ``evidence``."""
    import highdicom as hd
    regions = []
    for k, i0, j0, i1, j1, _score in f.boxes:
        src = headers[int(k)]
        evidence[str(src.SOPInstanceUID)] = src
        regions.append(_region(src, polyline(i0, j0, i1, j1)))
    if not regions:
        raise ExportError(f"finding {f.finding_id} has no outline on any slice",
                          "run detection again before exporting")
    algo = hd.sr.AlgorithmIdentification(name=f.model_name or "unknown", version=f.model_version or "0")
    measurements = size_measurements(f, algo) + (prediction_measurements(prediction) if prediction else [])
    review = REVIEW_VALUES.get(f.status)
    evaluations = [hd.sr.QualitativeEvaluation(name=code(REVIEW, "Reader review"),
                                               value=code(*review))] if review else None
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        # a follow-up: the track's name and UID, the same at every study
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=tracking_id),
        referenced_regions=regions,
        finding_type=codes.SCT.Mass if f.kind == "mass" else codes.SCT.Nodule,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        algorithm_id=algo, measurements=measurements, qualitative_evaluations=evaluations)
    if frame_of_reference_uid:
        group[0].ContentSequence.append(hd.sr.Scoord3DContentItem(
            name=code(CENTER, "Center"), graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.array([f.center_mm], dtype=np.float64),
            frame_of_reference_uid=frame_of_reference_uid,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return group


# -- TID 1410 ---------------------------------------------------------------------------------------

def length_group(m: dict, headers: list[Dataset], evidence: dict[str, Dataset], *, tracking_uid: str,
                 tracking_id: str, spacing: tuple[float, float, float] | None):
    """One reader length on an axial slice (``Measurement.to_dict()``, kind ``length``, axis 0) as a
    planar ROI group with a two-point POLYLINE; its length in mm from ``spacing`` (slice, row,
    column mm). The image is added to ``evidence``."""
    import highdicom as hd
    (k, a_i, a_j), (_k2, b_i, b_j) = m["points"]
    src = headers[int(round(k))]
    evidence[str(src.SOPInstanceUID)] = src
    _sk, si, sj = spacing or (1.0, 1.0, 1.0)
    length = float(np.hypot((b_i - a_i) * si, (b_j - a_j) * sj))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=tracking_id),
        referenced_region=_region(src, np.array([[a_j + 0.5, a_i + 0.5], [b_j + 0.5, b_i + 0.5]],
                                                dtype=np.float32)),
        finding_type=codes.SCT.Finding,
        measurements=[hd.sr.Measurement(name=code(LENGTH, "Length"), value=length, unit=mm())])


# -- TID 1501 ---------------------------------------------------------------------------------------

#: a private code for "the detector did not run on this series" (its reason is in the tracking text)
DETECTION_SKIPPED = ("DETSKIPPED", "99MEDSTATION")
DETECTION_STATUS = ("DETSTATUS", "99MEDSTATION")


def skipped_group(reason: str, ref: Dataset, *, tracking_uid: str, model_name: str, model_version: str):
    """Why no finding was reported: a measurements group whose tracking identifier carries the reason
    and whose qualitative evaluation is "detection skipped", the series' first image its source."""
    import highdicom as hd
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=reason[:1024]),
        algorithm_id=hd.sr.AlgorithmIdentification(name=model_name or "unknown",
                                                    version=model_version or "0"),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=code(DETECTION_STATUS, "Detection status"),
            value=code(DETECTION_SKIPPED, "Detection skipped"))],
        source_images=[hd.sr.SourceImageForMeasurementGroup(referenced_sop_class_uid=ref.SOPClassUID,
                                                            referenced_sop_instance_uid=ref.SOPInstanceUID)])


def is_axial_length(m: dict) -> bool:
    """Only axial lengths have an image of their own to refer to."""
    return m.get("kind") == "length" and int(m.get("axis", 0)) == 0
