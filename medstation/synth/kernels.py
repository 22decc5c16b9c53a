"""A measured reconstruction-kernel model for generated CT: the modulation transfer function
(MTF), the noise power spectrum (NPS: correlated noise, shaped like the ramp filter times the
kernel's apodisation), HU-dependent noise and the slice sensitivity profile (SSP).

The ranges come from measuring the shared real chest CT (Lung-PET-CT-Dx Lung_Dx-A0001, Li P et
al., TCIA 2020, doi 10.7937/TCIA.2020.NNC20461, CC BY 4.0; two 5 mm reconstructions of one
acquisition, 0.84 mm pixels), with ``medstation.synth.kernels.measure`` (see the detector's
model card):

============================  ===================  =====================
measure                       lung kernel (40805)  standard kernel (41315)
============================  ===================  =====================
noise SD, soft tissue (HU)    38.9                 7.6
noise SD, air outside (HU)    20.2                 3.8
NPS peak (cycles/mm)          0.40                 <= 0.06
============================  ===================  =====================

so the noise outside the body is about half of that in soft tissue (0.5x in both), and a sharp
kernel's noise peaks at high frequency while a soft kernel's sits at the lowest. Each named
kernel below spans a range that contains the measured one, and wider (other scanners and doses).

The model, per image: signal blurred by a Gaussian MTF (``mtf_sigma_mm``), a sharp kernel's edge
enhancement (``enhance``: unsharp masking by that share), then noise whose spectrum is
``f * exp(-(f / fc)^2)`` (the ramp times the apodisation; it peaks at ``fc / sqrt(2)``), scaled to
``noise_hu`` inside the body and ``air_ratio`` of that outside it. The SSP is Gaussian with a
full width at half maximum equal to the slice thickness (``ssp_offsets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the shared real CT's two reconstructions as :func:`measure` reads them (slices 20-43)
MEASURED = {
    "Lung_Dx-A0001 lung kernel (2.000000-5mm-40805)": {"noise_sd_soft_hu": 38.9, "noise_sd_air_hu": 20.2,
                                                       "nps_peak_per_mm": 0.4},
    "Lung_Dx-A0001 standard kernel (3.000000-5mm-41315)": {"noise_sd_soft_hu": 7.6, "noise_sd_air_hu": 3.8,
                                                           "nps_peak_per_mm": 0.039},
}


@dataclass(frozen=True)
class KernelRange:
    """The ranges one named kernel is drawn from."""

    name: str
    mtf_sigma_mm: tuple[float, float]
    enhance: tuple[float, float]  # unsharp-mask amount (0: none)
    nps_cutoff: tuple[float, float]  # fc, cycles/mm
    noise_hu: tuple[float, float]  # noise SD in soft tissue
    air_ratio: tuple[float, float]  # noise SD outside the body / inside


KERNELS = (
    KernelRange("soft", (0.7, 1.3), (0.0, 0.0), (0.06, 0.2), (4.0, 18.0), (0.35, 0.7)),
    KernelRange("standard", (0.45, 0.9), (0.0, 0.3), (0.18, 0.4), (8.0, 30.0), (0.35, 0.7)),
    KernelRange("sharp", (0.3, 0.6), (0.3, 1.0), (0.45, 0.75), (20.0, 70.0), (0.35, 0.7)),
)

#: slice thicknesses drawn for training (mm): thin to thick, as archives hold them
THICKNESSES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 5.0, 6.0, 8.0)


@dataclass(frozen=True)
class Kernel:
    name: str
    mtf_sigma_mm: float
    enhance: float
    nps_cutoff: float
    noise_hu: float
    air_ratio: float


def draw(rng: np.random.Generator) -> Kernel:
    """One kernel: a named kernel's ranges, drawn uniformly."""
    k = KERNELS[int(rng.integers(len(KERNELS)))]
    return Kernel(k.name, *(float(rng.uniform(*r)) for r in
                            (k.mtf_sigma_mm, k.enhance, k.nps_cutoff, k.noise_hu, k.air_ratio)))


def ssp_offsets(thickness: float, step_mm: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Sub-slice offsets (mm) and weights of a Gaussian slice sensitivity profile whose FWHM is
    ``thickness``, sampled every ``step_mm`` out to 1.5 sigma either side."""
    sigma = thickness / 2.355
    n = max(1, int(math.ceil(3 * sigma / step_mm))) | 1
    offs = np.linspace(-1.5 * sigma, 1.5 * sigma, n) if n > 1 else np.zeros(1)
    w = np.exp(-0.5 * (offs / max(sigma, 1e-6)) ** 2)
    return offs, w / w.sum()


def _gauss_fft(shape, px: float, sigma_mm: float) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0], px)[:, None]
    fx = np.fft.rfftfreq(shape[1], px)[None, :]
    return np.exp(-2 * (math.pi * sigma_mm) ** 2 * (fx ** 2 + fy ** 2))


def apply(planes: np.ndarray, kernel: Kernel, px: float, rng: np.random.Generator,
          body_hu: float = -500.0) -> np.ndarray:
    """``planes`` (n, rows, cols) HU at pixel size ``px`` mm through the kernel: MTF, edge
    enhancement, correlated HU-dependent noise."""
    x = np.asarray(planes, np.float32)
    shape = x.shape[-2:]
    spec = np.fft.rfft2(x)
    g = _gauss_fft(shape, px, kernel.mtf_sigma_mm)
    out = np.fft.irfft2(spec * g, s=shape)
    if kernel.enhance > 0:  # unsharp masking against a wider blur: a sharp kernel's overshoot
        wide = np.fft.irfft2(spec * _gauss_fft(shape, px, kernel.mtf_sigma_mm + 0.8), s=shape)
        out = out + kernel.enhance * (out - wide)
    fy = np.fft.fftfreq(shape[0], px)[:, None]
    fx = np.fft.rfftfreq(shape[1], px)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    nps = f * np.exp(-(f / kernel.nps_cutoff) ** 2)
    white = rng.standard_normal(x.shape, dtype=np.float32)
    noise = np.fft.irfft2(np.fft.rfft2(white) * np.sqrt(nps), s=shape)
    noise *= kernel.noise_hu / max(float(noise.std()), 1e-6)
    inside = x > body_hu
    scale = np.where(inside, 1.0, kernel.air_ratio).astype(np.float32)
    return (out + noise * scale).astype(np.float32)


def measure(voxels: np.ndarray, px: float, slices=None) -> dict:
    """A series' noise and noise spectrum, as the table above was measured: the SD of the 20%
    most uniform 24-pixel soft-tissue patches (mean 20-70 HU) and of air patches in the anterior
    80 rows outside the body (mean -1100..-900 HU, SD < 80), and the radially averaged NPS peak
    of the soft-tissue patches."""
    ks = range(voxels.shape[0]) if slices is None else slices
    soft: list[np.ndarray] = []
    air: list[np.ndarray] = []
    for k in ks:
        img = np.asarray(voxels[k], np.float32)
        soft += _patches(img, 24, 20.0, 70.0)
        air += [p for p in _patches(img[:80], 32, -1100.0, -900.0) if p.std() < 80]
    if not soft:
        return {"noise_sd_soft_hu": None, "noise_sd_air_hu": None, "nps_peak_per_mm": None}
    sds = np.array([p.std() for p in soft])
    uniform = [p for p, s in zip(soft, sds) if s <= np.percentile(sds, 20)]
    size = 24
    acc = np.zeros((size, size))
    win = np.hanning(size)[:, None] * np.hanning(size)[None, :]
    for p in uniform:
        acc += np.abs(np.fft.fft2((p - p.mean()) * win)) ** 2
    f = np.fft.fftfreq(size, px)
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    bins = np.linspace(0, 1 / (2 * px), 24)
    prof = np.array([acc[(fr >= a) & (fr < b)].mean() for a, b in zip(bins[:-1], bins[1:])])
    centres = (bins[:-1] + bins[1:]) / 2
    return {"noise_sd_soft_hu": round(float(np.percentile(sds, 10)), 1),
            "noise_sd_air_hu": round(float(np.median([p.std() for p in air])), 1) if air else None,
            "nps_peak_per_mm": round(float(centres[int(np.argmax(prof))]), 3)}


def _patches(img: np.ndarray, size: int, lo: float, hi: float) -> list[np.ndarray]:
    out = []
    for r in range(0, img.shape[0] - size, size // 2):
        for c in range(0, img.shape[1] - size, size // 2):
            p = img[r:r + size, c:c + size]
            if lo < float(p.mean()) < hi:
                out.append(p)
    return out
