"""De-identified export: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

With the options *Retain Longitudinal Temporal Information with Modified
Dates* (every date moved by the same number of days across the export) and
*Clean Structured Content* (SR content kept, free text in it removed unless
it is one of medstation's own machine-generated values).

It works by keeping, not by removing: every attribute not on the list of
attributes an image, SR or SEG needs and that Annex E lets through (``KEEP``)
is dropped, at every level of every sequence. So an attribute the profile
lists, a private tag, an overlay or an attribute a later edition adds can not
slip through. Of what is kept:

- every UID that is not a well-known DICOM UID (SOP classes, transfer
  syntaxes, coding schemes) is replaced by ``2.25.<hash>`` of the original
  under a secret drawn for this export: the same input UID gives the same
  output UID everywhere in the export, so SR and SEG references still resolve,
  and the mapping cannot be repeated without the secret;
- dates (DA, and the date part of DT) move by the export's shift;
- patient name and ID are replaced by a pseudonym per patient; the attributes
  the profile zeroes (birth date, sex, study ID, accession number, referring
  physician) are kept empty;
- PatientIdentityRemoved, DeidentificationMethod(CodeSequence) and
  LongitudinalTemporalInformationModified are set.

Images marked ``BurnedInAnnotation = YES``, and images of the kinds that
usually carry burned-in text (secondary capture, ultrasound, angiography,
endoscopy ...) without a ``NO``, are refused unless the caller confirms.
Output files are named by position (``S001/IM00001.dcm``), never by input
names. Nothing identifying is logged.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID_dictionary

from medstation import __version__
from medstation.core.errors import CancelledError, MedstationError
from medstation.dicom._write import write_dataset

log = logging.getLogger(__name__)

METHOD = ["PS3.15 Annex E Basic Profile", "Retain Longitudinal Temporal Modified Dates",
          "Clean Structured Content", "medstation " + __version__]  # LO: at most 64 characters each
METHOD_CODES = [("113100", "Basic Application Confidentiality Profile"),
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
                ("113104", "Clean Structured Content Option")]

#: modalities whose images usually carry burned-in text (a "NO" in BurnedInAnnotation clears them)
SUSPECT_MODALITIES = {"US", "XA", "RF", "ES", "XC", "GM", "SM", "OT", "SC", "DOC", "IVUS", "OP"}
SUSPECT_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.7",)  # secondary capture, all kinds

#: attributes kept (after UID remapping and date shifting), at any level of any sequence
KEEP = frozenset("""
SpecificCharacterSet ImageType SOPClassUID SOPInstanceUID StudyInstanceUID SeriesInstanceUID
FrameOfReferenceUID Modality SeriesNumber InstanceNumber AcquisitionNumber StudyDate SeriesDate
AcquisitionDate ContentDate StudyTime SeriesTime AcquisitionTime ContentTime AcquisitionDateTime
PositionReferenceIndicator PatientPosition BodyPartExamined SliceThickness SpacingBetweenSlices KVP
ConvolutionKernel SliceLocation ImagePositionPatient ImageOrientationPatient PixelSpacing
SamplesPerPixel PhotometricInterpretation PlanarConfiguration Rows Columns BitsAllocated BitsStored
HighBit PixelRepresentation PixelData FloatPixelData DoubleFloatPixelData NumberOfFrames
RescaleIntercept RescaleSlope RescaleType WindowCenter WindowWidth WindowCenterWidthExplanation
VOILUTFunction PixelPaddingValue PixelPaddingRangeLimit LossyImageCompression
LossyImageCompressionRatio LossyImageCompressionMethod BurnedInAnnotation
RecognizableVisualFeatures PresentationLUTShape PixelAspectRatio
RedPaletteColorLookupTableDescriptor GreenPaletteColorLookupTableDescriptor
BluePaletteColorLookupTableDescriptor RedPaletteColorLookupTableData GreenPaletteColorLookupTableData
BluePaletteColorLookupTableData
SharedFunctionalGroupsSequence PerFrameFunctionalGroupsSequence PixelMeasuresSequence
PlaneOrientationSequence PlanePositionSequence FrameContentSequence DimensionIndexValues
StackID InStackPositionNumber DerivationImageSequence SourceImageSequence DerivationCodeSequence
PurposeOfReferenceCodeSequence ReferencedSOPClassUID ReferencedSOPInstanceUID ReferencedFrameNumber
SpatialLocationsPreserved SegmentIdentificationSequence ReferencedSegmentNumber
DimensionOrganizationSequence DimensionOrganizationUID DimensionOrganizationType
DimensionIndexSequence DimensionIndexPointer FunctionalGroupPointer DimensionDescriptionLabel
SegmentationType SegmentationFractionalType MaximumFractionalValue SegmentsOverlap SegmentSequence
SegmentNumber SegmentLabel SegmentedPropertyCategoryCodeSequence SegmentedPropertyTypeCodeSequence
SegmentAlgorithmType SegmentAlgorithmName AlgorithmIdentificationSequence AlgorithmFamilyCodeSequence
AlgorithmName AlgorithmVersion AlgorithmSource RecommendedDisplayCIELabValue TrackingID TrackingUID
ContentLabel ContentDescription ReferencedSeriesSequence ReferencedInstanceSequence
CodeValue CodingSchemeDesignator CodingSchemeVersion CodeMeaning LongCodeValue URNCodeValue
ContextIdentifier ContextUID MappingResource MappingResourceUID MappingResourceName
ContextGroupExtensionFlag
ValueType ConceptNameCodeSequence ConceptCodeSequence ContentSequence RelationshipType
ContinuityOfContent MeasuredValueSequence NumericValue FloatingPointValue
MeasurementUnitsCodeSequence NumericValueQualifierCodeSequence GraphicType GraphicData
ReferencedSOPSequence UID TextValue TemplateIdentifier ContentTemplateSequence
ReferencedFrameOfReferenceUID CompletionFlag VerificationFlag PreliminaryFlag
CurrentRequestedProcedureEvidenceSequence PertinentOtherEvidenceSequence ObservationUID
FiducialUID ReferencedPerformedProcedureStepSequence PerformedProcedureCodeSequence
Manufacturer ManufacturerModelName SoftwareVersions
""".split())

#: replaced at the top level (zero-length where the profile says Z)
EMPTY = ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber", "ReferringPhysicianName")

#: SR TEXT values kept under Clean Structured Content: machine-generated by medstation's writer
TEXT_CONCEPTS_KEPT = {("112039", "DCM"),  # Tracking Identifier
                      ("111001", "DCM"),  # Algorithm Name
                      ("111003", "DCM"),  # Algorithm Version
                      ("121013", "DCM"),  # Device Observer Name
                      ("121014", "DCM"),  # Device Observer Manufacturer
                      ("121015", "DCM")}  # Device Observer Model Name


class BurnedInAnnotationError(MedstationError):
    """Images that may show patient details in their pixels; the export needs the user's confirmation."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        super().__init__(f"{len(files)} image(s) are marked or suspected to have burned-in annotation, "
                         f"e.g. {files[0]}",
                         "check the pixels and confirm, or leave these series out of the export")


@dataclass
class DeidReport:
    out_dir: str
    files: list[str] = field(default_factory=list)
    date_shift_days: int = 0
    uids_remapped: int = 0
    patients: int = 0
    skipped: list[str] = field(default_factory=list)  # not DICOM: left out


class _Deidentifier:
    def __init__(self, shift_days: int, secret: bytes, pseudonym_prefix: str) -> None:
        self.shift = _dt.timedelta(days=shift_days)
        self.secret = secret
        self.prefix = pseudonym_prefix
        self.uids: dict[str, str] = {}
        self.patients: dict[str, str] = {}

    def uid(self, value: str) -> str:
        value = str(value).strip()
        if not value or value in UID_dictionary:
            return value
        if value not in self.uids:
            digest = hmac.new(self.secret, value.encode(), hashlib.sha256).digest()[:16]
            self.uids[value] = "2.25." + str(int.from_bytes(digest, "big"))
        return self.uids[value]

    def date(self, value: str) -> str:
        value = str(value).strip()
        try:
            d = _dt.datetime.strptime(value[:8], "%Y%m%d").date() + self.shift
        except ValueError:
            return ""  # not a date we can move: drop it rather than keep it unchanged
        return d.strftime("%Y%m%d") + value[8:]

    def pseudonym(self, patient_key: str) -> str:
        if patient_key not in self.patients:
            self.patients[patient_key] = f"{self.prefix}{len(self.patients) + 1:04d}"
        return self.patients[patient_key]

    def clean(self, ds: Dataset) -> Dataset:
        out = Dataset()
        concept = ds.get("ConceptNameCodeSequence")
        key = (str(concept[0].get("CodeValue", "")), str(concept[0].get("CodingSchemeDesignator", ""))) \
            if concept else ("", "")
        for elem in ds:
            if elem.tag.is_private or elem.keyword not in KEEP:
                continue
            kw, vr, value = elem.keyword, elem.VR, elem.value
            if vr == "SQ":
                out.add_new(elem.tag, vr, DicomSequence([self.clean(i) for i in value]))
                continue
            if vr == "UI":
                value = [self.uid(v) for v in value] if isinstance(value, MultiValue) else self.uid(value)
            elif vr in ("DA", "DT"):
                value = [self.date(v) for v in value] if isinstance(value, MultiValue) else self.date(value)
            elif kw == "TextValue" and key not in TEXT_CONCEPTS_KEPT:
                value = "REMOVED"
            elif vr == "PN":
                value = "ANONYMOUS"
            out.add_new(elem.tag, vr, value)
        return out

    def dataset(self, ds: Dataset) -> Dataset:
        out = self.clean(ds)
        patient = f"{ds.get('PatientID', '')}|{ds.get('PatientName', '')}"
        code = self.pseudonym(patient)
        out.PatientName = code
        out.PatientID = code
        for kw in EMPTY:
            setattr(out, kw, "")
        if "DeviceSerialNumber" in ds:  # required by some IODs (SEG): a dummy value
            out.DeviceSerialNumber = "0"
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = METHOD
        seq = []
        for value, meaning in METHOD_CODES:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            seq.append(item)
        out.DeidentificationMethodCodeSequence = seq
        out.LongitudinalTemporalInformationModified = "MODIFIED"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = out.SOPClassUID
        meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        out.file_meta = meta
        return out


def _dicom_only(paths: list[str]) -> tuple[list[str], list[str]]:
    from pydicom.errors import InvalidDicomError
    keep, skipped = [], []
    for p in paths:
        try:
            dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            keep.append(p)
        except (InvalidDicomError, OSError, ValueError):
            skipped.append(p)
    return keep, skipped


def burned_in_suspects(paths: Sequence[str | Path]) -> list[str]:
    """Files marked ``BurnedInAnnotation = YES``, or of a usually-annotated kind without a ``NO``."""
    out = []
    for p in paths:
        ds = dcmread(p, stop_before_pixels=True,
                     specific_tags=["BurnedInAnnotation", "Modality", "SOPClassUID"])
        flag = str(ds.get("BurnedInAnnotation", "")).upper()
        if flag == "YES":
            out.append(str(p))
        elif flag != "NO" and (str(ds.get("Modality", "")).upper() in SUSPECT_MODALITIES
                               or str(ds.get("SOPClassUID", "")).startswith(SUSPECT_SOP_PREFIXES)):
            out.append(str(p))
    return out


def deidentify(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    date_shift_days: int | None = None,
    allow_burned_in: bool = False,
    pseudonym_prefix: str = "ANON",
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> DeidReport:
    """De-identify ``paths`` (DICOM files of one or more studies) into ``out_dir``.

    ``date_shift_days``: the shift for every date (default: a random 30 to 3650
    days back, drawn once for the export). Raises ``BurnedInAnnotationError``
    before writing anything if images may show identifying text and
    ``allow_burned_in`` is false.
    """
    paths, skipped = _dicom_only([str(p) for p in paths])
    if not paths:
        raise MedstationError("nothing to de-identify: no DICOM files", "choose a study or series first")
    suspects = burned_in_suspects(paths)
    if suspects and not allow_burned_in:
        raise BurnedInAnnotationError(suspects)
    shift = date_shift_days if date_shift_days is not None else -(30 + secrets.randbelow(3621))
    worker = _Deidentifier(shift, secrets.token_bytes(32), pseudonym_prefix)
    out = Path(out_dir)
    report = DeidReport(str(out), date_shift_days=shift, skipped=skipped)
    series_index: dict[str, int] = {}
    counts: dict[int, int] = {}
    for n, path in enumerate(paths, start=1):
        if cancel is not None and cancel.is_set():
            raise CancelledError("the de-identified export was cancelled")
        ds = dcmread(path)
        clean = worker.dataset(ds)
        s = series_index.setdefault(str(clean.SeriesInstanceUID), len(series_index) + 1)
        counts[s] = counts.get(s, 0) + 1
        target = out / f"S{s:03d}" / f"IM{counts[s]:05d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_dataset(clean, target)
        report.files.append(str(target))
        if progress is not None:
            progress(n, len(paths))
    report.uids_remapped = len(worker.uids)
    report.patients = len(worker.patients)
    log.info("de-identified %d files into %d series (dates moved by %d days)",
             len(report.files), len(series_index), shift)
    return report
