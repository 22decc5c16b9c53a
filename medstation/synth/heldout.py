"""A second, independent chest CT generator, for evaluation only.

The detector trains on ``medstation.synth.phantom`` (elliptic body and lungs,
straight vessel tubes, spherical nodules, white noise). A score measured only on
that generator's own phantoms says little, so this module draws chest CT a
different way and shares none of its shape, vessel, nodule or noise code (only
the DICOM writer is common):

- body and lungs are superellipses whose size follows a smooth profile along z;
  the lung base is a diaphragm dome (a ring of lung around the liver dome on
  the lowest slices), the heart an ellipsoid that indents the left lung;
- the pulmonary vessels are a tree grown recursively from each hilum, tapering
  by Murray's law (r^3 = r1^3 + r2^3), drawn as 3D capsules; airways (trachea,
  main and lobar bronchi) are air tubes with a wall; fissures are oblique sheets;
- parenchyma has a gravity gradient and, in some patients, emphysema bullae;
- around the lung: aorta (arch included) and heart with or without contrast,
  vertebrae with discs, ribs sloping down anteriorly, liver, stomach, spleen,
  the neck above the apices;
- nodules are solid, ground glass, part-solid, calcified, lobulated (radius
  modulated over the sphere) or spiculated, some juxtapleural, some touching a
  vessel; the truth diameter is the sphere-equivalent diameter of the nodule's
  own volume (spicules excluded), integrated over directions;
- the acquisition has a Gaussian slice profile, a soft or sharp kernel and
  spatially correlated noise at a per-study dose.

``HeldOutPhantom`` has the interface the writer uses (``render_slice``,
``truth``), so its studies are real DICOM. Training never imports this module
(``tests/test_architecture`` checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FAMILY = "held-out-v1"


@dataclass(frozen=True)
class Lesion:
    center: tuple[float, float, float]
    radius: float  # mm, mean radius of the body of the lesion
    kind: str  # solid | ground-glass | part-solid | calcified | lobulated | spiculated
    hu: float
    core: float = 0.0  # part-solid: radius of the solid core (mm)
    lobes: tuple = ()  # (amplitude, l, m-phase, polar-phase) terms of the radius modulation
    spikes: tuple = ()  # unit directions and lengths of spicules
    where: str = "parenchyma"  # parenchyma | juxtapleural | juxtavascular

    def radius_towards(self, ux, uy, uz):
        """The surface radius in direction (ux, uy, uz) (arrays of unit vectors)."""
        if not self.lobes:
            return np.full(np.shape(ux), self.radius, np.float32)
        az = np.arctan2(uy, ux)
        pol = np.arccos(np.clip(uz, -1, 1))
        f = np.zeros(np.shape(ux), np.float32)
        for amp, n, p1, p2 in self.lobes:
            f += amp * np.cos(n * az + p1) * np.sin(pol) ** 2 + 0.5 * amp * np.cos(n * pol + p2)
        return self.radius * (1 + f)

    def equivalent_diameter(self) -> float:
        """Sphere-equivalent diameter of the body (spicules excluded), by quadrature over directions."""
        if not self.lobes:
            return 2 * self.radius
        n = 4000
        i = np.arange(n) + 0.5  # Fibonacci sphere: near-uniform directions
        uz = 1 - 2 * i / n
        phi = i * math.pi * (3 - math.sqrt(5))
        s = np.sqrt(1 - uz * uz)
        r = self.radius_towards(s * np.cos(phi), s * np.sin(phi), uz).astype(np.float64)
        volume = 4 * math.pi / 3 * float(np.mean(r ** 3))
        return 2 * (3 * volume / (4 * math.pi)) ** (1 / 3)


class HeldOutPhantom:
    """One synthetic patient of the held-out family; ``seed`` fixes everything."""

    def __init__(self, seed: int, *, lesions: int | None = None) -> None:
        rng = np.random.default_rng([seed, 31337])
        self.seed = seed
        self.a = float(rng.uniform(150, 190))  # body half-width
        self.b = float(rng.uniform(100, 130))  # body half-depth
        self.p = float(rng.uniform(2.3, 3.2))  # superellipse exponent
        self.fat = float(rng.uniform(6, 28))
        self.apex = float(rng.uniform(140, 180))
        self.base = -float(rng.uniform(170, 230))
        self.dome = float(rng.uniform(35, 60))
        self.lung_hu = float(rng.uniform(-890, -820))
        self.contrast = float(rng.choice([0.0, 0.0, 150.0, 260.0]))
        self.kernel = str(rng.choice(["soft", "standard", "sharp"]))
        self.noise = float(rng.uniform(12, 45))
        self.noise_grain = float(rng.uniform(0.6, 1.3))  # correlation length (pixels)
        self.breast = bool(rng.random() < 0.3)
        self.bullae = [(self._lung_point(rng), float(rng.uniform(3, 12)))
                       for _ in range(int(rng.integers(8, 40)) if rng.random() < 0.3 else 0)]
        self.bullae = [(c, r) for c, r in self.bullae if c is not None]
        self.segments = self._grow_vessels(rng)
        self.airways = self._airways()
        self.fissures = [(s, float(rng.uniform(-40, 10)), float(rng.uniform(0.6, 1.0))) for s in (-1, 1)]
        count = int(rng.integers(3, 8)) if lesions is None else lesions
        self.lesions = self._place_lesions(rng, count)

    # -- anatomy ----------------------------------------------------------
    def _half(self, z: float) -> tuple[float, float]:
        """Body half width and depth at ``z``: the neck above the apices."""
        if z > self.apex + 25:
            k = min(1.0, (z - self.apex - 25) / 40)
            return self.a * (1 - 0.55 * k), self.b * (1 - 0.35 * k)
        return self.a, self.b

    def _lung_box(self, side: int, z: float) -> tuple[float, float, float, float] | None:
        """Centre x, y and half sizes of one lung at ``z`` (before the dome and the heart)."""
        t = (z - self.base) / (self.apex - self.base)
        if t <= 0 or t >= 1:
            return None
        prof = math.sin(math.pi * min(1.0, t / 0.7) / 2) ** 0.5 * min(1.0, (1 - t) / 0.35) ** 0.6
        if prof < 0.08:
            return None
        hw = self.a * 0.34 * (0.3 + 0.7 * prof)
        hd = self.b * 0.68 * (0.3 + 0.7 * prof)
        return side * self.a * 0.45, self.b * 0.05, hw, hd

    def _heart(self):
        return (self.a * 0.12, -self.b * 0.25, self.base + 110.0), (self.a * 0.36, self.b * 0.45, 62.0)

    def _in_lung(self, x, y, z, side: int):
        box = self._lung_box(side, z)
        if box is None:
            return np.zeros(np.broadcast(x, y).shape, bool)
        cx, cy, hw, hd = box
        u = np.abs((x - cx) / hw) ** 2.2 + np.abs((y - cy) / hd) ** 2.2
        inside = u < 1.0
        dome = self.base + self.dome * np.clip(1 - ((x - cx) / hw) ** 2 - ((y - cy) / hd) ** 2, 0, 1)
        inside &= z > dome
        (hx, hy, hz), (ra, rb, rc) = self._heart()
        inside &= ((x - hx) / ra) ** 2 + ((y - hy) / rb) ** 2 + ((z - hz) / rc) ** 2 > 1.0
        inside &= np.abs(x) > 18.0  # mediastinum
        return inside

    def lung(self, x, y, z):
        return self._in_lung(x, y, z, -1) | self._in_lung(x, y, z, 1)

    def _lung_point(self, rng) -> tuple[float, float, float] | None:
        for _ in range(200):
            p = (float(rng.uniform(-self.a, self.a)), float(rng.uniform(-self.b, self.b)),
                 float(rng.uniform(self.base, self.apex)))
            if bool(self.lung(np.float32(p[0]), np.float32(p[1]), p[2])):
                return p
        return None

    def _grow_vessels(self, rng) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
        """(start, end, r_start, r_end) capsules: a tree per hilum, tapering by Murray's law."""
        out: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        stack = []
        for side in (-1, 1):
            hilum = np.array([side * 30.0, self.b * 0.05, self.base + 150.0])
            for _ in range(9):
                v = rng.normal(size=3) * [0.5, 0.7, 1.0] + [side * 0.8, 0.0, 0.0]
                stack.append((hilum, v / np.linalg.norm(v), float(rng.uniform(3.5, 5.5)), 0))
        while stack and len(out) < 3000:
            start, direction, r, depth = stack.pop(0)
            length = r * float(rng.uniform(5, 9))
            end = start + direction * length
            r_end = r * 0.93
            if depth > 0 and not bool(self.lung(np.float32(end[0]), np.float32(end[1]), float(end[2]))):
                continue
            out.append((start, end, r, r_end))
            if r_end < 0.6 or depth > 12:
                continue
            frac = float(rng.uniform(0.3, 0.5))  # share of the flow to the smaller child
            r1 = r_end * (1 - frac) ** (1 / 3)
            r2 = r_end * frac ** (1 / 3)
            axis = np.cross(direction, rng.normal(size=3))
            axis /= np.linalg.norm(axis) + 1e-9
            for rr, ang in ((r1, float(rng.uniform(0.2, 0.5))), (r2, -float(rng.uniform(0.5, 0.9)))):
                d2 = _rotate(direction, axis, ang)
                stack.append((end, d2, rr, depth + 1))
        return out

    def _airways(self):
        carina = np.array([0.0, self.b * 0.1, self.base + 175.0])
        top = carina + [0, -10, 160]
        out = [(top, carina, 9.0, 8.0)]
        for side in (-1, 1):
            hil = carina + [side * 40.0, 8.0, -25.0]
            out.append((carina, hil, 6.0, 5.0))
            for d in ([side * 0.4, 0.2, 1.0], [side * 0.6, -0.4, -0.6], [side * 0.3, 0.5, -1.0]):
                v = np.array(d) / np.linalg.norm(d)
                out.append((hil, hil + v * 30.0, 3.5, 2.5))
        return out

    def _place_lesions(self, rng, count: int) -> list[Lesion]:
        out: list[Lesion] = []
        tries = 0
        while len(out) < count and tries < 3000:
            tries += 1
            where = str(rng.choice(["parenchyma", "parenchyma", "juxtapleural", "juxtavascular"]))
            kind = str(rng.choice(["solid", "solid", "ground-glass", "part-solid", "calcified",
                                   "lobulated", "spiculated"]))
            d = float(rng.uniform(4.0, 8.0)) if kind == "calcified" else float(np.exp(rng.uniform(np.log(4),
                                                                                                 np.log(28))))
            r = d / 2
            c = self._lung_point(rng)
            if c is None:
                continue
            c = np.array(c)
            if where == "juxtavascular":
                s, e, r0, _ = self.segments[int(rng.integers(len(self.segments)))]
                if r0 < 1.5:
                    continue
                p = s + (e - s) * float(rng.uniform(0.2, 0.8))
                off = np.cross(e - s, rng.normal(size=3))
                c = p + off / (np.linalg.norm(off) + 1e-9) * (r0 + 0.8 * r)
            elif where == "juxtapleural":  # walk outwards until the sphere touches the pleura
                out_dir = np.array([np.sign(c[0]) or 1.0, float(rng.uniform(-0.6, 0.6)), 0.0])
                out_dir /= np.linalg.norm(out_dir)
                for _ in range(200):
                    nxt = c + out_dir * 1.0
                    if not self._ball_in_lung(nxt, r * 0.85):
                        break
                    c = nxt
            if not self._ball_in_lung(c, r * (0.85 if where == "juxtapleural" else 1.0)):
                continue
            if any(np.linalg.norm(c - np.array(o.center)) < r + o.radius + 8 for o in out):
                continue
            hu = {"solid": rng.uniform(0, 60), "ground-glass": rng.uniform(-700, -450),
                  "part-solid": rng.uniform(-650, -450), "calcified": rng.uniform(300, 700),
                  "lobulated": rng.uniform(10, 60), "spiculated": rng.uniform(10, 60)}[kind]
            lobes: tuple = ()
            if kind in ("lobulated", "spiculated"):
                lobes = tuple((float(rng.uniform(0.08, 0.18)), int(rng.integers(2, 5)),
                               float(rng.uniform(0, 6.28)), float(rng.uniform(0, 6.28))) for _ in range(2))
            spikes: tuple = ()
            if kind == "spiculated":
                dirs = rng.normal(size=(int(rng.integers(5, 10)), 3))
                dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
                spikes = tuple((tuple(v), float(rng.uniform(0.6, 1.4) * r + 3)) for v in dirs)
            core = float(rng.uniform(0.3, 0.6) * r) if kind == "part-solid" else 0.0
            out.append(Lesion(tuple(float(v) for v in c), r, kind, float(hu), core, lobes, spikes, where))
        return out

    def add_mass(self, rng) -> Lesion | None:
        """One lobulated solid mass of 35-90 mm on the mediastinum (the hilum) or the chest wall,
        drawn over whatever it lies on (this family's own placement, nothing shared with training);
        it replaces a lesion it would overlap. Returns it, or None when none fitted."""
        for _ in range(400):
            d = float(np.exp(rng.uniform(np.log(35.0), np.log(90.0))))
            r = d / 2
            side = int(rng.choice([-1, 1]))
            z = float(rng.uniform(self.base + self.dome + 0.5 * r, self.apex - 0.6 * r))
            box = self._lung_box(side, z)
            if box is None:
                continue
            cx, cy, hw, hd = box
            if rng.random() < 0.6:  # its medial edge crosses the mediastinal line (|x| = 18 mm)
                where = "juxtamediastinal"
                x = side * (18.0 + r * float(rng.uniform(0.55, 0.85)))
                y = cy + float(rng.uniform(-0.4, 0.3)) * hd
            else:  # its outer edge in the chest wall
                where = "chest wall"
                ang = float(rng.uniform(-1.2, 1.2))
                x = cx + side * (hw - r * float(rng.uniform(0.6, 0.9))) * math.cos(ang)
                y = cy + (hd - r * float(rng.uniform(0.6, 0.9))) * math.sin(ang)
            c = np.array([x, y, z])
            if not bool(self.lung(np.float32(c[0]), np.float32(c[1]), c[2])):
                continue  # its centre in the lung as drawn (not the heart, the dome or the spine)
            lobes = tuple((float(rng.uniform(0.06, 0.14)), int(rng.integers(2, 5)),
                           float(rng.uniform(0, 6.28)), float(rng.uniform(0, 6.28))) for _ in range(2))
            mass = Lesion(tuple(float(v) for v in c), r, "solid", float(rng.uniform(20, 55)), 0.0, lobes, (),
                          where)
            self.lesions = [o for o in self.lesions
                            if np.linalg.norm(c - np.array(o.center)) > r * 1.2 + o.radius + 8] + [mass]
            return mass
        return None

    def _ball_in_lung(self, c, r) -> bool:
        pts = c + r * np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1],
                                [0, 0, -1]])
        return bool(all(self.lung(np.float32(p[0]), np.float32(p[1]), float(p[2])) for p in pts))

    # -- the writer's interface ---------------------------------------------
    @property
    def nodules(self):
        return self.lesions

    def truth(self) -> list[dict]:
        out = []
        for n, les in enumerate(self.lesions, start=1):
            d = les.equivalent_diameter()
            out.append({"center": list(les.center), "diameter_mm": round(d, 2),
                        "volume_mm3": round(math.pi / 6 * d ** 3, 1), "hu": round(les.hu, 1),
                        "type": les.kind, "where": les.where, "label": f"H{n}",
                        "solid_diameter_mm": round(2 * les.core, 2) if les.core else None,
                        "family": FAMILY})
        return out

    def render_slice(self, z: float, x: np.ndarray, y: np.ndarray, thickness: float = 1.0) -> np.ndarray:
        """HU on the grid at ``z``: a Gaussian slice profile (FWHM = thickness), the kernel, noise."""
        sigma = thickness / 2.355
        offs = np.linspace(-1.5 * sigma, 1.5 * sigma, max(1, int(math.ceil(thickness / 0.6))) | 1)
        w = np.exp(-0.5 * (offs / max(sigma, 1e-3)) ** 2)
        w /= w.sum()
        img = np.zeros((y.size, x.size), np.float32)
        for o, wt in zip(offs, w):
            img += np.float32(wt) * self._draw(float(z + o), x.astype(np.float32), y.astype(np.float32))
        px = float(abs(x[1] - x[0])) if x.size > 1 else 1.0
        soft = _blur(img, {"soft": 1.0, "standard": 0.7, "sharp": 0.5}[self.kernel] / px * 0.8)
        if self.kernel == "sharp":
            img = img + 0.7 * (img - soft)
        else:
            img = soft
        rng = np.random.default_rng([self.seed, int(round(z * 1000)) & 0x7FFFFFFF, x.size])
        noise = _blur(rng.standard_normal(img.shape).astype(np.float32), self.noise_grain)
        noise *= self.noise / max(float(noise.std()), 1e-6)
        return img + noise

    def _draw(self, z: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xx, yy = x[None, :], y[:, None]
        a, b = self._half(z)
        img = np.full((y.size, x.size), -1000.0, np.float32)
        body = np.abs(xx / a) ** self.p + np.abs(yy / b) ** self.p < 1
        if self.breast and z < self.apex - 40 and z > self.base + 20:
            for s in (-1, 1):
                body |= ((xx - s * a * 0.45) / (a * 0.3)) ** 2 + ((yy + b * 0.9) / 40) ** 2 < 1
        img[body] = -105.0
        inner = np.abs(xx / (a - self.fat)) ** self.p + np.abs(yy / (b - self.fat)) ** self.p < 1
        img[inner] = 50.0
        if self.breast:
            gland = body & ~inner & (yy < -b * 0.7) & (np.cos(xx * 0.2) * np.cos(yy * 0.23) > 0.3)
            img[gland] = 20.0
        # abdomen below the domes: liver right, spleen and stomach left
        below = inner & (z < self.base + self.dome + 5)
        img[below & (xx < 10)] = 58.0 + 0.4 * self.contrast
        img[below & (xx > 30) & (yy > 10)] = 50.0 + 0.4 * self.contrast
        stomach = below & (((xx - self.a * 0.4) / 45) ** 2 + ((yy + 30) / 35) ** 2 < 1)
        img[stomach] = 15.0
        img[stomach & (yy < -45)] = -1000.0
        lung = self.lung(xx, yy, z) & inner
        grad = 40.0 * np.clip((yy + self.b * 0.6) / (1.2 * self.b), 0, 1)
        img = np.where(lung, self.lung_hu + grad, img).astype(np.float32)
        for (c, r) in self.bullae:
            _ball(img, xx, yy, z, np.asarray(c), r, -985.0, mask=lung)
        for s, z0, slope in self.fissures:
            sheet = lung & (np.sign(xx) == s) & (np.abs(z - (z0 + slope * (yy - 0.0))) < 0.7)
            img[sheet] = -720.0
        # heart, great vessels, spine, ribs (over everything)
        (hx, hy, hz), (ra, rb, rc) = self._heart()
        heart = ((xx - hx) / ra) ** 2 + ((yy - hy) / rb) ** 2 + ((z - hz) / rc) ** 2 < 1
        img[heart] = 40.0 + self.contrast * 0.8
        blood = 45.0 + self.contrast
        for seg in self._aorta():
            _capsule(img, xx, yy, z, *seg, blood)
        vb_y = b * 0.62
        vb = (np.abs(xx) < 18) & (np.abs(yy - vb_y) < 16)
        disc = (z % 28.0) < 4.0
        img[vb] = 80.0 if disc else 230.0
        img[vb & ~((np.abs(xx) < 16) & (np.abs(yy - vb_y) < 14)) & ~disc] = 650.0
        img[(xx ** 2 + (yy - vb_y - 26) ** 2) < 64] = 12.0  # canal
        self._ribs(img, xx, yy, z, a, b)
        for s, e, r0, r1 in self.segments:
            _capsule(img, xx, yy, z, s, e, r0, r1, 40.0 + 0.9 * self.contrast, mask=lung)
        for s, e, r0, r1 in self.airways:
            _capsule(img, xx, yy, z, s, e, r0 + 1.5, r1 + 1.5, 30.0)
            _capsule(img, xx, yy, z, s, e, r0, r1, -1000.0)
        for les in self.lesions:
            self._lesion(img, xx, yy, z, les)
        return img

    def _aorta(self):
        top = self.base + 215.0
        asc = (np.array([10.0, -25.0, self.base + 120]), np.array([10.0, -25.0, top]), 15.0, 15.0)
        arch = (np.array([10.0, -25.0, top]), np.array([22.0, 30.0, top + 5]), 13.0, 13.0)
        desc = (np.array([22.0, 30.0, top + 5]), np.array([15.0, 40.0, self.base - 40]), 12.0, 11.0)
        return [asc, arch, desc]

    def _ribs(self, img, xx, yy, z, a, b):
        for level in range(12):
            z_post = self.apex + 10 - level * 24.0
            for s in (-1, 1):
                # angle from the back (0) round to the front (2.4 rad), dropping 45 mm
                phi = (z_post - z) / 45.0 * 2.4
                if not 0.15 < phi < 2.4:
                    continue
                for dphi in (-0.06, 0.0, 0.06):
                    f = phi + dphi
                    px = s * (a - self.fat - 6) * math.sin(f) * 0.98
                    py = (b - self.fat - 6) * math.cos(f)
                    m = (xx - px) ** 2 + (yy - py) ** 2
                    img[m < 16] = 700.0
                    img[m < 6] = 220.0

    def _lesion(self, img, xx, yy, z, les: Lesion):
        cx, cy, cz = les.center
        reach = les.radius * 1.5 + (max((ln for _, ln in les.spikes), default=0.0))
        if abs(z - cz) > reach:
            return
        x, y = xx[0], yy[:, 0]
        j0, j1 = np.searchsorted(x, [cx - reach, cx + reach])
        i0, i1 = np.searchsorted(y, [cy - reach, cy + reach])
        if j0 >= j1 or i0 >= i1:
            return
        sub = img[i0:i1, j0:j1]
        dx = x[j0:j1][None, :] - cx
        dy = y[i0:i1][:, None] - cy
        dz = np.float32(z - cz)
        d = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-6
        rad = les.radius_towards(dx / d, dy / d, dz / d)
        px = float(abs(x[1] - x[0])) if x.size > 1 else 1.0
        w = np.clip((rad - d) / px + 0.5, 0, 1)
        if les.kind == "part-solid":
            sub[...] = np.where(w > 0, sub * (1 - w) + les.hu * w, sub)
            wc = np.clip((les.core - d) / px + 0.5, 0, 1)
            sub[...] = sub * (1 - wc) + 35.0 * wc
            return
        value = np.float32(les.hu)
        if les.kind == "ground-glass":  # ground glass adds to the lung behind it
            sub[...] = np.maximum(sub, sub * (1 - w) + value * w)
        else:
            sub[...] = sub * (1 - w) + value * w
        for (u, length) in les.spikes:
            start = np.array(les.center) + np.array(u) * les.radius * 0.8
            _capsule(img, xx, yy, z, start, start + np.array(u) * length, 1.0, 0.3, float(les.hu))


def held_out_phantom(seed: int) -> HeldOutPhantom:
    return HeldOutPhantom(seed)


# -- drawing helpers (own code: nothing shared with the training generator) ----

def _rotate(v, axis, angle):
    """Rodrigues' rotation of ``v`` about unit ``axis``."""
    return (v * math.cos(angle) + np.cross(axis, v) * math.sin(angle)
            + axis * float(np.dot(axis, v)) * (1 - math.cos(angle)))


def _capsule(img, xx, yy, z, s, e, r0, r1, value, *, mask=None):
    """Paint the cross-section at ``z`` of a tapered tube from ``s`` (radius r0) to ``e`` (r1)."""
    lo_z, hi_z = min(s[2], e[2]) - max(r0, r1), max(s[2], e[2]) + max(r0, r1)
    if not lo_z <= z <= hi_z:
        return
    d = e - s
    L2 = float(d @ d)
    if L2 < 1e-9:
        return
    # the part of the axis within reach of this plane
    if abs(d[2]) > 1e-6:
        ts = sorted(((z - max(r0, r1) - s[2]) / d[2], (z + max(r0, r1) - s[2]) / d[2]))
        t_lo, t_hi = max(0.0, ts[0]), min(1.0, ts[1])
    else:
        t_lo, t_hi = 0.0, 1.0
    if t_lo > t_hi:
        return
    pa, pb = s + d * t_lo, s + d * t_hi
    rmax = max(r0, r1)
    x, y = xx[0], yy[:, 0]
    j0, j1 = np.searchsorted(x, [min(pa[0], pb[0]) - rmax, max(pa[0], pb[0]) + rmax])
    i0, i1 = np.searchsorted(y, [min(pa[1], pb[1]) - rmax, max(pa[1], pb[1]) + rmax])
    if j0 >= j1 or i0 >= i1:
        return
    px = x[j0:j1][None, :] - s[0]
    py = y[i0:i1][:, None] - s[1]
    pz = np.float32(z - s[2])
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / L2, 0, 1)
    dist2 = (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2
    r = r0 + (r1 - r0) * t
    inside = dist2 < r * r
    if mask is not None:
        inside &= mask[i0:i1, j0:j1]
    img[i0:i1, j0:j1][inside] = value


def _ball(img, xx, yy, z, c, r, value, *, mask=None):
    if abs(z - c[2]) >= r:
        return
    rr = math.sqrt(r * r - (z - c[2]) ** 2)
    inside = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 < rr * rr
    if mask is not None:
        inside = inside & mask
    img[inside] = value


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (``sigma`` in pixels), edges repeated."""
    if sigma < 0.2:
        return img
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(img)
        n = img.shape[axis]
        for i, kv in enumerate(k):
            acc += kv * (p[i:i + n] if axis == 0 else p[:, i:i + n])
        out = acc
    return out
