"""A real chest CT through every use: import, geometry against the dataset's own pixel boxes,
LUNA16 labels, detection of the tumour in both reconstructions, its size, labels drawn and
accepted, SR round trip and a one-epoch fine-tune that learns from them.

The case is Lung_Dx-A0001 of Lung-PET-CT-Dx (Li P, Wang S, Li T, et al. A Large-Scale CT and
PET/CT Dataset for Lung Cancer Diagnosis. The Cancer Imaging Archive, 2020.
https://doi.org/10.7937/TCIA.2020.NNC20461; CC BY 4.0): two 5 mm reconstructions of one chest CT
with a left hilar adenocarcinoma leaning on the mediastinum. It lives outside the repository
(``../shared/real-ct`` or ``MEDSTATION_REAL_CT``); without it these tests are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests._labelled import write_labelled_studies
from tests.cli.test_cli import medstation

ROOT = Path(__file__).resolve().parents[1]
CASE = Path(os.environ.get("MEDSTATION_REAL_CT", ROOT.parent / "shared" / "real-ct")) / "lung-pet-ct-dx-A0001"
STUDY = CASE / "04-04-2007-NA-Chest-07990"
SERIES = ("2.000000-5mm-40805", "3.000000-5mm-41315")

pytestmark = pytest.mark.skipif(not (CASE / "truth.json").exists(),
                                reason=f"the shared real CT is not at {CASE} (set MEDSTATION_REAL_CT)")


def _truth() -> dict:
    return json.loads((CASE / "truth.json").read_text())


def _boxes_of(series_uid: str) -> list[dict]:
    return [b for b in _truth()["boxes"] if b["series_instance_uid"] == series_uid]


def _tumour(series_uid: str) -> tuple[np.ndarray, np.ndarray]:
    """The tumour's box hull in this reconstruction (patient mm, min and max corners)."""
    boxes = _boxes_of(series_uid)
    lo = np.min([b["box_mm"]["min"] for b in boxes], axis=0)
    hi = np.max([b["box_mm"]["max"] for b in boxes], axis=0)
    return lo, hi


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Both reconstructions imported into a fresh database and loaded; the built-in detector."""
    from medstation.ai.registry import ModelRegistry
    from medstation.ai.store import load_detector
    from medstation.dicom import StudyDatabase, WorkerPool, import_paths, open_series

    root = tmp_path_factory.mktemp("real")
    db_path = root / "studies.sqlite"
    volumes = {}
    with StudyDatabase(db_path) as db, WorkerPool(2, timeout=60) as pool:
        pool.start()
        import_paths(db, [STUDY / s for s in SERIES], pool)
        for s in SERIES:
            v = open_series(STUDY / s, pool=pool).volume
            volumes[v.series_uid] = v
    registry = ModelRegistry(user_dir=root / "models")
    detector = load_detector(registry.default("detection").path)
    return {"root": root, "db": db_path, "volumes": volumes, "detector": detector, "runs": {}}


def _run(real, uid):
    if uid not in real["runs"]:
        real["runs"][uid] = real["detector"].detect(real["volumes"][uid], heatmap=False)
    return real["runs"][uid]


def _tumour_finding(real, uid):
    lo, hi = _tumour(uid)
    inside = [f for f in _run(real, uid).findings
              if np.all(np.asarray(f.center_mm) >= lo - 5) and np.all(np.asarray(f.center_mm) <= hi + 5)]
    return max(inside, key=lambda f: f.score) if inside else None


def test_geometry_puts_the_datasets_pixel_boxes_where_it_says_in_mm(real):
    """Every annotated box corner (pixel column x, row y of its slice) maps to the box's patient mm."""
    import pydicom

    from medstation.dicom import StudyDatabase
    from medstation.dicom.labels import series_geometry

    with StudyDatabase(real["db"]) as db:
        for uid, volume in real["volumes"].items():
            g = series_geometry(db, uid)
            assert g is not None and g.shape == volume.shape == (64, 512, 512)
            assert np.allclose(g.spacing, (5.0, 0.841796875, 0.841796875))
            slices = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): k
                      for k, (p, _f) in enumerate(volume.sources)}
            for b in _boxes_of(uid):
                k = slices[b["sop_instance_uid"]]
                px = b["box_pixels"]
                for (col, row), mm in (((px["xmin"], px["ymin"]), b["box_mm"]["min"]),
                                       ((px["xmax"], px["ymax"]), b["box_mm"]["max"])):
                    assert np.allclose(volume.index_to_patient((k, row, col)), mm, atol=0.06)
                    assert np.allclose(g.patient_to_index(mm), (k, row, col), atol=0.08)


def test_luna16_labels_of_the_tumour_import_and_list(real, tmp_path):
    from medstation.dicom import StudyDatabase
    from medstation.dicom.labels import all_labels, import_labels

    rows, want = [], {}
    for uid in real["volumes"]:
        lo, hi = _tumour(uid)
        centre = (lo + hi) / 2
        want[uid] = centre
        rows.append(f"{uid},{centre[0]:.2f},{centre[1]:.2f},{centre[2]:.2f},{float(np.max(hi - lo)):.1f}")
    csv = tmp_path / "tumour.csv"
    csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "\n".join(rows) + "\n")
    db_path = tmp_path / "labels.sqlite"
    import shutil
    shutil.copy(real["db"], db_path)
    with StudyDatabase(db_path) as db:
        assert len(import_labels(db, csv)) == 2
        got = {lab.series_uid: lab for lab in all_labels(db)}
        for uid, centre in want.items():
            assert np.allclose(got[uid].center_mm, centre, atol=0.01)


def _slices_of(volume) -> dict[str, int]:
    import pydicom

    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): k
            for k, (p, _f) in enumerate(volume.sources)}


def test_the_search_region_keeps_the_tumour_on_every_annotated_slice_and_not_the_neck(real):
    """The tumour leans on the mediastinum, so the air-based lung mask leaves most of it out; the
    detector's search region (each lung's hull, grown) holds every annotated box's centre and most
    of its area in both reconstructions, and none of the neck above the apices."""
    from medstation.imaging.lungs import lung_mask

    for uid, volume in real["volumes"].items():
        lungs = lung_mask(volume)
        slices = _slices_of(volume)
        in_mask, in_region = [], []
        for b in _boxes_of(uid):
            k = slices[b["sop_instance_uid"]]
            px = b["box_pixels"]
            r0, r1, c0, c1 = int(px["ymin"]), int(px["ymax"]), int(px["xmin"]), int(px["xmax"])
            assert lungs.in_region((k, (r0 + r1) / 2, (c0 + c1) / 2)), (uid, k)
            in_region.append(lungs.region_at(k)[r0:r1, c0:c1].mean())
            in_mask.append(lungs.mask[k, r0:r1, c0:c1].mean())
        # most of every box, the boxes' area mostly (the box's corners lie in the mediastinum)
        assert min(in_region) >= 0.55 and np.mean(in_region) >= 0.8, (uid, in_region)
        assert np.mean(in_mask) < 0.5  # the mask alone does not hold it (the reason for the region)
        # the top slice is the neck and the shoulders (the trachea is the only air): no region
        top = int(np.argmax([volume.index_to_patient((k, 0, 0))[2] for k in range(volume.shape[0])]))
        assert not lungs.region_at(top).any(), uid


def test_the_generators_kernel_model_covers_both_reconstructions(real):
    """Each reconstruction's measured noise (SD in soft tissue, the ratio outside the body) and
    noise-spectrum peak lie in the ranges of one of the training generator's named kernels: the
    lung kernel in "sharp", the standard kernel in "soft" (``synth.kernels``; the model card's
    figures)."""
    import math

    from medstation.synth import kernels

    names = {}
    for uid, volume in real["volumes"].items():
        m = kernels.measure(volume.voxels, float(volume.spacing[1]), slices=range(20, 44))
        card = next(v for k, v in kernels.MEASURED.items() if volume.sources[0][0].split("/")[-2] in k)
        assert m == pytest.approx(card, abs=0.06)  # the figures the model card prints
        ratio = m["noise_sd_air_hu"] / m["noise_sd_soft_hu"]
        fits = [k.name for k in kernels.KERNELS
                if k.noise_hu[0] <= m["noise_sd_soft_hu"] <= k.noise_hu[1]
                and k.air_ratio[0] - 0.05 <= ratio <= k.air_ratio[1] + 0.05
                and k.nps_cutoff[0] / math.sqrt(2) - 0.03 <= m["nps_peak_per_mm"]
                <= k.nps_cutoff[1] / math.sqrt(2) + 0.03]
        assert fits, (uid, m)
        names[uid] = fits
    assert {"sharp"} & set(sum(names.values(), [])) and {"soft"} & set(sum(names.values(), [])), names


@pytest.mark.xfail(strict=True, reason="known gap (issue 25, part 4): nodule-detector 1.1.0 scores the "
                   "tumour 0.58 in one 5 mm reconstruction and 0.34 in the other (operating point 0.35); "
                   "it learned on 1-3 mm slices and masses up to 5 cm")
def test_the_tumour_is_found_in_both_reconstructions_alike(real):
    found = {uid: _tumour_finding(real, uid) for uid in real["volumes"]}
    threshold = real["detector"].threshold
    for uid, f in found.items():
        assert f is not None, f"no finding on the tumour in {uid}"
        assert f.score >= threshold, (uid, f.score, threshold)
    a, b = found.values()
    assert abs(a.score - b.score) <= 0.1, (a.score, b.score)
    # one finding per lesion: nothing else above the operating point inside the tumour's hull
    for uid in real["volumes"]:
        lo, hi = _tumour(uid)
        on_it = [f for f in _run(real, uid).findings if f.score >= threshold
                 and np.all(np.asarray(f.center_mm) >= lo) and np.all(np.asarray(f.center_mm) <= hi)]
        assert len(on_it) <= 1, [(f.finding_id, f.score) for f in on_it]


def test_the_tumours_size_is_measured_or_says_why(real):
    """Segmented: a long axis between half and the whole of the boxes' extent, in both
    reconstructions alike; or not segmented, with no made-up numbers and the reason."""
    for uid in real["volumes"]:
        f = _tumour_finding(real, uid)
        assert f is not None
        lo, hi = _tumour(uid)
        extent = float(np.max((hi - lo)[:2]))
        if f.size_method == "segmentation":
            assert 0.5 * extent <= f.diameter_mm <= 1.1 * extent, (f.diameter_mm, extent)
            assert f.short_axis_mm <= f.diameter_mm and f.volume_mm3 > 0
            assert f.equivalent_diameter_mm <= f.diameter_mm  # a sphere of its volume fits its long axis
            assert f.size.what == "mean diameter"
        else:
            assert f.size_note and f.volume_mm3 is None and f.short_axis_mm is None
            assert f.size.what == "long axis" and f.size.method == "box"
        d = f.to_dict()
        assert d["size"]["mm"] == round(f.size.mm, 2)
        assert f.kind == d["kind"] == "mass"  # several centimetres: a mass, not a nodule
    a, b = (_tumour_finding(real, uid) for uid in real["volumes"])
    if a.size_method == b.size_method == "segmentation":  # two reconstructions of one acquisition
        assert abs(a.size.mm - b.size.mm) <= 0.1 * max(a.size.mm, b.size.mm), (a.size.mm, b.size.mm)


def test_no_findings_outside_the_lungs_reach(real):
    """Above the operating point nothing lies above the lung apices (neck, shoulders) or below the bases."""
    from medstation.imaging.lungs import lung_mask

    for uid, volume in real["volumes"].items():
        lungs = lung_mask(volume)
        ks = np.nonzero(lungs.slices_with_lung)[0]
        for f in _run(real, uid).findings:
            if f.score >= real["detector"].threshold:
                assert ks.min() <= f.center_voxel[0] <= ks.max(), (f.finding_id, f.center_voxel)


def test_labels_drawn_and_accepted_round_trip_and_fine_tune(real, tmp_path):
    """A reader accepts the tumour finding and draws a nodule label in one reconstruction: both are
    listed where they were made, exported as SR and imported into another database the same, and a
    one-epoch fine-tune (with three generated patients, as a site would have) trains on them."""
    import shutil

    from medstation.dicom import StudyDatabase
    from medstation.dicom.labels import collect_labels, export_sr, import_labels
    from medstation.imaging import Measurement

    uid = next(iter(real["volumes"]))
    volume = real["volumes"][uid]
    f = _tumour_finding(real, uid)
    assert f is not None
    root = tmp_path
    db_path = root / "studies.sqlite"
    shutil.copy(real["db"], db_path)
    k, i, j = (int(round(v)) for v in volume.patient_to_index((-60.0, 150.0, -250.0)))
    drawn = Measurement("nodule", 0, k, [(float(k), float(i), float(j)),
                                         (float(k), float(i), float(j) + 6.0)])
    with StudyDatabase(db_path) as db:
        db.annotations.review_finding(uid, f.model_name, f.model_version, f.to_dict(), "accepted")
        # stored without its patient position (as an older viewer did): placed from the series geometry
        db.annotations.save_measurement(uid, "nodule", {"kind": "nodule", "axis": 0, "depth": k,
                                            "points": [list(p) for p in drawn.points]})
        found = collect_labels(db)
        assert not found.skipped, [s.text() for s in found.skipped]
        by_source = {lab.source: lab for lab in found.labels}
        assert np.allclose(by_source["accepted"].center_mm, f.center_mm)
        assert by_source["accepted"].diameter_mm == f.size.mm
        assert np.allclose(by_source["reader"].center_mm, volume.index_to_patient(drawn.points[0]), atol=1e-3)
        assert by_source["reader"].diameter_mm == pytest.approx(2 * 6 * volume.spacing[2], abs=0.01)
        written = export_sr(db, found.labels, root / "sr")
    assert len(written) == 1
    back_db = root / "back.sqlite"
    shutil.copy(real["db"], back_db)
    with StudyDatabase(back_db) as db:
        import_labels(db, written[0])
        back = collect_labels(db).labels
        assert len(back) == 2
        for lab in found.labels:
            assert any(np.linalg.norm(np.subtract(b.center_mm, lab.center_mm)) < 1.0 and
                       abs(b.diameter_mm - lab.diameter_mm) < 0.5 for b in back), lab
    # fine-tuning: three generated patients beside the real one, one short epoch
    folders, csv = write_labelled_studies(root / "gen", 900, "RT")
    env = os.environ.copy()
    env["MEDSTATION_DATA"] = str(root / "data")
    env["MEDSTATION_USER_MODELS"] = str(root / "models")
    for args in (("import", *(str(p) for p in folders)), ("labels", "import", str(csv))):
        proc = medstation("--db", str(db_path), *args, env=env)
        assert proc.returncode == 0, proc.stderr
    proc = medstation("--db", str(db_path), "train", "--epochs", "1", "--epoch-length", "2",
                      "--batch-size", "2", "--replay", "4", "--out-version", "9.9.9-real", env=env,
                      timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    data = next(e for e in events if e["event"] == "data")
    assert data["patients"] == 4 and data["nodules"] == 6 + 2, data
    assert not [e for e in events if e["event"] == "label_skipped"]
    assert events[-1]["event"] == "saved"
