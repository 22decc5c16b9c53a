"""One builder per TID 1500 template group (issue 30, item 7), each on a real CT header
(pydicom's CT_small.dcm): what each group holds, what it leaves out, and the images it refers to."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from medstation.core.findings import Finding, Review
from medstation.dicom.sr_groups import (
    LENGTH,
    LONG_AXIS,
    REVIEW,
    SCORE,
    SHORT_AXIS,
    VOLUME,
    ExportError,
    finding_group,
    is_axial_length,
    length_group,
    size_measurements,
)
from tests.conftest import PYDICOM_TEST_FILES


@pytest.fixture(scope="module")
def header():
    return dcmread(PYDICOM_TEST_FILES / "CT_small.dcm", stop_before_pixels=True)


def _concepts(group) -> list[tuple[str, str]]:
    out = []

    def walk(items):
        for it in items or []:
            if "ConceptNameCodeSequence" in it:
                c = it.ConceptNameCodeSequence[0]
                out.append((str(c.CodeValue), str(c.CodingSchemeDesignator)))
            walk(it.get("ContentSequence"))
    walk(group)
    return out


def _finding(**kw) -> Finding:
    base = dict(finding_id="F1", center_mm=(1.0, 2.0, 3.0), center_voxel=(0.0, 5.0, 5.0), diameter_mm=9.0,
                score=0.8, slice_range=(0, 0), volume_mm3=None, boxes=[(0, 2.0, 2.0, 8.0, 9.0, 0.8)],
                model_name="nodule-detector", model_version="1.2.0")
    base.update(kw)
    return Finding(**base)


def test_a_box_sized_finding_says_so_and_leaves_out_what_was_not_measured(header):
    evidence = {}
    group = finding_group(_finding(), [header], evidence, tracking_uid="2.25.1", tracking_id="F1",
                          frame_of_reference_uid=str(header.FrameOfReferenceUID))
    concepts = _concepts(group)
    assert LONG_AXIS in concepts and SCORE in concepts
    assert SHORT_AXIS not in concepts and VOLUME not in concepts and REVIEW not in concepts
    assert list(evidence) == [str(header.SOPInstanceUID)]
    # long axis and score: a box gives no short axis and no volume
    assert len(size_measurements(_finding(), None)) == 2


def test_a_segmented_reviewed_finding_carries_every_size_and_the_review(header):
    f = _finding(size_method="segmentation", short_axis_mm=6.0, volume_mm3=250.0, status=Review.ACCEPTED,
                 score=0.0)
    concepts = _concepts(finding_group(f, [header], {}, tracking_uid="2.25.2", tracking_id="T1"))
    assert {LONG_AXIS, SHORT_AXIS, VOLUME, REVIEW} <= set(concepts)
    assert SCORE not in concepts  # not scored by the detector: no score, never a 0


def test_a_finding_with_no_outline_is_refused_with_a_hint(header):
    with pytest.raises(ExportError, match="F1 has no outline") as info:
        finding_group(_finding(boxes=[]), [header], {}, tracking_uid="2.25.3", tracking_id="F1")
    assert "detection" in info.value.hint


def test_a_reader_length_is_measured_in_mm_from_the_spacing(header):
    m = {"kind": "length", "axis": 0, "points": [[0, 10.0, 10.0], [0, 13.0, 14.0]]}
    assert is_axial_length(m) and not is_axial_length({**m, "axis": 1})
    group = length_group(m, [header], {}, tracking_uid="2.25.4", tracking_id="M1", spacing=(5.0, 0.5, 0.5))
    values = [float(it.MeasuredValueSequence[0].NumericValue)
              for it in group[0].ContentSequence if "MeasuredValueSequence" in it]
    assert LENGTH in _concepts(group) and values == [pytest.approx(2.5)]
