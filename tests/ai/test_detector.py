"""The detector: pre-processing, 3D grouping, and the shipped model on generated CT."""

from __future__ import annotations

import numpy as np
import pytest

from medstation.ai.detector import (
    DEFAULT_INPUT,
    SliceDetections,
    group_slices,
    prepare,
    stack_channels,
)
from medstation.core.errors import CancelledError, ModelError
from medstation.core.volume import Volume
from medstation.synth import ChestPhantom, Nodule


def phantom_volume(nodules, *, z_lo=-60.0, z_hi=40.0, thickness=2.0, pixel=1.6, size=224, seed=12345,
                   noise=15.0):
    """A CT volume rendered straight from the phantom (patient z increases with k)."""
    ph = ChestPhantom(seed=seed, nodules=list(nodules))
    xs = (np.arange(size) - (size - 1) / 2) * pixel
    ys = xs + 10.0
    zs = np.arange(z_lo, z_hi + 1e-6, thickness)
    rng = np.random.default_rng(seed)
    vox = np.stack([ph.render_slice(float(z), xs, ys, thickness) for z in zs])
    vox += rng.standard_normal(vox.shape, dtype=np.float32) * noise
    return Volume(vox.astype(np.float32), spacing=(thickness, pixel, pixel), origin=(xs[0], ys[0], zs[0]),
                  modality="CT", series_uid="test")


@pytest.fixture(scope="module")
def detector():
    from medstation.ai.registry import default_detector_dir, load_detector

    return load_detector(default_detector_dir(), "cpu")


def test_prepare_resamples_windows_and_crops_to_the_lungs():
    # from the abdomen (no lung) up into the chest
    vol = phantom_volume([], z_lo=-260.0, z_hi=-100.0, thickness=2.5, pixel=1.6, size=224)
    prep = prepare(vol, DEFAULT_INPUT)
    n_model = int((vol.shape[0] - 1) * 2.5 / 2.0) + 1
    assert prep.images.shape[0] == n_model
    assert 0.0 <= float(prep.images.min()) and float(prep.images.max()) <= 1.0
    # lung base at z = -200: model slices below it hold no lung and are skipped
    z_of = [vol.origin[2] + m * 2.0 for m in prep.kept]
    assert prep.kept and min(z_of) > -205.0
    assert len(prep.kept) < n_model
    # cropped to the lungs (+ margin), narrower than the 358 mm field of view
    full = prepare(vol, DEFAULT_INPUT, crop_to_lungs=False)
    assert prep.images.shape[1] < full.images.shape[1] and prep.images.shape[2] < full.images.shape[2]
    assert full.images.shape[1:] == (round(224 * 1.6), round(224 * 1.6))


def test_channels_are_neighbouring_slices_with_edges_repeated():
    import torch

    images = torch.arange(6, dtype=torch.float32)[:, None, None].expand(6, 2, 2)
    out = stack_channels(images, [0, 3, 5], 5)
    assert out.shape == (3, 5, 2, 2)
    assert out[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert out[1, :, 0, 0].tolist() == [1, 2, 3, 4, 5]
    assert out[2, :, 0, 0].tolist() == [3, 4, 5, 5, 5]


def test_grouping_merges_a_sphere_across_slices_and_keeps_others_apart():
    vol = Volume(np.zeros((40, 100, 100), np.float32), spacing=(2.0, 0.5, 0.5), origin=(10.0, 20.0, -30.0),
                 modality="CT")
    per_slice = []
    for k, r in ((10, 3.0), (11, 5.0), (12, 6.0), (13, 5.0), (14, 3.0)):  # a 12 px sphere at (12, 50, 40)
        per_slice.append(SliceDetections(k, np.array([[50 - r, 40 - r, 50 + r, 40 + r]]),
                                         np.array([0.5 + 0.1 * (r == 6.0)])))
    per_slice.append(SliceDetections(30, np.array([[10.0, 10.0, 14.0, 14.0]]), np.array([0.3])))
    per_slice.append(SliceDetections(31, np.zeros((0, 4)), np.zeros(0)))
    found = group_slices(per_slice, vol, "m", "1")
    assert [f.finding_id for f in found] == ["F1", "F2"]
    big, small = found
    assert big.score == pytest.approx(0.6)
    assert big.slice_range == (10, 14)
    assert big.center_voxel[0] == pytest.approx(12.0, abs=0.05)
    assert big.center_voxel[1:] == pytest.approx((50.0, 40.0), abs=0.05)
    assert big.diameter_mm == pytest.approx(12 * 0.5)
    assert big.center_mm == pytest.approx(tuple(vol.index_to_patient(big.center_voxel)), abs=0.01)
    assert [b[0] for b in big.boxes] == [10, 11, 12, 13, 14]
    assert small.slice_range == (30, 30) and small.model_version == "1"


def test_a_nodule_chained_with_a_vessel_keeps_its_own_centre():
    # a vessel runs obliquely through 25 slices (low scores) into a nodule on slices 26-31
    vol = Volume(np.zeros((40, 100, 100), np.float32), spacing=(1.25, 0.8, 0.8), modality="CT")
    per_slice = []
    for k in range(1, 26):
        c = 20 + k * 1.2  # the vessel drifts 1.2 px a slice: consecutive boxes overlap
        per_slice.append(SliceDetections(k, np.array([[c - 3, c - 3, c + 3, c + 3]]), np.array([0.02])))
    for k in range(26, 32):
        per_slice.append(SliceDetections(k, np.array([[45.0, 45.0, 60.0, 60.0]]), np.array([0.9])))
    found = group_slices(per_slice, vol, "m", "1")
    best = found[0]
    assert best.score == pytest.approx(0.9)
    assert best.slice_range == (26, 31)
    assert best.center_voxel == pytest.approx((28.5, 52.5, 52.5), abs=0.05)
    assert all(f.score < 0.1 for f in found[1:])  # the vessel is its own weak candidate
    # a round lesion whose edge slices score low stays one finding
    per_slice = [SliceDetections(k, np.array([[40.0, 40.0, 60.0, 60.0]]), np.array([s]))
                 for k, s in zip(range(10, 21), (0.05, 0.1, 0.4, 0.8, 0.9, 0.9, 0.9, 0.8, 0.4, 0.1, 0.05))]
    (one,) = group_slices(per_slice, vol, "m", "1")
    assert one.slice_range == (10, 20)


def test_bad_volumes_give_model_errors():
    vol = phantom_volume([], size=32, pixel=8.0, z_lo=0, z_hi=10)
    with pytest.raises(ModelError, match="not axial"):
        prepare(Volume(vol.voxels, direction=np.eye(3), modality="CT"), DEFAULT_INPUT)
    with pytest.raises(ModelError, match="is MR"):
        prepare(Volume(vol.voxels, modality="MR"), DEFAULT_INPUT)
    with pytest.raises(ModelError, match="grey"):
        prepare(Volume(np.zeros((5, 8, 8, 3), np.uint8)), DEFAULT_INPUT)
    with pytest.raises(ModelError, match="stack"):
        prepare(Volume(vol.voxels[:1], modality="CT"), DEFAULT_INPUT)


def test_the_shipped_detector_finds_an_inserted_nodule(detector):
    nodule = Nodule((-70.0, 5.0, -10.0), 9.0)
    vol = phantom_volume([nodule])
    run = detector.detect(vol)
    threshold = detector.manifest["metrics"]["froc"]["threshold_at_1fp"]
    hits = [f for f in run.findings
            if np.linalg.norm(np.subtract(f.center_mm, nodule.center)) <= nodule.diameter_mm / 2]
    assert hits and hits[0].score >= threshold, [f.summary() for f in run.findings[:5]]
    assert hits[0] is run.findings[0]
    assert hits[0].diameter_mm == pytest.approx(9.0, abs=2.5)
    k0, k1 = hits[0].slice_range
    k_true = vol.patient_to_index(nodule.center)[0]
    assert k0 <= k_true <= k1
    assert run.findings[0].model_name == detector.name and run.findings[0].model_version == detector.version
    # the same anatomy without the nodule: nothing there
    clean = detector.detect(phantom_volume([]))
    assert not [f for f in clean.findings if f.score >= threshold
                and np.linalg.norm(np.subtract(f.center_mm, nodule.center)) <= 10]


def test_detection_through_the_engine_reports_progress_partials_and_cancels(detector):
    from medstation.ai.engine import Engine

    vol = phantom_volume([Nodule((60.0, 0.0, 0.0), 12.0)])
    events = []
    with Engine(["cpu"]) as engine:
        h = engine.submit(lambda ctx: detector.detect(vol, batch_size=4, progress=ctx.progress,
                                                      partial=ctx.partial, check=ctx.check),
                          on_event=lambda _h, kind, payload: events.append(kind))
        run = h.result(120)
        assert run.findings
        kinds = set(events)
        assert {"started", "progress", "partial", "done"} <= kinds
        # counted in the series' own slices, not the model's resampled ones ("slice 8 of 174" on 140)
        assert h.progress_value == (vol.shape[0], vol.shape[0])

        def cancel_on_progress(handle, kind, payload):
            if kind == "progress":
                handle.cancel()

        h2 = engine.submit(lambda ctx: detector.detect(vol, batch_size=2, progress=ctx.progress,
                                                       check=ctx.check), on_event=cancel_on_progress)
        with pytest.raises(CancelledError):
            h2.result(120)
        assert h2.progress_value[0] < h2.progress_value[1]


def test_heatmap_is_aligned_with_the_nodule_and_calibration_maps_scores(detector):
    import copy

    from medstation.ai.calibration import apply
    from medstation.ai.detector import Detector

    nodule = Nodule((-70.0, 5.0, -10.0), 12.0)
    vol = phantom_volume([nodule])
    run = detector.detect(vol)
    hm = run.heatmap
    assert hm is not None and hm.values.dtype == np.uint8
    k, i, j = vol.patient_to_index(nodule.center)
    plane = hm.slice_for(int(round(k))).astype(float) / 255
    r, c = int(i / hm.step[0]), int(j / hm.step[1])
    near = plane[max(0, r - 1):r + 2, max(0, c - 1):c + 2].max()
    # the heat's peak on this slice lies on the nodule, and most of the slice is cold
    peak = np.unravel_index(int(np.argmax(plane)), plane.shape)
    assert near >= 0.5 and abs(peak[0] - r) <= 2 and abs(peak[1] - c) <= 2, (near, peak, (r, c))
    assert np.median(plane) < 0.05
    # a calibrated copy: every raw score mapped through the calibration, the ranking unchanged
    plain = {k: v for k, v in detector.manifest.items() if k != "calibration"}
    run = Detector(copy.deepcopy(detector.model), plain, "cpu").detect(vol, heatmap=False)
    manifest = dict(plain, calibration={"method": "platt", "a": 0.6, "b": -0.5})
    calibrated = Detector(copy.deepcopy(detector.model), manifest, "cpu").detect(vol, heatmap=False)
    assert calibrated.heatmap is None
    raw = {f.finding_id: f.score for f in run.findings}
    for f in calibrated.findings[:5]:
        assert f.score == pytest.approx(apply(raw[f.finding_id], manifest["calibration"]), abs=2e-4)
    assert [f.finding_id for f in calibrated.findings] == [f.finding_id for f in run.findings]


def test_a_held_out_family_nodule_is_found_first_and_sized_within_10_percent(detector):
    """A lobulated nodule drawn by the independent generator (its own shapes, kernel and noise)."""
    from medstation.synth.heldout import HeldOutPhantom

    ph = HeldOutPhantom(4)
    les = next(les for les in ph.lesions if les.kind == "lobulated" and les.where == "parenchyma")
    truth = les.equivalent_diameter()
    px = 0.8
    size = int(2 * (ph.a + 15) / px)
    xs = (np.arange(size) - (size - 1) / 2) * px
    ys = xs + 10.0
    zs = np.arange(les.center[2] - 30, les.center[2] + 30, 1.25)
    vox = np.stack([ph.render_slice(float(z), xs, ys, 1.25) for z in zs]).astype(np.float32)
    vol = Volume(vox, spacing=(1.25, px, px), origin=(xs[0], ys[0], zs[0]), modality="CT", series_uid="ho")
    run = detector.detect(vol)
    top = run.findings[0]
    assert np.linalg.norm(np.subtract(top.center_mm, les.center)) <= truth / 2
    assert top.size_method == "segmentation" and top.mask is not None
    assert top.equivalent_diameter_mm == pytest.approx(truth, rel=0.10)


def test_between_first_and_last_equals_the_running_maximum_both_ways():
    import torch

    from medstation.ai.preprocess import _between

    g = torch.Generator().manual_seed(0)
    for shape in [(9, 13, 17), (3, 5, 7), (1, 1, 1), (4, 0, 3)]:
        for p in (0.0, 0.02, 0.3, 1.0):
            m = torch.rand(shape, generator=g) < p
            for dim in (0, 1, 2):
                running = m.cummax(dim=dim).values & m.flip(dim).cummax(dim=dim).values.flip(dim)
                assert torch.equal(_between(m, dim), running), (shape, p, dim)


def test_a_model_keeps_findings_where_its_manifest_says(detector):
    """1.x keeps findings in the air-based lung mask (its card's figures were measured so); a model
    whose manifest says "search region" keeps them in each lung's grown hull: a candidate on the
    mediastinal side of a hilar mass survives there and not in the mask."""
    import copy

    from medstation.ai.detector import Detector
    from medstation.imaging.lungs import lung_mask

    assert detector.keeps_in == "lung mask"
    manifest = copy.deepcopy(detector.manifest)
    manifest["keep_findings_in"] = "search region"
    wide = Detector(detector.model, manifest, "cpu")
    assert wide.keeps_in == "search region"
    vol = phantom_volume([Nodule((-70.0, 5.0, -10.0), 9.0)])
    lungs = lung_mask(vol)
    # a voxel in the region but not in the mask exists (the hull's concavity, the grown margin)
    k = vol.shape[0] // 2
    only_region = lungs.region_at(k) & ~lungs.mask[k]
    assert only_region.any()
    narrow_run, wide_run = detector.detect(vol), wide.detect(vol)
    assert all(lungs.contains(f.center_voxel) for f in narrow_run.findings)
    assert all(lungs.in_region(f.center_voxel) for f in wide_run.findings)
    assert len(wide_run.findings) >= len(narrow_run.findings)
