"""``medstation info``: what is in a file or folder, and what is wrong with it."""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict

from medstation.core import jsonout
from medstation.core.errors import LoadError
from medstation.dicom import WorkerPool, list_series, open_series
from medstation.dicom.header import InstanceHeader, series_key_of, study_key

_TS_NAMES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
    "1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}


def ts_name(uid: str) -> str:
    return _TS_NAMES.get(uid, uid)


def describe(paths, *, pixels: bool = True, timeout: float = 30.0, progress=None) -> dict:
    """Scan (and by default load) everything under ``paths``; return a JSON-able report."""
    with tempfile.TemporaryDirectory(prefix="medstation-info-") as tmp, \
            WorkerPool(timeout=timeout) as pool:
        listing = list_series(paths, pool, progress=progress, extract_dir=tmp)
        problems: list[LoadError] = list(listing.problems)
        stacks = listing.stacks
        loaded: dict[int, dict] = {}
        if pixels:
            for i, stack in enumerate(stacks):
                res = open_series(stack, pool=pool)
                vox = res.volume.voxels
                loaded[i] = {"loaded": not res.errors, "failed_slices": len(res.errors),
                             "seconds": round(res.seconds, 4),
                             "value_range": [float(vox.min()), float(vox.max())] if vox.size else None}
                problems += res.errors
        return _report(paths, listing.headers, stacks, loaded, problems, listing.skipped, pixels)


def _report(paths, headers: list[InstanceHeader], stacks, loaded, problems, skipped, pixels) -> dict:
    patients: dict = {}
    studies: dict = defaultdict(dict)
    for h in headers:
        pkey = (h.patient_id, h.patient_name)
        patients.setdefault(pkey, {"patient_id": h.patient_id, "name": h.patient_name,
                                   "birth_date": h.birth_date, "sex": h.sex, "studies": []})
        if study_key(h) not in studies[pkey]:
            study = {"study_uid": h.study_uid, "date": h.study_date, "description": h.study_description,
                     "accession": h.accession, "series": [], "non_image_instances": []}
            studies[pkey][study_key(h)] = study
            patients[pkey]["studies"].append(study)
        if not h.has_pixels or h.rows <= 0:
            studies[pkey][study_key(h)]["non_image_instances"].append(
                {"path": h.path, "modality": h.modality, "sop_class_uid": h.sop_class_uid})
    for i, st in enumerate(stacks):
        h = st.first
        entry = st.summary()
        entry["transfer_syntax_names"] = [ts_name(t) for t in st.transfer_syntaxes]
        entry["paths"] = st.files
        if pixels:
            entry.update(loaded.get(i, {}))
        studies[(h.patient_id, h.patient_name)][study_key(h)]["series"].append(entry)
    return {
        "inputs": [str(p) for p in paths],
        "pixels_decoded": pixels,
        "patients": list(patients.values()),
        # counted as the study database counts them (one study per Study UID, one series per
        # Series UID; a file without one is its own), so `info` and `import` agree
        "counts": {"patients": len(patients), "studies": len({study_key(h) for h in headers}),
                   "series": len({series_key_of(h) for h in headers}), "image_stacks": len(stacks),
                   "instances": len(headers),
                   "problems": len(problems), "not_dicom": len(skipped)},
        "problems": [e.to_dict() for e in problems],
        "not_dicom": [e.to_dict() for e in skipped],
    }


def format_report(rep: dict, verbose: bool = False) -> str:
    c = rep["counts"]
    lines = [f"{c['patients']} patients, {c['studies']} studies, {c['series']} series, "
             f"{c['instances']} instances; {c['problems']} files with problems, "
             f"{c['not_dicom']} not DICOM"]
    for p in rep["patients"]:
        lines.append(f"Patient {p['patient_id'] or '(no ID)'}  {p['name'] or '(no name)'}"
                     f"  {p['birth_date']} {p['sex']}".rstrip())
        for s in p["studies"]:
            lines.append(f"  Study {s['date'] or '(no date)'}  {s['description']}  [{s['study_uid']}]")
            for se in s["series"]:
                shape = " x ".join(str(v) for v in se["shape"])
                sp = " x ".join(f"{v:g}" for v in se["spacing_mm"])
                part = f" part {se['part']}" if se["part"] > 1 else ""
                state = ""
                if "loaded" in se:
                    state = "  loaded" if se["loaded"] else f"  {se['failed_slices']} slices failed"
                lines.append(f"    Series {se['series_number'] if se['series_number'] is not None else '-'}"
                             f"{part} {se['modality']} \"{se['description']}\": {se['slices']} slices, "
                             f"voxels {shape} ({se['dtype']}{', ' + se['units'] if se['units'] else ''}), "
                             f"spacing {sp} mm{state}")
                geo = "orientation " + " ".join(f"{v:g}" for v in se["orientation"]) \
                    if se["has_geometry"] else "no patient geometry"
                lines.append(f"      {geo}; origin {se['origin_mm']}; "
                             f"{', '.join(se['transfer_syntax_names'])}")
                for w in se["warnings"]:
                    lines.append(f"      warning: {w}")
            by_kind = defaultdict(list)
            for ni in s["non_image_instances"]:
                by_kind[ni["modality"] or "object"].append(ni["path"])
            for kind, files in by_kind.items():
                more = f" (and {len(files) - 1} more)" if len(files) > 1 else ""
                lines.append(f"    {len(files)} {kind} instance(s) without pixel data: {files[0]}{more}")
    if rep["problems"]:
        lines.append("Problems:")
        for e in rep["problems"]:
            lines.append(f"  {e['file']}: {e['reason']}" + (f" ({e['hint']})" if e["hint"] else ""))
    if rep["not_dicom"]:
        if verbose:
            lines.append("Not DICOM (skipped):")
            for e in rep["not_dicom"]:
                lines.append(f"  {e['file']}: {e['reason']}")
        else:
            lines.append(f"{len(rep['not_dicom'])} files are not DICOM and were skipped (-v lists them)")
    return "\n".join(lines)


def run_info(args) -> int:
    from medstation.cli import _progress_bar

    update, close = _progress_bar("scan", not args.json)
    try:
        rep = describe(args.paths, pixels=not args.headers_only, timeout=args.timeout, progress=update)
    finally:
        close()
    if args.json:
        sys.stdout.write(jsonout.dumps(rep, indent=1) + "\n")
    else:
        print(format_report(rep, args.verbose))
    return 0
