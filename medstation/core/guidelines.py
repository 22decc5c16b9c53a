"""Nodule management guidelines as data: Lung-RADS v2022 (screening) and Fleischner 2017 (incidental).

Both tables are written out row by row as published (ACR Lung-RADS v2022
assessment categories; MacMahon et al., Radiology 2017, Fleischner Society
guidelines for incidental pulmonary nodules), and the functions below only look
rows up. Sizes are what each guideline asks for:

- **Lung-RADS**: the mean of long and short axis, rounded to 0.1 mm (the
  segmentation's ``mean_diameter_mm``); part-solid nodules also by their solid
  component's mean diameter. Growth is an increase of the mean diameter of more
  than 1.5 mm within 12 months.
- **Fleischner**: the mean of long and short axis rounded to the nearest
  millimetre; risk (low / high) is the clinician's, by default high (the
  conservative branch) when unknown.

What a program cannot see is out of scope: benign calcification patterns and fat
(category 1) only when the segmentation typed the nodule ``calcified``;
perifissural and airway nodules, atypical cysts and 4X's "additional features"
need a reader. Not for clinical use: the functions are decision support for a
reader who checks them.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# -- Lung-RADS v2022 --------------------------------------------------------------------------

#: management per category and the interval to the next low-dose CT (months; None: no LDCT date)
LUNG_RADS_MANAGEMENT = {
    "0": ("Additional lung cancer screening CT images and/or comparison to prior chest CT examinations "
          "is needed; 1-3 month LDCT for findings suggesting an infectious or inflammatory process", 1),
    "1": ("Continue annual screening with LDCT in 12 months", 12),
    "2": ("Continue annual screening with LDCT in 12 months", 12),
    "3": ("6-month LDCT", 6),
    "4A": ("3-month LDCT; PET/CT may be considered if there is a >= 8 mm solid nodule or solid component", 3),
    "4B": ("Referral for further clinical evaluation: diagnostic chest CT with or without contrast; PET/CT "
           "may be considered if there is a >= 8 mm solid nodule or solid component; tissue sampling", None),
}


@dataclass(frozen=True)
class LungRadsRow:
    """One published rule: nodule type, status, mean-diameter range [lo, hi) of the nodule (and of the
    solid component for part-solid nodules), and its category."""

    category: str
    kind: str  # solid | part-solid | ground-glass
    status: str  # baseline | new | growing | stable
    lo: float = 0.0
    hi: float = math.inf
    solid_lo: float = 0.0
    solid_hi: float = math.inf
    text: str = ""


#: the assessment categories for solid, part-solid and non-solid nodules, as published
LUNG_RADS_2022: tuple[LungRadsRow, ...] = (
    # solid
    LungRadsRow("2", "solid", "baseline", 0, 6, text="solid nodule(s) < 6 mm (< 113 mm3) at baseline"),
    LungRadsRow("2", "solid", "new", 0, 4, text="solid nodule(s) new < 4 mm (< 34 mm3)"),
    LungRadsRow("3", "solid", "baseline", 6, 8, text="solid nodule(s) >= 6 to < 8 mm at baseline"),
    LungRadsRow("3", "solid", "new", 4, 6, text="solid nodule(s) new 4 mm to < 6 mm"),
    LungRadsRow("4A", "solid", "baseline", 8, 15, text="solid nodule(s) >= 8 to < 15 mm at baseline"),
    LungRadsRow("4A", "solid", "growing", 0, 8, text="solid nodule(s) growing < 8 mm"),
    LungRadsRow("4A", "solid", "new", 6, 8, text="solid nodule(s) new 6 to < 8 mm"),
    LungRadsRow("4B", "solid", "baseline", 15, math.inf, text="solid nodule(s) >= 15 mm at baseline"),
    LungRadsRow("4B", "solid", "new", 8, math.inf, text="solid nodule(s) new >= 8 mm"),
    LungRadsRow("4B", "solid", "growing", 8, math.inf, text="solid nodule(s) growing >= 8 mm"),
    # part-solid (lo/hi: total mean diameter; solid_lo/solid_hi: the solid component's)
    LungRadsRow("2", "part-solid", "baseline", 0, 6,
                text="part-solid nodule(s) < 6 mm total mean diameter at baseline"),
    LungRadsRow("3", "part-solid", "baseline", 6, math.inf, 0, 6, text="part-solid nodule(s) >= 6 mm total "
                "mean diameter with solid component < 6 mm at baseline"),
    LungRadsRow("3", "part-solid", "new", 0, 6, text="part-solid nodule(s) new < 6 mm total mean diameter"),
    LungRadsRow("4A", "part-solid", "baseline", 6, math.inf, 6, 8, text="part-solid nodule(s) >= 6 mm with "
                "solid component >= 6 to < 8 mm at baseline"),
    LungRadsRow("4A", "part-solid", "new", 6, math.inf, 0, 4, text="part-solid nodule(s) with a new < 4 mm "
                "solid component"),
    LungRadsRow("4A", "part-solid", "growing", 0, math.inf, 0, 4, text="part-solid nodule(s) with a growing "
                "< 4 mm solid component"),
    LungRadsRow("4B", "part-solid", "baseline", 0, math.inf, 8, math.inf, text="part-solid nodule(s) with "
                "solid component >= 8 mm at baseline"),
    LungRadsRow("4B", "part-solid", "new", 6, math.inf, 4, math.inf, text="part-solid nodule(s) with a new "
                ">= 4 mm solid component"),
    LungRadsRow("4B", "part-solid", "growing", 0, math.inf, 4, math.inf, text="part-solid nodule(s) with a "
                "growing >= 4 mm solid component"),
    # non-solid (ground glass)
    LungRadsRow("2", "ground-glass", "baseline", 0, 30, text="non-solid nodule(s) < 30 mm at baseline"),
    LungRadsRow("2", "ground-glass", "new", 0, 30, text="non-solid nodule(s) < 30 mm new"),
    LungRadsRow("2", "ground-glass", "growing", 0, 30, text="non-solid nodule(s) < 30 mm growing"),
    LungRadsRow("2", "ground-glass", "stable", 30, math.inf, text="non-solid nodule(s) >= 30 mm unchanged or "
                "slowly growing"),
    # v2022 names only ">= 30 mm unchanged or slowly growing" (2) and ">= 30 mm on baseline CT or
    # new" (3); for one that grows by the growth definition the text is silent: read as 3, and said
    LungRadsRow("3", "ground-glass", "growing", 30, math.inf,
                text="non-solid nodule(s) >= 30 mm growing (v2022 is silent on growth beyond 'slowly "
                "growing'; read as category 3, as for a new one)"),
    LungRadsRow("3", "ground-glass", "baseline", 30, math.inf,
                text="non-solid nodule(s) >= 30 mm at baseline"),
    LungRadsRow("3", "ground-glass", "new", 30, math.inf, text="non-solid nodule(s) >= 30 mm new"),
)

#: Lung-RADS v2022, "Nodule growth": "An increase in mean diameter size of > 1.5 mm (> 2 mm3) within
#: a 12-month interval"
GROWTH_MM = 1.5


def mean_diameter_01(mm: float) -> float:
    """Lung-RADS v2022, "Nodule size": "report mean nodule diameter to one decimal point": half up, in
    decimal (14.95 -> 15.0; binary floating point would give 14.9)."""
    return float(Decimal(repr(float(mm))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def lung_rads_growth(prior_mean_mm: float, current_mean_mm: float, days: float) -> bool:
    """Growth as Lung-RADS v2022 defines it: the mean diameter up by more than 1.5 mm within 12 months
    (over a longer interval the increase is scaled to 12 months)."""
    if days <= 0:
        return False
    increase = mean_diameter_01(current_mean_mm) - mean_diameter_01(prior_mean_mm)
    per_year = increase if days <= 366 else increase * 365.25 / days
    return round(per_year, 6) > GROWTH_MM


def lung_rads_slow_growth(means_mm: list[float]) -> bool:
    """Lung-RADS v2022, category 4B: a "slow growing solid or part solid nodule that demonstrates growth
    over multiple screening exams": here, three or more exams whose mean diameter rose by more than
    1.5 mm from the first to the last, never falling back, without growth in any one interval (that
    would be "growing"). The text sets no number for "over multiple exams": this reading is named in
    the output."""
    if len(means_mm) < 3:
        return False
    m = [mean_diameter_01(v) for v in means_mm]
    return all(b >= a for a, b in zip(m, m[1:])) and round(m[-1] - m[0], 6) > GROWTH_MM


@dataclass(frozen=True)
class LungRadsResult:
    category: str
    management: str
    interval_months: int | None
    next_ct_date: str  # YYYY-MM-DD, "" when no LDCT is scheduled
    rule: str

    def to_dict(self) -> dict:
        return {"category": self.category, "management": self.management, "next_ct_date": self.next_ct_date,
                "interval_months": self.interval_months, "rule": self.rule}


def lung_rads(kind: str, mean_mm: float, *, solid_mm: float = 0.0, status: str = "baseline",
              prior_category: str | None = None, prior_mean_mm: float | None = None,
              prior_solid_mm: float = 0.0, exam_date: str = "") -> LungRadsResult:
    """The category of one nodule. ``kind``: solid, part-solid, ground-glass or calcified; ``mean_mm``
    the mean diameter (rounded here to 0.1 mm, half up); ``status``: baseline (first screen), new,
    growing, slow-growing (growth over several exams, none in one interval) or stable (against the
    prior); ``prior_category``: the category assigned at the prior visit.

    v2022 stepped management, as written: category 3 includes a "Category 4A lesion that is stable or
    decreased in size at 3-month follow-up CT"; category 2 includes a "Category 3 lesion that is stable
    or decreased in size at 6-month follow-up CT". A stable nodule of any other prior category (2 or
    4B) is sized as at baseline ("When a nodule crosses a new size threshold ... reclassified based on
    size")."""
    kind = {"nonsolid": "ground-glass", "non-solid": "ground-glass", "ggn": "ground-glass"}.get(kind, kind)
    mean = mean_diameter_01(mean_mm)
    solid = mean_diameter_01(solid_mm)
    if kind == "calcified":
        return _result("1", exam_date, "nodule with benign (calcified) appearance")
    if status == "stable" and prior_category in ("3", "4A"):
        by_size = lung_rads(kind, mean, solid_mm=solid, status="baseline", exam_date=exam_date)
        before = (lung_rads(kind, prior_mean_mm, solid_mm=prior_solid_mm).category
                  if prior_mean_mm is not None else by_size.category)
        if _ORDER[by_size.category] > _ORDER[before]:  # crossed a size threshold since: by size
            return _result(by_size.category, exam_date, by_size.rule + " (stable, but past the size "
                           f"threshold of its prior category {prior_category}: reclassified by size)")
        if prior_category == "4A":
            return _result("3", exam_date, "category 4A lesion stable or decreased in size at 3-month "
                           "follow-up (v2022 stepped management)")
        return _result("2", exam_date, "category 3 lesion stable or decreased in size at 6-month follow-up "
                       "(v2022 stepped management)")
    if status == "slow-growing" and kind in ("solid", "part-solid"):
        return _result("4B", exam_date, f"slow growing {kind} nodule: growth over multiple screening exams "
                       "(v2022 4B; read here as a rise of > 1.5 mm mean diameter over 3 or more exams)")
    if status == "slow-growing":  # non-solid: v2022 category 2 "unchanged or slowly growing"
        status = "stable"
    lookup = "baseline" if status == "stable" and kind != "ground-glass" else status
    for row in LUNG_RADS_2022:
        if row.kind != kind or row.status != lookup:
            continue
        if not row.lo <= mean < row.hi:
            continue
        if kind == "part-solid" and not row.solid_lo <= solid < row.solid_hi:
            continue
        return _result(row.category, exam_date, row.text)
    if kind == "ground-glass" and status == "stable":
        return _result("2", exam_date, "non-solid nodule(s) < 30 mm unchanged")
    raise ValueError(f"no Lung-RADS v2022 rule for a {status} {kind} nodule of {mean} mm"
                     + (f" (solid component {solid} mm)" if kind == "part-solid" else ""))


_ORDER = {"0": 0, "1": 1, "2": 2, "3": 3, "4A": 4, "4B": 5, "4X": 6}


def _result(category: str, exam_date: str, rule: str) -> LungRadsResult:
    management, months = LUNG_RADS_MANAGEMENT[category]
    return LungRadsResult(category, management, months, add_months(exam_date, months) if months else "", rule)


def add_months(date: str, months: int | None) -> str:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` plus whole months, as ``YYYY-MM-DD`` ("" if no date)."""
    if not date or not months:
        return ""
    digits = date.replace("-", "")
    d = _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    month = d.month - 1 + months
    year, month = d.year + month // 12, month % 12 + 1
    day = min(d.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
                      31, 31, 30, 31, 30, 31][month - 1])
    return _dt.date(year, month, day).isoformat()


# -- Fleischner 2017 --------------------------------------------------------------------------

@dataclass(frozen=True)
class FleischnerRow:
    kind: str  # solid | ground-glass | part-solid | subsolid (multiple subsolid nodules)
    multiplicity: str  # single | multiple
    size: str  # "<6" | "6-8" | ">8" (solid) or "<6" | ">=6" (subsolid)
    risk: str  # low | high | any
    recommendation: str


FLEISCHNER_2017: tuple[FleischnerRow, ...] = (
    FleischnerRow("solid", "single", "<6", "low", "No routine follow-up"),
    FleischnerRow("solid", "single", "<6", "high", "Optional CT at 12 months"),
    FleischnerRow("solid", "single", "6-8", "low", "CT at 6-12 months, then consider CT at 18-24 months"),
    FleischnerRow("solid", "single", "6-8", "high", "CT at 6-12 months, then CT at 18-24 months"),
    FleischnerRow("solid", "single", ">8", "low", "Consider CT at 3 months, PET/CT, or tissue sampling"),
    FleischnerRow("solid", "single", ">8", "high", "Consider CT at 3 months, PET/CT, or tissue sampling"),
    FleischnerRow("solid", "multiple", "<6", "low", "No routine follow-up"),
    FleischnerRow("solid", "multiple", "<6", "high", "Optional CT at 12 months"),
    FleischnerRow("solid", "multiple", "6-8", "low", "CT at 3-6 months, then consider CT at 18-24 months"),
    FleischnerRow("solid", "multiple", "6-8", "high", "CT at 3-6 months, then at 18-24 months"),
    FleischnerRow("solid", "multiple", ">8", "low", "CT at 3-6 months, then consider CT at 18-24 months"),
    FleischnerRow("solid", "multiple", ">8", "high", "CT at 3-6 months, then at 18-24 months"),
    FleischnerRow("ground-glass", "single", "<6", "any", "No routine follow-up"),
    FleischnerRow("ground-glass", "single", ">=6", "any", "CT at 6-12 months to confirm persistence, then CT "
                  "every 2 years until 5 years"),
    FleischnerRow("part-solid", "single", "<6", "any", "No routine follow-up"),
    FleischnerRow("part-solid", "single", ">=6", "any",
                  "CT at 3-6 months to confirm persistence. If unchanged and solid component remains < 6 mm, "
                  "annual CT should be performed for 5 years"),
    FleischnerRow("subsolid", "multiple", "<6", "any", "CT at 3-6 months. If stable, consider CT at 2 and 4 "
                  "years"),
    FleischnerRow("subsolid", "multiple", ">=6", "any",
                  "CT at 3-6 months. Subsequent management based on the most suspicious nodule(s)"),
)


def fleischner_size(kind: str, mean_mm: float) -> str:
    """The published size bin of a mean diameter rounded to the nearest millimetre."""
    d = math.floor(float(mean_mm) + 0.5)
    if kind == "solid":
        return "<6" if d < 6 else ("6-8" if d <= 8 else ">8")
    return "<6" if d < 6 else ">=6"


#: Fleischner 2017 table, subsolid remarks: "Persistent part-solid nodules with solid components >= 6 mm
#: should be considered highly suspicious"
FLEISCHNER_SOLID_SUSPICIOUS_MM = 6.0


def fleischner(kind: str, mean_mm: float, *, multiple: bool = False, risk: str = "high",
               solid_mm: float | None = None) -> dict:
    """The recommendation for an incidental nodule (patients >= 35 years, no known cancer, not
    immunocompromised, not screening). ``kind``: solid, part-solid or ground-glass (calcified nodules are
    benign: no follow-up); ``risk`` low or high (high when unknown); ``solid_mm``: a part-solid nodule's
    solid component (None: not measured, and said)."""
    if kind == "calcified":
        return {"recommendation": "Benign (calcified): no follow-up", "risk": risk, "size": "", "rule": "",
                "remark": ""}
    solid = kind == "solid"
    multiplicity = "multiple" if multiple else "single"
    table_kind = kind if solid or not multiple else "subsolid"
    size = fleischner_size("solid" if solid else "subsolid", mean_mm)
    for row in FLEISCHNER_2017:
        if row.kind == table_kind and row.multiplicity == multiplicity and row.size == size \
                and row.risk in (risk, "any"):
            remark = ""
            if kind == "part-solid":
                if solid_mm is None:
                    remark = ("solid component not measured: the >= 6 mm 'highly suspicious' remark "
                              "cannot be read")
                elif math.floor(float(solid_mm) + 0.5) >= FLEISCHNER_SOLID_SUSPICIOUS_MM:
                    remark = (f"solid component {solid_mm:.1f} mm (>= 6 mm): persistent part-solid nodules "
                              "with solid components >= 6 mm should be considered highly suspicious")
            return {"recommendation": row.recommendation, "risk": risk if solid else "any", "size": size,
                    "rule": f"{multiplicity} {table_kind} {size} mm" + (f", {risk} risk" if solid else ""),
                    "remark": remark}
    raise ValueError(f"no Fleischner 2017 row for a {multiplicity} {kind} nodule of {mean_mm} mm "
                     f"({risk} risk)")
