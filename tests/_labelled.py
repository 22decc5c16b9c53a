"""Three small patients with two nodules each and their LUNA16 CSV: what fine-tuning tests train on."""

from __future__ import annotations

from pathlib import Path

from medstation.synth import ChestPhantom, Nodule, PatientSpec, SeriesSpec, write_study

HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"


def write_labelled_studies(root: Path, seed0: int, prefix: str) -> tuple[list[Path], Path]:
    """The three patients' study folders and the CSV naming their six nodules."""
    rows = []
    for n in range(3):
        nodules = [Nodule((60.0 - 10 * n, 10.0, -20.0), 10.0 + n), Nodule((-70.0, 0.0, -5.0 + 5 * n), 8.0)]
        spec = SeriesSpec(description="chest", slices=36, rows=160, columns=160, pixel_spacing=2.2,
                          slice_thickness=2.5, z_center=-12.0)
        truth = write_study(root / f"p{n}", ChestPhantom(seed=seed0 + n, nodules=nodules), series=[spec],
                            seed=seed0 + n, patient=PatientSpec(f"{prefix}-{n}", f"{prefix.title()}^{n}"))
        rows += [f"{truth.series[0].series_uid},{x},{y},{z},{d.diameter_mm}"
                 for d in nodules for x, y, z in [d.center]]
    csv = root / "labels.csv"
    csv.write_text(HEADER + "\n".join(rows) + "\n")
    return [root / f"p{n}" for n in range(3)], csv
