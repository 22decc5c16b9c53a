"""An analytic chest CT phantom: body, fat, lungs, vessels, spine, ribs, table
and lung nodules at known patient positions.

The phantom is a function of patient coordinates, so it can be sampled at any
slice position and pixel spacing; every series of a study (thin lung kernel,
thick mediastinal) and every prior of a patient sees the same anatomy.
Coordinates are DICOM patient coordinates (LPS, mm), with z = 0 at the carina.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SOLID_HU = 30.0
GROUND_GLASS_HU = -550.0


@dataclass(frozen=True)
class Nodule:
    """A spherical lung nodule: centre (mm, LPS), diameter (mm), density (HU)."""

    center: tuple[float, float, float]
    diameter_mm: float
    hu: float = SOLID_HU
    label: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChestPhantom:
    """Anatomy of one synthetic patient; ``seed`` fixes vessels and body shape."""

    seed: int = 0
    nodules: list[Nodule] = field(default_factory=list)
    body_half_width: float = 170.0  # mm, left-right
    body_half_depth: float = 115.0  # mm, anterior-posterior
    z_top: float = 160.0  # lung apex (mm)
    z_bottom: float = -200.0  # lung base (mm)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.body_half_width *= 1 + 0.06 * rng.standard_normal()
        self.body_half_depth *= 1 + 0.06 * rng.standard_normal()
        self._vessels = _make_vessels(rng, self)

    # -- geometry helpers -------------------------------------------------
    def lung_ellipses(self, z: float) -> list[tuple[float, float, float, float]]:
        """(cx, cy, half-width, half-depth) of the right and left lung at ``z``."""
        span = self.z_top - self.z_bottom
        t = (z - self.z_bottom) / span  # 0 at base, 1 at apex
        if t <= 0.0 or t >= 1.0:
            return []
        # dome at the base, tapering apex
        scale = np.sqrt(np.clip(t / 0.12, 0, 1)) * np.sqrt(np.clip((1 - t) / 0.45, 0, 1))
        scale = float(np.clip(scale, 0, 1))
        hw = 0.36 * self.body_half_width * (0.35 + 0.65 * scale)
        hd = 0.70 * self.body_half_depth * (0.35 + 0.65 * scale)
        cx = 0.46 * self.body_half_width
        cy = -0.02 * self.body_half_depth
        if scale < 0.05:
            return []
        return [(-cx, cy, hw, hd), (cx, cy, hw, hd)]

    def inside_lung(self, point) -> bool:
        x, y, z = point
        for cx, cy, hw, hd in self.lung_ellipses(z):
            if ((x - cx) / hw) ** 2 + ((y - cy) / hd) ** 2 < 0.8:
                return True
        return False

    def in_mediastinum(self, point, margin: float = 0.0) -> bool:
        """True inside the aorta, the heart or the spine (painted over the lungs), + ``margin`` mm."""
        x, y, z = point
        discs = [(25.0, 10.0, 14.0), (0.0, self.body_half_depth - 45.0, 18.0)]
        if z < -20:
            discs.append((-10.0, -25.0, 55.0))
        return any((x - cx) ** 2 + (y - cy) ** 2 < (r + margin) ** 2 for cx, cy, r in discs)

    def truth(self) -> list[dict]:
        return [n.to_dict() for n in self.nodules]

    # -- sampling ---------------------------------------------------------
    def render_slice(
        self,
        z: float,
        x: np.ndarray,
        y: np.ndarray,
        thickness: float = 1.0,
    ) -> np.ndarray:
        """HU values (float32, no noise) on the grid ``x`` (columns) by ``y`` (rows)
        at slice position ``z``; thick slices average sub-slices."""
        n_sub = max(1, int(round(thickness / 1.0)))
        if n_sub == 1:
            return self._render(z, x, y)
        offs = (np.arange(n_sub) - (n_sub - 1) / 2) * (thickness / n_sub)
        acc = np.zeros((y.size, x.size), np.float32)
        for o in offs:
            acc += self._render(z + o, x, y)
        return acc / n_sub

    def _render(self, z: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xx = x[None, :].astype(np.float32)
        yy = y[:, None].astype(np.float32)
        img = np.full((y.size, x.size), -1000.0, np.float32)
        bw, bd = self.body_half_width, self.body_half_depth
        r_body = (xx / bw) ** 2 + (yy / bd) ** 2
        img[r_body < 1.0] = -100.0  # subcutaneous fat
        r_muscle = (xx / (bw - 12)) ** 2 + (yy / (bd - 12)) ** 2
        img[r_muscle < 1.0] = 45.0  # muscle / mediastinum
        # ribs: bony ring segments just inside the muscle wall
        r_rib = (xx / (bw - 22)) ** 2 + (yy / (bd - 20)) ** 2
        ang = np.arctan2(yy, xx)
        rib_phase = np.cos(ang * 9 + z * 0.25)
        ribs = (np.abs(r_rib - 1.0) < 0.035) & (rib_phase > 0.3)
        img[ribs] = 650.0
        for cx, cy, hw, hd in self.lung_ellipses(z):
            lung = ((xx - cx) / hw) ** 2 + ((yy - cy) / hd) ** 2 < 1.0
            img[lung] = -860.0
        # vessels: tubes through the lungs, only inside lungs and mediastinum
        for (p0, p1, radius) in self._vessels:
            if not (min(p0[2], p1[2]) <= z <= max(p0[2], p1[2])) or p0[2] == p1[2]:
                continue
            t = (z - p0[2]) / (p1[2] - p0[2])
            px = p0[0] + t * (p1[0] - p0[0])
            py = p0[1] + t * (p1[1] - p0[1])
            _disc(img, xx, yy, px, py, radius, 40.0, only_below=-500.0)
        # aorta, heart and spine
        _disc(img, xx, yy, 25.0, 10.0, 14.0, 160.0)
        if z < -20:
            _disc(img, xx, yy, -10.0, -25.0, 55.0, 40.0)
        _disc(img, xx, yy, 0.0, bd - 45.0, 18.0, 700.0)
        _disc(img, xx, yy, 0.0, bd - 45.0, 11.0, 250.0)
        # patient table (below the body, posterior)
        table = (np.abs(yy - (bd + 18)) < 4) & (np.abs(xx) < 1.2 * bw)
        img[np.broadcast_to(table, img.shape)] = 150.0
        for n in self.nodules:
            dz = z - n.center[2]
            r = n.diameter_mm / 2
            if abs(dz) >= r:
                continue
            rr = float(np.sqrt(r * r - dz * dz))
            _disc(img, xx, yy, n.center[0], n.center[1], rr, n.hu, soft=True)
        return img


def _disc(img, xx, yy, cx, cy, r, value, *, soft=False, only_below=None):
    """Paint a disc, touching only its bounding box (fast for small discs)."""
    x = xx[0]
    y = yy[:, 0]
    j0, j1 = np.searchsorted(x, [cx - r - 1, cx + r + 1])
    i0, i1 = np.searchsorted(y, [cy - r - 1, cy + r + 1])
    if j0 >= j1 or i0 >= i1:
        return
    sub = img[i0:i1, j0:j1]
    d = np.sqrt((x[j0:j1][None, :] - cx) ** 2 + (y[i0:i1][:, None] - cy) ** 2)
    if soft:
        # partial-volume edge one pixel wide
        px = float(abs(x[1] - x[0])) if x.size > 1 else 1.0
        w = np.clip((r - d) / px + 0.5, 0.0, 1.0)
        sub[...] = sub * (1 - w) + value * w
    else:
        m = d < r
        if only_below is not None:
            m &= sub < only_below
        sub[m] = value


def _make_vessels(rng: np.random.Generator, ph: ChestPhantom):
    """Branching tubes from each hilum into the lung."""
    vessels = []
    for side in (-1, 1):
        hilum = np.array([side * 0.3 * ph.body_half_width, 5.0, -10.0])
        for _ in range(14):
            direction = rng.normal(size=3)
            direction[0] = side * abs(direction[0]) + side * 0.5
            direction /= np.linalg.norm(direction)
            length = rng.uniform(60, 150)
            end = hilum + direction * length
            radius = rng.uniform(2.0, 4.5)
            vessels.append((hilum, end, radius))
            for _ in range(2):  # one level of branches
                d2 = direction + rng.normal(scale=0.6, size=3)
                d2 /= np.linalg.norm(d2)
                mid = hilum + direction * length * rng.uniform(0.4, 0.8)
                vessels.append((mid, mid + d2 * rng.uniform(30, 70), radius * 0.55))
    return vessels


def random_nodules(
    phantom: ChestPhantom,
    rng: np.random.Generator,
    count: int,
    diameters=(4.0, 12.0),
    ground_glass_fraction: float = 0.2,
    z_range: tuple[float, float] | None = None,
) -> list[Nodule]:
    """Nodules placed at random inside the lungs, away from each other."""
    out: list[Nodule] = []
    zlo, zhi = z_range or (phantom.z_bottom + 40, phantom.z_top - 40)
    tries = 0
    while len(out) < count and tries < 10000:
        tries += 1
        d = float(rng.uniform(*diameters))
        c = (float(rng.uniform(-150, 150)), float(rng.uniform(-90, 90)), float(rng.uniform(zlo, zhi)))
        if not phantom.inside_lung(c):
            continue
        if any(np.linalg.norm(np.subtract(c, n.center)) < (d + n.diameter_mm) for n in out):
            continue
        hu = GROUND_GLASS_HU if rng.random() < ground_glass_fraction else SOLID_HU
        out.append(Nodule(c, round(d, 1), hu, label=f"N{len(out) + 1}"))
    return out
