"""Training samples for the 2.5D detector, rendered from the synthetic chest phantom.

Each sample imitates what the detector sees at inference: a CT acquired at a
random pixel spacing, slice thickness and noise level, then resampled to the
model's spacing (bilinear, antialiased), windowed, ``channels`` neighbouring
model slices stacked. The phantoms are ``VariedChestPhantom`` (nodule types,
masses, airways, fissures, contrast, disease, what lies around the lungs); the
acquisition varies the reconstruction kernel (soft: a Gaussian MTF; sharp: edge
enhancement), the noise's level and grain (correlated noise) and, now and then,
motion blur. Boxes are the nodules' cross-sections on the centre
slice, in model pixels. Half the samples are centred near a nodule, half are
anywhere in the chest (vessels, ribs, heart and the diaphragm are the hard
negatives).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from medstation.synth import ChestPhantom, kernels
from medstation.synth.varied import VariedChestPhantom
from medstation.training.bank import LABEL_DZ, SampleBank  # noqa: F401 (re-exported)

#: phantom seeds the default detector is trained on; evaluation uses seeds >= 10000 (``training.evaluate``
#: refuses an evaluation set that overlaps them)
TRAIN_SEEDS = (0, 400)

#: the generators a bank can be rendered with: "1" (nodule-detector 1.x: nodules 3-30 mm, masses
#: 30-50 mm, 1-3 mm slices, a blur-or-sharpen kernel with blurred white noise) and "2"
#: (nodule-detector 2.x: as "1" plus masses of 30-100 mm on the mediastinum, the hilum and the chest
#: wall with atelectasis and effusion, more 4-6 mm nodules beside vessels, the measured kernel
#: model of ``synth.kernels`` (MTF, NPS, HU-dependent noise) and Gaussian slice profiles of 1-8 mm)
GENERATORS = ("1", "2")


def make_phantom(seed: int, generator: str = "1") -> ChestPhantom:
    rng = np.random.default_rng([seed, 1])
    ph = VariedChestPhantom(seed=seed)
    ph.add_varied_nodules(rng, int(rng.integers(4, 11)), diameters=(3.0, 30.0))
    if generator == "2":
        extra = np.random.default_rng([seed, 2])
        if extra.random() < 0.6:
            ph.add_masses(extra, 1 if extra.random() < 0.8 else 2)
        small = VariedChestPhantom(seed=seed)  # 4-6 mm nodules, half of them beside a vessel
        small.add_varied_nodules(extra, int(extra.integers(1, 4)), diameters=(4.0, 6.0), mass_share=0.0)
        for n in small.nodules:
            if all(np.linalg.norm(np.subtract(n.center, o.center)) > (n.diameter_mm + o.diameter_mm) / 2 + 5
                   for o in ph.nodules):
                label = f"S{len(ph.nodules) + 1}"
                ph.shapes[label] = small.shapes[n.label]
                ph.nodules.append(type(n)(n.center, n.diameter_mm, n.hu, label))
    return ph


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    return k / k.sum()


def _blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (n, rows, cols), ``sigma`` in pixels."""
    if sigma < 0.2:
        return t
    k = _gauss_kernel(sigma)
    r = (len(k) - 1) // 2
    x = t[:, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x[:, 0]


def acquire(planes: np.ndarray, rng: np.random.Generator, px: float) -> torch.Tensor:
    """The scanner's side: kernel, correlated noise at a random dose, sometimes motion blur."""
    t = torch.from_numpy(planes)
    kernel = rng.choice(["soft", "standard", "sharp"])
    soft = _blur(t, float(rng.uniform(0.4, 1.1)) / px)
    t = soft if kernel != "sharp" else t + float(rng.uniform(0.3, 0.9)) * (t - soft)
    if rng.random() < 0.1:  # breathing or cardiac motion: a ghost shifted along y
        shift = int(rng.integers(1, 4))
        t = 0.6 * t + 0.4 * torch.roll(t, shift, dims=1)
    noise = torch.from_numpy(rng.standard_normal(planes.shape, dtype=np.float32))
    noise = _blur(noise, float(rng.uniform(0.0, 1.3)))
    noise *= float(rng.uniform(6.0, 45.0)) / max(float(noise.std()), 1e-6)
    return t + noise


def acquire_measured(ph: ChestPhantom, z_positions: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                     thickness: float, rng: np.random.Generator, px: float) -> torch.Tensor:
    """Generator "2"'s scanner: each slice through a Gaussian slice profile (FWHM ``thickness``),
    then a kernel drawn from ``synth.kernels`` (MTF, edge enhancement, NPS-shaped noise that is
    lower outside the body), sometimes motion."""
    offs, weights = kernels.ssp_offsets(thickness)
    planes = np.stack([sum(w * ph._render(float(z + o), xs, ys) for o, w in zip(offs, weights))
                       for z in z_positions]).astype(np.float32)
    if rng.random() < 0.1:  # breathing or cardiac motion: a ghost shifted along y
        shift = int(rng.integers(1, 4))
        planes = 0.6 * planes + 0.4 * np.roll(planes, shift, axis=1)
    return torch.from_numpy(kernels.apply(planes, kernels.draw(rng), px, rng))


def render_sample(ph: ChestPhantom, rng: np.random.Generator, input_spec: dict, crop: int,
                  centre: tuple[float, float, float], generator: str = "1") -> tuple[np.ndarray, np.ndarray]:
    """One 2.5D sample centred at ``centre`` (mm): (channels, crop, crop) float32 and boxes."""
    channels = int(input_spec["channels"])
    px = float(input_spec["pixel_spacing_mm"])
    dz = float(input_spec["slice_spacing_mm"])
    lo, hi = (float(v) for v in input_spec["window"])
    cx, cy, cz = centre
    size_mm = crop * px
    x0, y0 = cx - size_mm / 2, cy - size_mm / 2
    # the acquisition: pixel spacing, slice thickness (= spacing), noise, slice grid offset
    acq_px = float(rng.uniform(0.6, 1.5))
    n_acq = max(8, int(round(size_mm / acq_px)))
    acq_px = size_mm / n_acq
    thickness = float(rng.choice(kernels.THICKNESSES if generator == "2" else
                                 [1.0, 1.25, 1.5, 2.0, 2.5, 3.0]))
    grid = (np.arange(n_acq) + 0.5) * acq_px
    xs, ys = x0 + grid, y0 + grid
    half = channels // 2
    want = cz + (np.arange(channels) - half) * dz  # model slice positions
    offset = float(rng.uniform(0, thickness))
    first = math.floor((want[0] - offset) / thickness)
    last = math.ceil((want[-1] - offset) / thickness)
    acq_z = offset + np.arange(first, last + 1) * thickness
    if generator == "2":
        t = acquire_measured(ph, acq_z, xs, ys, thickness, rng, acq_px)[:, None]
    else:
        planes = np.stack([ph.render_slice(float(z), xs, ys, thickness) for z in acq_z])
        t = acquire(planes, rng, acq_px)[:, None]
    t = F.interpolate(t, size=(crop, crop), mode="bilinear", align_corners=False,
                      antialias=n_acq > crop)[:, 0]
    f = (want - acq_z[0]) / thickness
    k0 = np.clip(np.floor(f).astype(int), 0, len(acq_z) - 2)
    w = torch.from_numpy((f - k0).astype(np.float32))[:, None, None]
    img = t[k0] * (1 - w) + t[k0 + 1] * w
    img = ((img - lo) / (hi - lo)).clamp(0, 1).numpy()
    boxes = []
    for n in ph.nodules:
        if generator == "2" and isinstance(ph, VariedChestPhantom):
            mm = ph.label_box(n, cz, LABEL_DZ)
            if mm is None:
                continue
        else:
            r = n.diameter_mm / 2
            d = cz - n.center[2]
            if abs(d) > LABEL_DZ * r:
                continue
            rr = math.sqrt(r * r - d * d)
            mm = (n.center[0] - rr, n.center[1] - rr, n.center[0] + rr, n.center[1] + rr)
        bx0, by0 = (mm[0] - x0) / px, (mm[1] - y0) / px
        bx1, by1 = (mm[2] - x0) / px, (mm[3] - y0) / px
        mx, my = (bx0 + bx1) / 2, (by0 + by1) / 2
        if 0 <= mx < crop and 0 <= my < crop:
            boxes.append([max(0.0, bx0), max(0.0, by0), min(float(crop), bx1), min(float(crop), by1)])
    return img.astype(np.float32), np.array(boxes, np.float32).reshape(-1, 4)


def make_bank(count: int, input_spec: dict, *, crop: int = 128, seed: int = 0,
              phantom_seeds: tuple[int, int] = (0, 300), positive_fraction: float = 0.5,
              progress: Callable[[int, int], None] | None = None, generator: str = "1") -> SampleBank:
    """Render ``count`` samples from phantoms with seeds in ``[first, last)`` by ``generator``
    (``GENERATORS``)."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown sample generator {generator!r} (known: {', '.join(GENERATORS)})")
    rng = np.random.default_rng(seed)
    channels = int(input_spec["channels"])
    images = np.empty((count, channels, crop, crop), np.uint8)
    boxes: list[np.ndarray] = []
    phantoms: dict[int, ChestPhantom] = {}
    for n in range(count):
        s = int(rng.integers(*phantom_seeds))
        ph = phantoms.get(s)
        if ph is None:
            if len(phantoms) > 64:
                phantoms.clear()
            ph = phantoms[s] = make_phantom(s, generator)
        if ph.nodules and rng.random() < positive_fraction:
            nod = ph.nodules[int(rng.integers(len(ph.nodules)))]
            r = nod.diameter_mm / 2
            # a mass stays in the crop: shifted by at most what leaves it inside
            shift = 45.0 if nod.diameter_mm < 40 else \
                max(10.0, 0.5 * crop * float(input_spec["pixel_spacing_mm"]) - r)
            centre = (nod.center[0] + rng.uniform(-shift, shift), nod.center[1] + rng.uniform(-shift, shift),
                      nod.center[2] + rng.uniform(-LABEL_DZ, LABEL_DZ) * r)
        elif (u := rng.random()) < 0.3:  # hard negatives: mediastinum, heart border, hila, spine
            centre = (rng.uniform(-60, 60), rng.uniform(-60, 90), rng.uniform(ph.z_bottom - 20, ph.z_top))
        elif u < 0.45:  # the lung bases around the diaphragm's dome
            centre = (rng.uniform(-140, 140), rng.uniform(-90, 100),
                      rng.uniform(ph.z_bottom - 10, ph.z_bottom + 60))
        else:  # anywhere, the neck above the apices and the upper abdomen included
            centre = (rng.uniform(-160, 160), rng.uniform(-100, 120),
                      rng.uniform(ph.z_bottom - 60, ph.z_top + 50))
        img, bx = render_sample(ph, rng, input_spec, crop, centre, generator)
        images[n] = np.rint(img * 255).astype(np.uint8)
        boxes.append(bx)
        if progress and ((n + 1) % 20 == 0 or n == count - 1):
            progress(n + 1, count)
    return SampleBank(images, boxes, phantom_seeds)
