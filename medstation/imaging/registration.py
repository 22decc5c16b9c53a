"""Prior-to-current CT registration (SimpleITK): rigid, then affine, Mattes mutual information in the lungs.

Both volumes are resampled to ``WORK_MM`` voxels (the registration does not need
more, and a 300-slice pair registers in a few seconds on two cores); the metric
is Mattes mutual information sampled inside the current study's lung mask
(dilated by a centimetre, so the pleura and the vessels' roots count), and the
optimiser runs over three resolution levels. Rigid (Euler) first, from the
centres of the two lung masks; then affine from the rigid result (breath-hold
changes the chest's size along z).

The result maps a point of the prior (patient mm) to the current study's
patient mm. A registration that ends with an implausible transform (a shift over
``MAX_SHIFT_MM``, a scale outside 0.8-1.25) or that cannot run says so
(``ok=False`` with the reason), and callers fall back to patient coordinates with
a wider matching radius.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from medstation.core.volume import Volume

WORK_MM = 4.0
MAX_SHIFT_MM = 80.0


@dataclass
class Registration:
    matrix: np.ndarray  # 3x3: current = matrix @ prior + offset (patient mm)
    offset: np.ndarray  # (3,)
    method: str  # "affine", "rigid" or "identity"
    ok: bool
    seconds: float = 0.0
    metric: float = float("nan")
    message: str = ""

    def map_point(self, prior_mm) -> np.ndarray:
        return self.matrix @ np.asarray(prior_mm, float) + self.offset

    def to_dict(self) -> dict:
        return {"matrix": self.matrix.round(6).tolist(), "offset": self.offset.round(4).tolist(),
                "method": self.method, "ok": self.ok, "seconds": round(self.seconds, 2),
                "metric": None if not np.isfinite(self.metric) else round(float(self.metric), 5),
                "message": self.message}

    @classmethod
    def from_dict(cls, d: dict) -> Registration:
        return cls(np.asarray(d["matrix"], float), np.asarray(d["offset"], float), str(d["method"]),
                   bool(d["ok"]), float(d.get("seconds", 0.0)),
                   float("nan") if d.get("metric") is None else float(d["metric"]), str(d.get("message", "")))

    @classmethod
    def identity(cls, message: str) -> Registration:
        return cls(np.eye(3), np.zeros(3), "identity", False, message=message)


def _to_sitk(volume: Volume, voxels: np.ndarray | None = None, step=(1, 1, 1)):
    import SimpleITK as sitk

    arr = np.ascontiguousarray((volume.voxels if voxels is None else voxels)[::step[0], ::step[1], ::step[2]],
                               dtype=np.float32)
    img = sitk.GetImageFromArray(arr)
    sp = [abs(float(s)) * st for s, st in zip(volume.spacing, step)]
    img.SetSpacing((sp[2], sp[1], sp[0]))
    img.SetOrigin(tuple(float(v) for v in volume.origin))
    img.SetDirection(volume.grid.sitk_direction())
    return img


def _steps(volume: Volume) -> tuple[int, int, int]:
    return tuple(max(1, int(round(WORK_MM / max(abs(float(s)), 1e-3)))) for s in volume.spacing)  # type: ignore


def register(current: Volume, prior: Volume, *, current_lungs: np.ndarray | None = None,
             prior_lungs: np.ndarray | None = None, affine: bool = True) -> Registration:
    """Register ``prior`` onto ``current``; lung masks (voxel grids of each volume) are computed when
    not given."""
    import SimpleITK as sitk

    from medstation.imaging.lungs import lung_mask

    t0 = time.perf_counter()
    try:
        cl = current_lungs if current_lungs is not None else lung_mask(current).mask
        pl = prior_lungs if prior_lungs is not None else lung_mask(prior).mask
        if not cl.any() or not pl.any():
            return Registration.identity("no lung found in one of the two series")
        cs, ps = _steps(current), _steps(prior)
        fixed = _to_sitk(current, step=cs)
        moving = _to_sitk(prior, step=ps)
        fixed = sitk.Clamp(fixed, lowerBound=-1000.0, upperBound=400.0)
        moving = sitk.Clamp(moving, lowerBound=-1000.0, upperBound=400.0)
        # the masks strided first, then made float (not a float copy of the whole-grid mask first)
        fmask = _to_sitk(current, cl, cs) > 0.5
        fmask = sitk.BinaryDilate(sitk.Cast(fmask, sitk.sitkUInt8), [3, 3, 3])
        mmask = sitk.Cast(_to_sitk(prior, pl, ps) > 0.5, sitk.sitkUInt8)
        init = sitk.CenteredTransformInitializer(fmask, mmask, sitk.Euler3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
        rigid = _run(fixed, moving, fmask, init)
        final, method = rigid, "rigid"
        if affine:
            aff = sitk.AffineTransform(3)
            aff.SetMatrix(rigid.GetMatrix())
            aff.SetTranslation(rigid.GetTranslation())
            aff.SetCenter(rigid.GetCenter())
            final, method = _run(fixed, moving, fmask, aff, affine=True), "affine"
        # sitk maps fixed (current) points to moving (prior) ones: invert for prior -> current
        a = np.asarray(final.GetMatrix(), float).reshape(3, 3)
        c = np.asarray(final.GetCenter(), float)
        t = np.asarray(final.GetTranslation(), float)
        # moving = a @ (x - c) + c + t  =>  x = inv(a) @ (moving - c - t) + c
        inv = np.linalg.inv(a)
        matrix, offset = inv, c - inv @ (c + t)
        metric = float(_metric_value(fixed, moving, fmask, final))
    except RuntimeError as exc:  # SimpleITK's own errors (too few samples in the mask, ...)
        return Registration.identity(f"registration failed: {str(exc).splitlines()[0][:200]}")
    seconds = time.perf_counter() - t0
    scales = np.linalg.svd(matrix, compute_uv=False)
    shift = float(np.linalg.norm(offset + matrix @ np.zeros(3)))
    if scales.min() < 0.8 or scales.max() > 1.25 or shift > MAX_SHIFT_MM * 4:
        return Registration(np.eye(3), np.zeros(3), "identity", False, seconds, metric,
                            f"registration gave an implausible transform (scales {scales.round(2).tolist()})")
    return Registration(matrix, offset, method, True, seconds, metric)


def _run(fixed, moving, fmask, transform, *, affine: bool = False):
    import SimpleITK as sitk

    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=40)
    r.SetMetricFixedMask(fmask)
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(0.25, seed=7)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0 if not affine else 0.5, minStep=1e-3,
                                              numberOfIterations=120 if not affine else 80,
                                              gradientMagnitudeTolerance=1e-6)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([4, 2, 1])
    r.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    r.SetInitialTransform(transform, inPlace=False)
    out = r.Execute(fixed, moving)
    if isinstance(out, sitk.CompositeTransform):
        out = out.GetNthTransform(0)
    if affine:
        return sitk.AffineTransform(out)
    return sitk.Euler3DTransform(out)


def _metric_value(fixed, moving, fmask, transform) -> float:
    import SimpleITK as sitk

    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=40)
    r.SetMetricFixedMask(fmask)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetInitialTransform(transform)
    return r.MetricEvaluate(fixed, moving)
