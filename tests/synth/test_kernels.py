"""The reconstruction-kernel model of the training generator: what it is asked for is what a
measurement reads back (noise SD, where the noise spectrum peaks, less noise outside the body),
and the slice profile is a Gaussian of the asked thickness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medstation.synth import kernels


def _flat_body(n=6, size=128):
    """Soft tissue (40 HU) in the middle, air around it: a phantom for noise alone."""
    x = np.full((n, size, size), -1000.0, np.float32)
    x[:, 16:112, 16:112] = 40.0
    return x


@pytest.mark.parametrize("name", ["soft", "standard", "sharp"])
def test_the_noise_asked_for_is_the_noise_measured(name):
    rng = np.random.default_rng(3)
    spec = next(k for k in kernels.KERNELS if k.name == name)
    kernel = kernels.Kernel(name, 0.5, 0.0, float(np.mean(spec.nps_cutoff)), 20.0, 0.5)
    out = kernels.apply(_flat_body(), kernel, 0.8, rng)
    soft = out[:, 24:104, 24:104]
    assert soft.std() == pytest.approx(20.0, rel=0.15)
    air = np.concatenate([out[:, :12, :].ravel(), out[:, -12:, :].ravel()])
    assert air.std() == pytest.approx(10.0, rel=0.2)  # air_ratio 0.5 of the body's
    m = kernels.measure(out, 0.8)
    peak = kernel.nps_cutoff / math.sqrt(2)  # f exp(-(f/fc)^2) peaks at fc / sqrt(2)
    assert abs(m["nps_peak_per_mm"] - peak) <= 0.09, (m, peak)


def test_a_sharp_kernel_peaks_higher_and_a_soft_kernel_blurs_an_edge_more():
    rng = np.random.default_rng(0)
    edge = np.full((1, 64, 64), -1000.0, np.float32)
    edge[:, :, 32:] = 40.0
    soft = kernels.apply(edge, kernels.Kernel("soft", 1.2, 0.0, 0.1, 1e-3, 0.5), 0.8, rng)
    sharp = kernels.apply(edge, kernels.Kernel("sharp", 0.4, 0.8, 0.6, 1e-3, 0.5), 0.8, rng)

    def width(img):  # 10-90% edge rise, pixels
        p = (img[0, 32, 16:48] + 1000) / 1040
        return int(np.argmax(p > 0.9)) - int(np.argmax(p > 0.1))

    assert width(soft) > width(sharp)
    assert sharp[0, 32, 33:36].max() > 40.0 + 20  # a sharp kernel's overshoot at the edge
    assert soft[0, 32, 33:40].max() <= 40.0 + 1


@pytest.mark.parametrize("thickness", [1.0, 2.5, 5.0, 8.0])
def test_the_slice_profile_is_a_gaussian_of_the_thickness(thickness):
    offs, w = kernels.ssp_offsets(thickness)
    assert w.sum() == pytest.approx(1.0)
    assert np.allclose(offs, -offs[::-1]) and int(np.argmax(w)) == len(w) // 2
    # half the peak's weight at half the thickness either side (FWHM = thickness)
    assert np.interp(thickness / 2, offs, w / w.max()) == pytest.approx(0.5, abs=0.1)
    assert offs[-1] == pytest.approx(1.5 * thickness / 2.355)  # out to 1.5 sigma


def test_every_drawn_kernel_lies_in_its_named_ranges():
    rng = np.random.default_rng(1)
    for _ in range(200):
        k = kernels.draw(rng)
        spec = next(s for s in kernels.KERNELS if s.name == k.name)
        assert spec.mtf_sigma_mm[0] <= k.mtf_sigma_mm <= spec.mtf_sigma_mm[1]
        assert spec.noise_hu[0] <= k.noise_hu <= spec.noise_hu[1]
        assert spec.nps_cutoff[0] <= k.nps_cutoff <= spec.nps_cutoff[1]


def test_the_held_out_mass_studies_hold_a_mass_against_the_mediastinum_or_the_chest_wall():
    from medstation.training.evaluate import held_out_mass_study_spec

    for seed in (60000, 60001, 60002):
        ph, spec = held_out_mass_study_spec(seed)
        again, spec2 = held_out_mass_study_spec(seed)
        assert spec == spec2 and [m.center for m in ph.lesions] == [m.center for m in again.lesions]
        masses = [m for m in ph.lesions if m.where in ("juxtamediastinal", "chest wall")]
        assert len(masses) == 1 and 35.0 <= 2 * masses[0].radius <= 90.0
        m = masses[0]
        x, y, z = m.center
        assert ph.lung(np.float32(x), np.float32(y), z)  # its centre in the lung
        if m.where == "juxtamediastinal":
            assert abs(x) - m.radius < 18.0  # it crosses the mediastinal line
        assert spec.slice_thickness in (1.25, 2.5, 5.0)
        truth = {t["label"]: t for t in ph.truth()}
        assert any(abs(t["diameter_mm"] - m.equivalent_diameter()) < 0.01 for t in truth.values())
