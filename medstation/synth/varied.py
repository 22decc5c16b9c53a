"""Domain randomization for the training generator: more kinds of nodule, anatomy and disease.

``VariedChestPhantom`` is the training family's phantom (``ChestPhantom``) with,
per patient (all drawn from its seed):

- nodules: solid, ground glass, part-solid (a ground-glass nodule with a solid
  core), calcified, lobulated (a union of overlapping spheres), spiculated
  (straight spicules off the surface), masses up to 50 mm; some juxtapleural
  (touching the chest wall), some juxtavascular (touching a vessel);
- with :meth:`VariedChestPhantom.add_masses` (generator "2"): masses of 30-100 mm on the
  mediastinum, the hilum or the chest wall, some with collapsed lung beside them or pleural fluid
  below them (both unlabelled: what a detector must not call a lesion);
- anatomy: small tapering vessels, the trachea and main bronchi, fissures,
  a heart and great vessels with or without contrast, pulmonary trunk,
  mediastinal fat and lymph nodes, oesophagus, breast tissue, the neck above
  the apices, the liver dome, stomach and spleen below the lungs;
- lung disease: emphysema bullae, a fibrosis-like reticular texture.

The acquisition side (kernel, correlated noise, motion) is added where samples
are rendered (``medstation.training.synthetic``). The held-out evaluation
generator (``medstation.synth.heldout``) shares none of this code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medstation.synth.phantom import GROUND_GLASS_HU, SOLID_HU, ChestPhantom, Nodule, _disc

KINDS = ("solid", "ground-glass", "part-solid", "calcified", "lobulated", "spiculated")
KIND_WEIGHTS = (0.42, 0.14, 0.12, 0.08, 0.12, 0.12)


@dataclass(frozen=True)
class Shape:
    """How a labelled nodule is drawn beyond its sphere."""

    kind: str = "solid"
    core_frac: float = 0.0  # part-solid: solid core radius / radius
    satellites: tuple = ()  # lobulated: (dx, dy, dz, r) spheres, mm from the centre
    spicules: tuple = ()  # spiculated: (ux, uy, uz, length) from the surface


class VariedChestPhantom(ChestPhantom):
    def __init__(self, seed: int = 0, **kw) -> None:
        super().__init__(seed=seed, **kw)
        rng = np.random.default_rng([seed, 77])
        self.contrast = float(rng.choice([0.0, 0.0, rng.uniform(100, 300)]))
        self.breast = bool(rng.random() < 0.3)
        self.neck = bool(rng.random() < 0.7)
        self.emphysema = [(self._random_lung_point(rng), float(rng.uniform(2, 10)))
                          for _ in range(int(rng.integers(10, 50)) if rng.random() < 0.2 else 0)]
        self.emphysema = [(c, r) for c, r in self.emphysema if c is not None]
        self.fibrosis = float(rng.uniform(0.85, 0.95)) if rng.random() < 0.15 else 0.0
        self.fissure = (float(rng.uniform(-60, 10)), float(rng.uniform(0.5, 1.1)))
        self.nodes = [(float(rng.uniform(-30, 40)), float(rng.uniform(-40, 30)), float(rng.uniform(-40, 60)),
                       float(rng.uniform(3, 8))) for _ in range(int(rng.integers(0, 5)))]
        self.small_vessels = self._small_vessels(rng)
        self.dome_height = float(rng.uniform(25, 60))  # the diaphragm's dome rises into the lung base
        self.bronchi = self._bronchi(rng)
        self.shapes: dict[str, Shape] = {}
        #: beside a mass: collapsed lung (x, y, z, half-width, half-depth, half-height, HU) and
        #: pleural fluid (side, z from, z to, depth share of the lung)
        self.atelectasis: list[tuple[float, ...]] = []
        self.effusion: list[tuple[int, float, float, float]] = []

    def _random_lung_point(self, rng):
        for _ in range(100):
            c = (float(rng.uniform(-150, 150)), float(rng.uniform(-90, 90)),
                 float(rng.uniform(self.z_bottom + 10, self.z_top - 10)))
            if self.inside_lung(c):
                return c
        return None

    def _small_vessels(self, rng):
        out = []
        for _ in range(60):
            c = self._random_lung_point(rng)
            if c is None:
                continue
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            length = float(rng.uniform(20, 60))
            out.append((np.array(c), np.array(c) + d * length, float(rng.uniform(1.0, 2.5))))
        return out

    def _bronchi(self, rng):
        """Segmental bronchi: air tubes with a soft-tissue wall running out from each hilum."""
        out = []
        for side in (-1, 1):
            start = np.array([side * 0.3 * self.body_half_width, 0.0, float(rng.uniform(-25, 0))])
            for _ in range(int(rng.integers(4, 9))):
                d = rng.normal(size=3) + [side * 1.2, 0.0, 0.0]
                d /= np.linalg.norm(d)
                length = float(rng.uniform(30, 80))
                out.append((start, start + d * length, float(rng.uniform(2.0, 5.0)),
                            float(rng.uniform(1.0, 2.0))))
        return out

    # -- nodules ------------------------------------------------------------
    def add_varied_nodules(self, rng, count: int, diameters=(3.0, 30.0), mass_share: float = 0.06) -> None:
        out: list[Nodule] = []
        tries = 0
        while len(out) < count and tries < 4000:
            tries += 1
            kind = str(rng.choice(KINDS, p=KIND_WEIGHTS))
            if rng.random() < mass_share:
                d = float(rng.uniform(30, 50))
                kind = str(rng.choice(["solid", "lobulated", "spiculated"]))
            elif kind == "calcified":
                d = float(rng.uniform(3, 10))
            else:  # log-uniform: as many 3-6 mm nodules as 15-30 mm ones
                d = float(np.exp(rng.uniform(math.log(diameters[0]), math.log(diameters[1]))))
            r = d / 2
            c = np.array([rng.uniform(-150, 150), rng.uniform(-90, 90),
                          rng.uniform(self.z_bottom + 15 + r, self.z_top - 10 - r)])
            where = rng.random()
            if where < 0.2:  # juxtapleural: slide outwards until it meets the wall
                ell = self.lung_ellipses(float(c[2]))
                if not ell:
                    continue
                cx, cy, hw, hd = ell[0] if c[0] < 0 else ell[1]
                ang = math.atan2((c[1] - cy) / hd, (c[0] - cx) / hw)
                # the point at (1 - r/size) of the way to the boundary along the angle
                c[0] = cx + (hw - 0.7 * r) * math.cos(ang)
                c[1] = cy + (hd - 0.7 * r) * math.sin(ang)
            elif where < 0.35 and self._vessels:  # juxtavascular
                p0, p1, rv = self._vessels[int(rng.integers(len(self._vessels)))]
                p = np.asarray(p0) + (np.asarray(p1) - np.asarray(p0)) * rng.uniform(0.3, 0.9)
                off = np.cross(np.asarray(p1) - np.asarray(p0), rng.normal(size=3))
                c = p + off / (np.linalg.norm(off) + 1e-9) * (rv + 0.8 * r)
            c = tuple(float(v) for v in c)
            if not self.inside_lung(c) or self.in_mediastinum(c, r):
                continue
            if any(np.linalg.norm(np.subtract(c, n.center)) < (d + n.diameter_mm) / 2 + 5 for n in out):
                continue
            hu = {"ground-glass": GROUND_GLASS_HU + rng.uniform(-150, 100),
                  "part-solid": GROUND_GLASS_HU + rng.uniform(-100, 100),
                  "calcified": float(rng.uniform(300, 900))}.get(kind, SOLID_HU + rng.uniform(-30, 30))
            label = f"N{len(out) + 1}"
            shape = Shape(kind)
            if kind == "part-solid":
                shape = Shape(kind, core_frac=float(rng.uniform(0.3, 0.6)))
            elif kind == "lobulated":
                sats = []
                for _ in range(int(rng.integers(2, 5))):
                    u = rng.normal(size=3)
                    u /= np.linalg.norm(u)
                    rs = r * float(rng.uniform(0.35, 0.55))
                    sats.append((*(u * (r - rs * 0.9)), rs))
                shape = Shape(kind, satellites=tuple(sats))
            elif kind == "spiculated":
                spk = []
                for _ in range(int(rng.integers(4, 10))):
                    u = rng.normal(size=3)
                    u /= np.linalg.norm(u)
                    spk.append((*u, float(rng.uniform(0.4, 1.0) * r + 3)))
                shape = Shape(kind, spicules=tuple(spk))
            self.shapes[label] = shape
            out.append(Nodule(c, round(d, 1), float(hu), label))
        self.nodules = out

    def add_masses(self, rng, count: int, diameters=(30.0, 100.0)) -> None:
        """Masses of ``diameters`` mm against the mediastinum, the hilum or the chest wall (where a
        radiologist finds most lung tumours, and where an air-based lung mask leaves them out):
        lobulated soft tissue that displaces lung and may lie on the mediastinum, now and then with
        collapsed lung (atelectasis) distal to it or pleural fluid below it. Labelled ``M1``..."""
        placed = 0
        for _ in range(200):
            if placed >= count:
                break
            d = float(np.exp(rng.uniform(math.log(diameters[0]), math.log(diameters[1]))))
            r = d / 2
            side = int(rng.choice([-1, 1]))
            z = float(rng.uniform(self.z_bottom + 40 + 0.4 * r, self.z_top - 30 - 0.4 * r))
            ell = self.lung_ellipses(z)
            if not ell:
                continue
            cx, cy, hw, hd = ell[0] if side < 0 else ell[1]
            where = rng.random()
            if where < 0.5:  # hilar / juxtamediastinal: on the lung's medial border
                ang = math.pi if side > 0 else 0.0
                ang += float(rng.uniform(-0.6, 0.6))
                depth = float(rng.uniform(0.2, 0.6)) * r  # how far it reaches past the border
            else:  # on the chest wall (lateral, anterior or posterior)
                ang = (0.0 if side > 0 else math.pi) + float(rng.uniform(-1.6, 1.6))
                depth = float(rng.uniform(0.1, 0.45)) * r
            bx, by = cx + hw * math.cos(ang), cy + hd * math.sin(ang)
            c = (bx - math.cos(ang) * (r - depth) * 1.0, by - math.sin(ang) * (r - depth), z)
            if any(np.linalg.norm(np.subtract(c, n.center)) < (d + n.diameter_mm) / 2 + 5
                   for n in self.nodules):
                continue
            sats = []
            for _ in range(int(rng.integers(2, 6))):
                u = rng.normal(size=3)
                u[2] *= 0.7
                u /= np.linalg.norm(u)
                rs = r * float(rng.uniform(0.35, 0.6))
                sats.append((*(u * (r - rs * 0.95)), rs))
            label = f"M{placed + 1}"
            self.shapes[label] = Shape("mass", satellites=tuple(sats),
                                       spicules=self._spicules(rng, r) if rng.random() < 0.3 else ())
            self.nodules.append(Nodule(tuple(float(v) for v in c), round(d, 1),
                                       float(SOLID_HU + rng.uniform(-20, 25)), label))
            placed += 1
            if rng.random() < 0.35:  # collapsed lung distal to it: soft tissue over the lung only
                out = -1.0 if where < 0.5 else 1.0
                ux, uy = -math.cos(ang) * out, -math.sin(ang) * out
                self.atelectasis.append((c[0] + ux * r * 1.1, c[1] + uy * r * 1.1, z, 0.5 * r + 8,
                                         0.45 * r + 8, 0.6 * r + 10, float(rng.uniform(-150, 40))))
            if rng.random() < 0.3:  # fluid layering posteriorly in the lower chest
                self.effusion.append((side, self.z_bottom, float(min(self.z_top, z + rng.uniform(-20, 40))),
                                      float(rng.uniform(0.1, 0.35))))

    @staticmethod
    def _spicules(rng, r: float) -> tuple:
        spk = []
        for _ in range(int(rng.integers(4, 10))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            spk.append((*u, float(rng.uniform(0.2, 0.5) * r + 3)))
        return tuple(spk)

    def label_box(self, n: Nodule, z: float, label_dz: float) -> tuple[float, float, float, float] | None:
        """The lesion's cross-section box at ``z`` (x0, y0, x1, y1 mm), or None off it: its sphere,
        or for a mass the union of its balls; each labelled where ``|dz| <= label_dz * r``."""
        shape = self.shapes.get(n.label, Shape())
        balls = [(0.0, 0.0, 0.0, n.diameter_mm / 2)]
        if shape.kind == "mass":
            balls = [(0.0, 0.0, 0.0, 0.8 * n.diameter_mm / 2), *shape.satellites]
        box = None
        for dx, dy, dz, rad in balls:
            d = z - (n.center[2] + dz)
            if abs(d) > label_dz * rad:
                continue
            rr = math.sqrt(rad * rad - d * d)
            b = (n.center[0] + dx - rr, n.center[1] + dy - rr, n.center[0] + dx + rr, n.center[1] + dy + rr)
            box = b if box is None else (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]),
                                         max(box[3], b[3]))
        return box

    # -- rendering ------------------------------------------------------------
    def _render(self, z: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        nodules, self.nodules = self.nodules, []
        try:
            img = super()._render(z, x, y)
        finally:
            self.nodules = nodules
        xx = x[None, :].astype(np.float32)
        yy = y[:, None].astype(np.float32)
        bw, bd = self.body_half_width, self.body_half_depth
        inner = (xx / (bw - 12)) ** 2 + (yy / (bd - 12)) ** 2 < 1
        lung = (img < -700) & inner
        # below the lungs: liver (right), stomach and spleen (left)
        if z < self.z_bottom + 30:
            soft = inner & ~lung & (img < 200) & (img > -200)
            img[soft & (xx < 0)] = 60.0 + 0.4 * self.contrast
            img[soft & (xx > 40) & (yy > 20)] = 50.0 + 0.4 * self.contrast
            if z < self.z_bottom + 5:
                _disc(img, xx, yy, 60.0, -30.0, 35.0, 20.0, only_below=200.0)
                _disc(img, xx, yy, 60.0, -45.0, 18.0, -1000.0, only_below=200.0)
        if self.neck and z > self.z_top + 10:
            k = min(1.0, (z - self.z_top - 10) / 30)
            a, b = bw * (1 - 0.5 * k), bd * (1 - 0.3 * k)
            img[(xx / a) ** 2 + (yy / b) ** 2 > 1] = -1000.0
        if self.breast and self.z_bottom + 30 < z < self.z_top - 40:
            for s in (-1, 1):
                br = ((xx - s * bw * 0.45) / (bw * 0.28)) ** 2 + ((yy + bd) / 35) ** 2 < 1
                img[br & (img < -500)] = -80.0
                img[br & (np.cos(xx * 0.3) * np.cos(yy * 0.25) > 0.4)] = 25.0
        # heart and great vessels with contrast, pulmonary trunk, nodes, oesophagus
        if self.contrast:
            _disc(img, xx, yy, 25.0, 10.0, 12.0, 60.0 + self.contrast)
            if z < -20:
                _disc(img, xx, yy, -10.0, -25.0, 40.0, 50.0 + 0.8 * self.contrast)
        if -15 < z < 25:
            _disc(img, xx, yy, -15.0, -15.0, 13.0, 45.0 + 0.9 * self.contrast)
        for nx, ny, nz, nr in self.nodes:
            if abs(z - nz) < nr:
                _disc(img, xx, yy, nx, ny, math.sqrt(nr * nr - (z - nz) ** 2), 40.0)
        _disc(img, xx, yy, 5.0, bd - 75.0, 7.0, 40.0)
        # trachea above the carina (z 0), main bronchi just below
        if z > 0:
            _disc(img, xx, yy, 0.0, -5.0, 10.5, 30.0)
            _disc(img, xx, yy, 0.0, -5.0, 8.5, -1000.0)
        elif z > -25:
            for s in (-1, 1):
                px = s * (-z) * 1.2
                _disc(img, xx, yy, px, -3.0, 7.0, 30.0)
                _disc(img, xx, yy, px, -3.0, 5.0, -1000.0)
        # the diaphragm's dome: soft tissue rising into the lung base, ringed by lung
        if z < self.z_bottom + self.dome_height:
            frac = 1 - (z - self.z_bottom) / self.dome_height
            for cx, cy, hw, hd in self.lung_ellipses(z):
                dome = ((xx - cx) / (hw * 0.92 * math.sqrt(frac))) ** 2 + \
                    ((yy - cy) / (hd * 0.92 * math.sqrt(frac))) ** 2 < 1
                img[dome & lung] = 55.0 + 0.4 * self.contrast
            lung = (img < -700) & inner
        for p0, p1, r_out, wall in self.bronchi:
            if not min(p0[2], p1[2]) <= z <= max(p0[2], p1[2]) or p0[2] == p1[2]:
                continue
            t = (z - p0[2]) / (p1[2] - p0[2])
            px, py = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
            r = r_out * (1 - 0.5 * t)
            _disc(img, xx, yy, px, py, r + wall * (1 - 0.4 * t), 30.0, only_below=-500.0)
            _disc(img, xx, yy, px, py, r, -1000.0, only_below=200.0)
        # parenchyma: fissures, small tapering vessels, emphysema, fibrosis
        z0, slope = self.fissure
        img[lung & (np.abs(z - (z0 + slope * yy)) < 0.6)] = -740.0
        for p0, p1, r in self.small_vessels:
            if not min(p0[2], p1[2]) <= z <= max(p0[2], p1[2]) or p0[2] == p1[2]:
                continue
            t = (z - p0[2]) / (p1[2] - p0[2])
            _disc(img, xx, yy, p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1]),
                  r * (1 - 0.6 * t), 40.0 + 0.9 * self.contrast, only_below=-500.0)
        for c, r in self.emphysema:
            if abs(z - c[2]) < r:
                _disc(img, xx, yy, c[0], c[1], math.sqrt(r * r - (z - c[2]) ** 2), -985.0, only_below=-700.0)
        if self.fibrosis:
            tex = np.abs(np.sin(xx * 0.9 + z * 0.3) * np.sin(yy * 0.8 - z * 0.2))
            img[lung & (tex > self.fibrosis) & (yy > 0)] = -350.0
        for side, z_lo, z_hi, share in self.effusion:
            if z_lo < z < z_hi:
                for cx, cy, _hw, hd in self.lung_ellipses(z):
                    if (cx > 0) == (side > 0):
                        img[lung & (yy > cy + hd * (1 - 2 * share)) & (np.sign(xx) == side)] = 12.0
        for ax, ay, az, hx, hy, hz, hu in self.atelectasis:
            if abs(z - az) < hz:
                k = math.sqrt(1 - ((z - az) / hz) ** 2)
                wedge = ((xx - ax) / (hx * k)) ** 2 + ((yy - ay) / (hy * k)) ** 2 < 1
                img[wedge & lung] = hu
        for n in nodules:
            self._nodule(img, xx, yy, z, n, self.shapes.get(n.label, Shape()))
        return img

    @staticmethod
    def _nodule(img, xx, yy, z, n: Nodule, shape: Shape) -> None:
        r = n.diameter_mm / 2
        cx, cy, cz = n.center

        def ball(dx, dy, dz, rad, value):
            d = z - (cz + dz)
            if abs(d) < rad:
                _disc(img, xx, yy, cx + dx, cy + dy, math.sqrt(rad * rad - d * d), value, soft=True)

        if shape.kind in ("lobulated", "mass"):
            ball(0, 0, 0, r * 0.8, n.hu)
            for dx, dy, dz, rs in shape.satellites:
                ball(dx, dy, dz, rs, n.hu)
        else:
            ball(0, 0, 0, r, n.hu)
        if shape.kind == "part-solid":
            ball(0, 0, 0, r * shape.core_frac, SOLID_HU)
        for ux, uy, uz, length in shape.spicules:
            for t in np.arange(r, r + length, 1.0):
                ball(ux * t, uy * t, uz * t, max(0.5, 1.0 - 0.5 * (t - r) / length), n.hu)
