"""Run `medstation info --json` over outside DICOM corpora and count what it made of them.

    .venv/bin/python packaging/corpus.py FOLDER [FOLDER ...] [--json]

The corpora (pydicom's, fo-dicom's, cornerstone's, dicom-test-files...) are never part of this
repository: point the script at local copies. For each folder it prints the files, the series
that loaded, the problems by reason (first words), the not-DICOM files, and anything a reader
must never see: a traceback or non-strict JSON. Exit 1 if any of those appear.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path


def run(folder: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "medstation", "info", "--json", str(folder)],
                          capture_output=True, text=True, timeout=3600)
    row: dict = {"folder": str(folder), "exit": proc.returncode,
                 "traceback": "Traceback" in proc.stderr, "strict_json": True}
    try:
        rep = json.loads(proc.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError:
        row["strict_json"] = False
        return row
    series = [se for p in rep["patients"] for s in p["studies"] for se in s["series"]]
    reasons = Counter(" ".join(e["reason"].split()[:4]) for e in rep["problems"])
    row.update(counts=rep["counts"], series_loaded=sum(1 for se in series if se.get("loaded")),
               series_with_geometry_errors=sum(1 for se in series if se.get("geometry_errors")),
               duplicates=sum(len(se.get("duplicates", [])) for se in series),
               problems_by_reason=dict(reasons.most_common()),
               untyped=[e["reason"] for e in rep["problems"] if e["reason"].startswith("cannot decode:")])
    return row


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    rows = [run(Path(a)) for a in argv if a != "--json"]
    if as_json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            c = r.get("counts", {})
            print(f"{r['folder']}: exit {r['exit']}, {c.get('instances', '?')} instances, "
                  f"{c.get('series', '?')} series ({r.get('series_loaded', '?')} loaded), "
                  f"{c.get('problems', '?')} problems, {c.get('not_dicom', '?')} not DICOM; "
                  f"traceback: {r['traceback']}; strict JSON: {r['strict_json']}")
            for reason, n in r.get("problems_by_reason", {}).items():
                print(f"  {n:4d}  {reason} ...")
            for u in r.get("untyped", []):
                print(f"  untyped: {u}")
    bad = any(r["traceback"] or not r["strict_json"] or r.get("untyped") for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
