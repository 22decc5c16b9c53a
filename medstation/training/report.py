"""The site validation report: two detector versions side by side on the same labelled series.

``medstation evaluate ... --report FILE.html`` (and the fine-tuning panel's "Validation report")
write one self-contained HTML page, plots embedded as SVG images, that an engineer hands to a
radiologist before switching versions. Per version, on the same scans:

- the FROC curve and the CPM (LUNA16's, ``training.metrics``) with a bootstrap interval: scans drawn
  with replacement (``BOOTSTRAP`` times, a fixed seed), the 2.5th and 97.5th percentiles; with two
  versions, the paired interval of the difference (the same draws for both), which says whether
  "better here" is more than the luck of which scans were labelled;
- sensitivity and false positives per scan at the version's own operating point (the score the
  viewer draws findings from), read from the same FROC counting;
- sizes against the labels (Bland and Altman, Lancet 1986: the difference against the mean of the
  two, the bias and the 95% limits of agreement, bias +/- 1.96 SD); the measured size is the
  segmentation's sphere-equivalent diameter, the label's is the diameter stored with the label;
- calibration: the reliability diagram and the expected calibration error (``ai.calibration``);
- what the data was (scans, patients, nodules counted, the size range) and each version's weights
  hash (the manifest's ``sha256``).

:func:`version_figures` computes the figures (JSON-ready, also what ``--json`` prints);
:func:`render_html` turns a report dict into the page.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

import numpy as np

from medstation.training.metrics import FP_RATES, FrocResult, froc

BOOTSTRAP = 1000
COLOURS = ("#1f6fd1", "#d1501f", "#2a9d4a", "#8a3ab9")


def _resampled_cpm(cands: list, refs: list, idx: np.ndarray, size_range: tuple[float, float]) -> float:
    r = froc([cands[i] for i in idx], [refs[i] for i in idx], min_diameter=size_range[0],
             max_diameter=size_range[1])
    return r.cpm


def bootstrap_draws(scans: int, n: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``n`` draws of ``scans`` scan indices with replacement (a fixed seed: the same report twice is
    the same report; the same draws for every version compared)."""
    return np.random.default_rng(seed).integers(0, max(scans, 1), size=(n, scans))


def cpm_interval(per_scan: tuple[list, list], size_range: tuple[float, float],
                 draws: np.ndarray) -> tuple[float | None, float | None, np.ndarray]:
    """The 95% percentile interval of the CPM over ``draws`` (None, None when there are fewer than two
    scans: one scan resampled is that scan again) and the per-draw CPMs (for paired differences)."""
    cands, refs = per_scan
    if len(refs) < 2:
        return None, None, np.array([])
    values = np.array([_resampled_cpm(cands, refs, idx, size_range) for idx in draws])
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)), values


def operating_point_source(manifest: dict) -> str:
    """Where a version's operating point comes from (``ai.detector.Detector.threshold``'s order)."""
    if manifest.get("operating_point") is not None:
        cal = manifest.get("calibration") or {}
        return "fitted with the calibration" + (f" on {cal['fitted_on_data']}" if cal.get("fitted_on_data")
                                                else "")
    if ((manifest.get("metrics") or {}).get("froc") or {}).get("threshold_at_1fp") is not None:
        return "the score at 1 FP/scan of its own evaluation"
    return "the default 0.5: never fitted for this version (calibrate it)"


def at_operating_point(result: FrocResult, threshold: float, source: str = "") -> dict:
    """Sensitivity and FP/scan of the candidates scoring at least ``threshold``, read from the FROC
    curve (its points are the distinct scores, highest first), so the counting is the FROC's."""
    sens, fps = 0.0, 0.0
    for t, fp, s in result.curve:
        if t >= threshold:
            sens, fps = s, fp
    return {"threshold": round(float(threshold), 4), "source": source, "sensitivity": round(sens, 4),
            "fp_per_scan": round(fps, 3)}


def bland_altman(pairs: list[dict]) -> dict:
    """Bias and 95% limits of agreement of measured minus label diameter (mm); None where unmeasured."""
    if not pairs:
        return {"pairs": 0, "bias_mm": None, "sd_mm": None, "loa_mm": [None, None], "points": []}
    m = np.array([p["measured_mm"] for p in pairs], float)
    t = np.array([p["truth_mm"] for p in pairs], float)
    d = m - t
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else None
    loa = [round(bias - 1.96 * sd, 2), round(bias + 1.96 * sd, 2)] if sd is not None else [None, None]
    return {"pairs": len(d), "bias_mm": round(bias, 2), "sd_mm": None if sd is None else round(sd, 2),
            "loa_mm": loa, "measured": "sphere-equivalent diameter of the segmentation (mm)",
            "reference": "the label's diameter (mm)",
            "points": [[round(float((a + b) / 2), 2), round(float(a - b), 2)] for a, b in zip(m, t)]}


def version_figures(detector, model_dir, result: FrocResult, extra: dict, reliability: dict,
                    draws: np.ndarray) -> tuple[dict, np.ndarray]:
    """One version's column of the report, and its per-draw CPMs."""
    lo, hi, values = cpm_interval(extra["per_scan"], result.size_range, draws)
    manifest = detector.manifest
    fitted = set((manifest.get("calibration") or {}).get("fitted_on_series") or [])
    scans = {s.get("series") for s in extra["studies"]}
    return {
        "name": detector.name, "version": detector.version, "path": str(model_dir),
        "parent_version": manifest.get("parent_version"), "sha256": manifest.get("sha256"),
        "calibrated": bool(manifest.get("calibration")),
        # a calibration fitted on the very series measured here: its reliability is no independent check
        "calibrated_on_these_scans": len(fitted & scans),
        "froc": result.to_dict(),
        "curve": [[round(f, 4), round(s, 4)] for _t, f, s in result.curve],
        "cpm_interval_95": [None if lo is None else round(lo, 4), None if hi is None else round(hi, 4)],
        "operating_point": at_operating_point(result, detector.threshold, operating_point_source(manifest)),
        "sizes": bland_altman(extra["size_pairs"]),
        "size_table": extra["sizes"],
        "reliability": reliability,
    }, values


def paired_difference(new: np.ndarray, old: np.ndarray, cpm_new: float, cpm_old: float) -> dict:
    """CPM(new) - CPM(old) with its paired bootstrap interval (the same scan draws for both)."""
    out: dict = {"cpm_difference": round(cpm_new - cpm_old, 4), "interval_95": [None, None]}
    if len(new) and len(new) == len(old):
        d = new - old
        out["interval_95"] = [round(float(np.percentile(d, 2.5)), 4), round(float(np.percentile(d, 97.5)), 4)]
    return out


# -------------------------------------------------------------------------------------------- plots


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.0e}"


def svg_plot(series: Sequence[dict], *, title: str, xlabel: str, ylabel: str, xlim: tuple[float, float],
             ylim: tuple[float, float], xlog: bool = False, xticks: Sequence[float] = (),
             yticks: Sequence[float] = (), hlines: Sequence[tuple[float, str, str]] = (),
             diagonal: bool = False, note: str = "", width: int = 460, height: int = 320) -> str:
    """A small SVG chart: ``series`` of ``{"name", "points": [[x, y]...], "kind": "line"|"step"|
    "scatter", "colour"}``; ``hlines`` of (y, colour, label). Only what the report needs."""
    left, right, top, bottom = 58, 14, 28, 46
    pw, ph = width - left - right, height - top - bottom

    def fx(x: float) -> float:
        if xlog:
            x = max(x, xlim[0])
            f = (math.log(x) - math.log(xlim[0])) / (math.log(xlim[1]) - math.log(xlim[0]))
        else:
            f = (x - xlim[0]) / (xlim[1] - xlim[0])
        return left + min(max(f, 0.0), 1.0) * pw

    def fy(y: float) -> float:
        f = (y - ylim[0]) / (ylim[1] - ylim[0])
        return top + (1 - min(max(f, 0.0), 1.0)) * ph

    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for x in xticks:
        out.append(f'<line x1="{fx(x):.1f}" y1="{top}" x2="{fx(x):.1f}" y2="{top + ph}" stroke="#eee"/>'
                   f'<text x="{fx(x):.1f}" y="{top + ph + 14}" text-anchor="middle">{_fmt(x)}</text>')
    for y in yticks:
        out.append(f'<line x1="{left}" y1="{fy(y):.1f}" x2="{left + pw}" y2="{fy(y):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 5}" y="{fy(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{e(xlabel)}</text>'
               f'<text transform="translate(14,{top + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'{e(ylabel)}</text>')
    if diagonal:
        out.append(f'<line x1="{fx(xlim[0]):.1f}" y1="{fy(ylim[0]):.1f}" x2="{fx(xlim[1]):.1f}" '
                   f'y2="{fy(ylim[1]):.1f}" stroke="#999" stroke-dasharray="4 3"/>')
    for y, colour, label in hlines:
        out.append(f'<line x1="{left}" y1="{fy(y):.1f}" x2="{left + pw}" y2="{fy(y):.1f}" stroke="{colour}" '
                   f'stroke-dasharray="5 3"/><text x="{left + pw - 3}" y="{fy(y) - 3:.1f}" text-anchor="end" '
                   f'fill="{colour}">{e(label)}</text>')
    for n, s in enumerate(series):
        colour = s.get("colour", COLOURS[n % len(COLOURS)])
        pts = [(fx(x), fy(y)) for x, y in s["points"] if x is not None and y is not None]
        if s.get("kind") == "scatter":
            out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}" fill-opacity="0.7"/>'
                    for x, y in pts]
        elif pts:
            if s.get("kind") == "step":
                stepped = [pts[0]]
                for x, y in pts[1:]:
                    stepped += [(x, stepped[-1][1]), (x, y)]
                pts = stepped
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        ly = top + 14 + 15 * n
        out.append(f'<rect x="{left + 8}" y="{ly - 9}" width="12" height="10" fill="{colour}"/>'
                   f'<text x="{left + 24}" y="{ly}">{e(s["name"])}</text>')
    if note:
        out.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" fill="#666" '
                   f'font-size="13">{e(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _label(v: dict) -> str:
    return f"{v['name']} {v['version']}"


def _froc_plot(versions: list[dict]) -> str:
    series = [{"name": f"{_label(v)} (CPM {v['froc']['cpm']:.3f})", "kind": "step",
               "points": [[max(f, 0.125), s] for f, s in v["curve"] if f <= 8.0]} for v in versions]
    return svg_plot(series, title="FROC (LUNA16 counting)", xlabel="false positives per scan (log)",
                    ylabel="sensitivity", xlim=(0.125, 8.0), ylim=(0.0, 1.0), xlog=True, xticks=FP_RATES,
                    yticks=(0, 0.25, 0.5, 0.75, 1.0))


def _bland_altman_plot(v: dict, colour: str) -> str:
    ba = v["sizes"]
    pts = ba["points"]
    xs = [p[0] for p in pts] or [0.0, 10.0]
    ys = [p[1] for p in pts] or [0.0]
    lines = []
    if ba["bias_mm"] is not None:
        lines.append((ba["bias_mm"], "#333", f"bias {ba['bias_mm']:+.1f} mm"))
    if ba["loa_mm"][0] is not None:
        lines += [(ba["loa_mm"][0], "#999", f"{ba['loa_mm'][0]:+.1f}"), (ba["loa_mm"][1], "#999",
                                                                         f"{ba['loa_mm'][1]:+.1f}")]
    span = max([abs(y) for y in ys] + [abs(y) for y, _c, _l in lines] + [2.0]) * 1.15
    x0, x1 = max(0.0, min(xs) - 2), max(xs) + 2
    return svg_plot([{"name": _label(v), "kind": "scatter", "points": pts, "colour": colour}],
                    title=f"Sizes against the labels: {_label(v)}",
                    xlabel="mean of measured and label diameter (mm)",
                    ylabel="measured - label (mm)", xlim=(x0, x1), ylim=(-span, span),
                    xticks=np.linspace(x0, x1, 5).round(1), yticks=np.linspace(-span, span, 5).round(1),
                    hlines=lines, note="" if pts else "no segmented hit to compare with a label")


def _reliability_plot(versions: list[dict]) -> str:
    series = [{"name": f"{_label(v)} (ECE {v['reliability']['ece']:.3f})", "kind": "line",
               "points": [[b["mean_score"], b["share_nodules"]] for b in v["reliability"].get("table", [])]}
              for v in versions]
    return svg_plot(series, title="Calibration (reliability diagram)", xlabel="mean score in the bin",
                    ylabel="share that are nodules", xlim=(0, 1), ylim=(0, 1), diagonal=True,
                    xticks=(0, 0.25, 0.5, 0.75, 1), yticks=(0, 0.25, 0.5, 0.75, 1))


def _cell(v) -> str:
    return "-" if v is None else html.escape(str(v))


def _interval(iv: list) -> str:
    return "-" if iv[0] is None else f"{iv[0]:.3f} to {iv[1]:.3f}"


def render_html(report: dict) -> str:
    """The page: what the data was, the versions' figures side by side, the plots, the missed nodules."""
    e = html.escape
    versions = report["versions"]
    data = report["data"]
    rows = [
        ("weights sha256", [_cell((v.get("sha256") or "")[:16] or None) for v in versions]),
        ("parent version", [_cell(v.get("parent_version")) for v in versions]),
        ("scores", ["calibrated" if v["calibrated"] else "raw" for v in versions]),
        ("CPM (LUNA16)", [f"{v['froc']['cpm']:.3f}" for v in versions]),
        ("CPM 95% interval (bootstrap over scans)", [_interval(v["cpm_interval_95"]) for v in versions]),
    ]
    for rate in FP_RATES:
        rows.append((f"sensitivity at {rate:g} FP/scan",
                     [f"{v['froc']['sensitivity_at_fp_per_scan'][str(rate)]:.3f}" for v in versions]))
    rows += [
        ("operating point (score)", [f"{v['operating_point']['threshold']:.3f}<br><small>"
                                     f"{e(v['operating_point']['source'])}</small>" for v in versions]),
        ("sensitivity at the operating point",
         [f"{v['operating_point']['sensitivity']:.3f}" for v in versions]),
        ("FP/scan at the operating point", [f"{v['operating_point']['fp_per_scan']:.2f}" for v in versions]),
        ("nodules missed (no candidate inside)", [str(len(v["froc"]["missed"])) for v in versions]),
        ("size pairs (segmented hits)", [str(v["sizes"]["pairs"]) for v in versions]),
        ("size bias, measured - label (mm)", [_cell(v["sizes"]["bias_mm"]) for v in versions]),
        ("95% limits of agreement (mm)",
         [_interval(v["sizes"]["loa_mm"]).replace(".000", "") if v["sizes"]["loa_mm"][0] is not None else "-"
          for v in versions]),
        ("expected calibration error", [f"{v['reliability']['ece']:.3f}" for v in versions]),
    ]
    rows.append(("calibration fitted on these scans", [str(v["calibrated_on_these_scans"])
                                                       for v in versions]))
    caveats = "".join(
        f"<p class='warn'>The calibration of {e(_label(v))} was fitted on "
        f"{v['calibrated_on_these_scans']} of these scans: its reliability diagram and operating point "
        "here are not an independent check.</p>"
        for v in versions if v["calibrated_on_these_scans"])
    head = "".join(f"<th>{e(_label(v))}</th>" for v in versions)
    table = "".join(f"<tr><th>{e(name)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                    for name, cells in rows)
    diff = report.get("difference")
    verdict = ""
    if diff:
        iv = diff["interval_95"]
        if iv[0] is None:
            word = "too few scans for an interval"
        elif iv[0] > 0:
            word = "better here: the interval is above zero"
        elif iv[1] < 0:
            word = "worse here: the interval is below zero"
        else:
            word = "not shown to differ here: the interval spans zero"
        verdict = (f"<p class='verdict'>CPM difference {e(_label(versions[0]))} - {e(_label(versions[1]))}: "
                   f"<b>{diff['cpm_difference']:+.3f}</b> (paired bootstrap 95% interval "
                   f"{_interval(iv)}): {e(word)}.</p>")
    plots = [_img(_froc_plot(versions), "FROC curves"),
             _img(_reliability_plot(versions), "Reliability diagram")]
    plots += [_img(_bland_altman_plot(v, COLOURS[n % len(COLOURS)]), f"Bland-Altman {_label(v)}")
              for n, v in enumerate(versions)]
    missed = "".join(
        f"<li>{e(_label(v))}: " + (", ".join(
            f"scan {m['scan'] + 1} ({e(data['scans'][m['scan']]['name'])}): {m['diameter_mm']:.1f} mm at "
            f"{tuple(round(c, 1) for c in m['center_mm'])}" for m in v["froc"]["missed"]) or "none") + "</li>"
        for v in versions)
    scans = "".join(f"<tr><td>{n + 1}</td><td>{e(s['name'])}</td><td>{_cell(s.get('patient'))}</td>"
                    f"<td>{s['nodules']}</td></tr>" for n, s in enumerate(data["scans"]))
    described = data["description"][:1].upper() + data["description"][1:]
    lo, hi = data["size_range_mm"]
    counted = ("every label" if not lo and hi is None else f"labels of {lo:g} mm or more" if hi is None
               else f"labels of {lo:g}-{hi:g} mm")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(report['title'])}</title>
<style>
body{{font-family:sans-serif;margin:24px;max-width:1000px;color:#222}}
table{{border-collapse:collapse;margin:8px 0}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
th{{background:#f3f3f3}} .warn{{background:#fff3cd;padding:8px;border:1px solid #e0c36a}}
.verdict{{font-size:15px}} img{{margin:6px;border:1px solid #ddd}}
</style></head><body>
<h1>{e(report['title'])}</h1>
<p class="warn">{e(report['disclaimer'])}</p>
<p>Written {e(report['created'])} by medstation {e(report['medstation'])}.</p>
<h2>Data</h2>
<p>{e(described)}: {data['scans_count']} scan(s) of {_cell(data.get('patients'))} patient(s),
{data['nodules']} nodule(s) counted ({e(counted)}; {data['ignored']} other(s) ignored, neither hits nor
false positives). A hit is a candidate centre strictly inside the label's radius (LUNA16). Bootstrap:
{report['bootstrap']} draws of the scans with replacement, seed {report['seed']}.</p>
<h2>Versions side by side</h2>
{verdict}
{caveats}
<table><tr><th></th>{head}</tr>{table}</table>
<h2>Plots</h2>
<div>{''.join(plots)}</div>
<h2>Missed nodules</h2><ul>{missed}</ul>
<h2>Scans</h2>
<table><tr><th>#</th><th>series</th><th>patient</th><th>nodules</th></tr>{scans}</table>
</body></html>
"""


def build_report(columns: list[tuple[dict, np.ndarray]], data: dict, *, title: str, draws: np.ndarray,
                 seed: int) -> dict:
    """The report dict (JSON-ready): versions, the paired difference of the first two, the data."""
    import datetime as _dt

    from medstation import __version__

    versions = [c for c, _v in columns]
    report = {"title": title, "versions": versions, "data": data, "bootstrap": int(len(draws)), "seed": seed,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "medstation": __version__,
              "disclaimer": "Research software, not for clinical use. These figures hold for these scans "
                            "and labels only; read the intervals before the points."}
    if len(columns) >= 2:
        (a, va), (b, vb) = columns[0], columns[1]
        report["difference"] = paired_difference(va, vb, a["froc"]["cpm"], b["froc"]["cpm"])
    return report


def describe_data(description: str, result: FrocResult, extra: dict) -> dict:
    lo, hi = result.size_range
    scans = [{"name": s.get("series") or s.get("study") or f"scan {n + 1}", "patient": s.get("patient"),
              "nodules": s["nodules"]} for n, s in enumerate(extra["studies"])]
    patients = {s["patient"] for s in scans if s.get("patient")}
    return {"description": description, "scans_count": result.scans, "scans": scans,
            "patients": len(patients) or None, "nodules": result.nodules, "ignored": result.ignored_nodules,
            "size_range_mm": [lo, None if math.isinf(hi) else hi]}

