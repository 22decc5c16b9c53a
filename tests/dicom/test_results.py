"""SR (TID 1500) and SEG export of findings and reader measurements: round trip and dciodvfy."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from pydicom import dcmread

from medstation.dicom.results import ExportError, export_results, read_seg, read_sr
from tests.conftest import NODULE, nodule_finding

DCIODVFY = shutil.which("dciodvfy")
LENGTH = {"kind": "length", "axis": 0, "depth": 12, "id": 7,
          "points": [[12.0, 10.0, 10.0], [12.0, 20.0, 30.0]]}


def export(small_volume, tmp_path, findings=None, **kw):
    volume, _uids = small_volume
    findings = findings if findings is not None else [nodule_finding(volume)]
    return export_results(findings, volume.sources, tmp_path, voxels=volume.voxels, lengths=[LENGTH],
                          spacing=volume.spacing, **kw), findings


def test_sr_round_trip_gives_identical_findings(small_volume, tmp_path):
    volume, uids = small_volume
    second = nodule_finding(volume, finding_id="F2", score=0.42)
    second.boxes = [(b[0], b[1] + 8, b[2] + 8, b[3] + 8, b[4] + 8, b[5]) for b in second.boxes]
    second.status = "rejected"  # the reader's review travels in the SR (a qualitative evaluation)
    first = nodule_finding(volume)
    first.status = "accepted"
    result, findings = export(small_volume, tmp_path, findings=[first, second])
    back, lengths = read_sr(result.sr, uids, volume.patient_to_index)
    assert [f.to_dict() for f in back] == [f.to_dict() for f in findings]
    assert len(lengths) == 1 and lengths[0].tracking_id == "M7" and lengths[0].slice_index == 12
    assert lengths[0].points == [tuple(p) for p in LENGTH["points"]]
    assert lengths[0].length_mm == pytest.approx(np.hypot(10 * volume.spacing[1], 20 * volume.spacing[2]))
    ds = dcmread(result.sr)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.StudyInstanceUID == dcmread(volume.sources[0][0], stop_before_pixels=True).StudyInstanceUID
    assert "not for clinical use" in ds.SeriesDescription


def test_seg_masks_lie_in_the_boxes_and_share_tracking_uids(small_volume, tmp_path):
    volume, uids = small_volume
    result, (finding,) = export(small_volume, tmp_path)
    masks = read_seg(result.seg, uids)
    assert list(masks) == ["F1"]
    boxes = {b[0]: b for b in finding.boxes}
    assert set(masks["F1"]) <= set(boxes) and len(masks["F1"]) >= 3
    for k, mask in masks["F1"].items():
        ii, jj = np.nonzero(mask)
        _, i0, j0, i1, j1, _ = boxes[k]
        assert ii.min() >= np.floor(i0) and ii.max() <= np.ceil(i1)
        assert jj.min() >= np.floor(j0) and jj.max() <= np.ceil(j1)
        assert (volume.voxels[k][mask] > -650).all()  # the nodule, not the lung around it
    seg = dcmread(result.seg)
    assert seg.SegmentSequence[0].TrackingUID == result.tracking_uids["F1"]
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "nodule-detector"


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_sr_and_seg_pass_dciodvfy(small_volume, tmp_path):
    result, _ = export(small_volume, tmp_path)
    for path in (result.sr, result.seg):
        run = subprocess.run([DCIODVFY, "-new", path], capture_output=True, text=True, timeout=60)
        lines = (run.stdout + run.stderr).splitlines()
        assert lines, "dciodvfy printed nothing"
        errors = [line for line in lines if line.startswith("Error")]
        assert errors == [], f"{path}: {errors}"


def test_bad_input_gives_export_errors(small_volume, tmp_path):
    volume, uids = small_volume
    with pytest.raises(ExportError, match="not a structured report"):
        read_sr(volume.sources[0][0], uids)
    result, _ = export(small_volume, tmp_path)
    with pytest.raises(ExportError, match="not in this series"):
        read_sr(result.sr, uids[:5])
    with pytest.raises(ExportError, match="not in this series"):
        read_seg(result.seg, uids[:5])
    empty = nodule_finding(volume)
    empty.boxes = []
    with pytest.raises(ExportError, match="no outline"):
        export_results([empty], volume.sources, tmp_path / "x")
    with pytest.raises(ExportError, match="nothing to export"):
        export_results([], volume.sources, tmp_path / "y")
    assert NODULE.diameter_mm > 0


def test_seg_carries_the_segmentation_and_sr_the_axes(small_volume, tmp_path):
    from medstation.core.findings import Finding
    from medstation.imaging.segment import measure_nodule

    volume, uids = small_volume
    finding = nodule_finding(volume)
    size = measure_nodule(volume, finding.center_voxel, radius_mm=0.75 * finding.diameter_mm + 4)
    assert size is not None and size.mask is not None
    finding.set_mask(size.mask, size.origin)
    finding.short_axis_mm, finding.size_method = size.short_axis_mm, "segmentation"
    # the mask survives the database's JSON
    again = Finding.from_dict(finding.to_dict())
    block, origin = again.mask_array()
    assert int(block.sum()) == int(size.mask.sum()) == size.voxels
    result, _ = export(small_volume, tmp_path, findings=[finding])
    masks = read_seg(result.seg, uids)["F1"]
    # the SEG holds the grown mask voxel for voxel, not a sphere or the boxes' ellipses
    assert sum(int(m.sum()) for m in masks.values()) == size.voxels
    k0, i0, j0 = origin
    for k, m in masks.items():
        ii, jj = np.nonzero(m)
        plane = block[k - k0]
        assert plane[ii - i0, jj - j0].all()
    back, _ = read_sr(result.sr, uids, volume.patient_to_index)
    assert back[0].short_axis_mm == pytest.approx(size.short_axis_mm)
    assert back[0].diameter_mm == pytest.approx(finding.diameter_mm)


def test_a_lesion_over_3_cm_is_written_as_a_mass(small_volume, tmp_path):
    """Fleischner glossary: a nodule measures up to 3 cm, a mass more; the SR's finding type says which."""
    from pydicom.sr.codedict import codes

    from medstation.core.findings import lesion_kind

    assert (lesion_kind(30.0), lesion_kind(30.1), lesion_kind(None)) == ("nodule", "mass", "nodule")
    volume, _uids = small_volume
    small, big = nodule_finding(volume), nodule_finding(volume, finding_id="F2")
    big.diameter_mm = 52.4
    assert (small.kind, big.kind) == ("nodule", "mass") and big.to_dict()["kind"] == "mass"
    assert big.summary().startswith("mass 52.4 mm (long axis, box)")
    result, _ = export(small_volume, tmp_path, findings=[small, big])

    def finding_types(items):
        for item in items:
            if item.get("ConceptNameCodeSequence") and item.ConceptNameCodeSequence[0].CodeValue == "121071":
                yield item.ConceptCodeSequence[0].CodeValue
            yield from finding_types(item.get("ContentSequence", []))

    types = list(finding_types(dcmread(result.sr).ContentSequence))
    # the two findings' groups, then the reader's length measurement (a clinical finding)
    assert types == [codes.SCT.Nodule.value, codes.SCT.Mass.value, "404684003"]
