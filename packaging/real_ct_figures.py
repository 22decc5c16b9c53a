"""Development tool: the shared real CT's figures for a detector's model card.

``python packaging/real_ct_figures.py MODEL_DIR [--write]`` runs the detector on both
reconstructions of ``../shared/real-ct/lung-pet-ct-dx-A0001`` (Lung-PET-CT-Dx, Li P et al., TCIA
2020, doi 10.7937/TCIA.2020.NNC20461, CC BY 4.0; or ``MEDSTATION_REAL_CT``) and prints, per
reconstruction, the tumour's score and size and the findings above the operating point; with
``--write`` they go into the model folder's manifest (``metrics.real_ct``) and its card. The case
is a development check: it is never trained on, and one patient is not an evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASE = Path(os.environ.get("MEDSTATION_REAL_CT", ROOT.parent / "shared" / "real-ct")) / "lung-pet-ct-dx-A0001"
STUDY = CASE / "04-04-2007-NA-Chest-07990"
SERIES = ("2.000000-5mm-40805", "3.000000-5mm-41315")


def figures(model_dir: str) -> dict:
    from medstation.ai.store import load_detector
    from medstation.dicom import WorkerPool, open_series

    detector = load_detector(model_dir)
    truth = json.loads((CASE / "truth.json").read_text())
    rows = []
    with WorkerPool(2, timeout=60) as pool:
        pool.start()
        for s in SERIES:
            volume = open_series(STUDY / s, pool=pool).volume
            boxes = [b for b in truth["boxes"] if b["series_instance_uid"] == volume.series_uid]
            lo = np.min([b["box_mm"]["min"] for b in boxes], axis=0) - 5
            hi = np.max([b["box_mm"]["max"] for b in boxes], axis=0) + 5
            run = detector.detect(volume, heatmap=False)
            on = [f for f in run.findings if np.all(np.asarray(f.center_mm) >= lo)
                  and np.all(np.asarray(f.center_mm) <= hi)]
            best = max(on, key=lambda f: f.score) if on else None
            above = [f for f in run.findings if f.score >= detector.threshold]
            rows.append({
                "series": s, "score": None if best is None else round(float(best.score), 4),
                "found": bool(best is not None and best.score >= detector.threshold),
                "size": "-" if best is None else
                f"{best.size.mm:.1f} mm {best.size.what} ({best.size.method})"
                + ("" if best.volume_mm3 is None else f", {best.volume_mm3 / 1000:.1f} ml"),
                "slices": None if best is None else list(best.slice_range),
                "above_operating_point": len(above),
                "above_operating_point_off_the_tumour": len([f for f in above if f not in on]),
            })
    return {"case": "Lung-PET-CT-Dx Lung_Dx-A0001 (Li P et al., TCIA 2020, doi 10.7937/TCIA.2020.NNC20461, "
                    "CC BY 4.0), two 5 mm reconstructions", "operating_point": detector.threshold,
            "series": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("--write", action="store_true", help="record them in the model folder's manifest and card")
    args = p.parse_args()
    out = figures(args.model_dir)
    print(json.dumps(out, indent=1))
    if args.write:
        from medstation.ai.store import save_metrics
        from medstation.training.card import write_card

        save_metrics(args.model_dir, {"real_ct": out})
        write_card(args.model_dir)


if __name__ == "__main__":
    main()
