"""The model card (MODEL_CARD.md), written from a model's manifest so its figures cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

from medstation.ai.store import read_manifest
from medstation.core.files import atomic_write_text


def render_card(manifest: dict) -> str:
    td = manifest.get("training_data", {})
    seeds = td.get("phantom_seeds")
    seed_text = f"{seeds[0]}-{seeds[1] - 1}" if isinstance(seeds, list) and len(seeds) == 2 else "?"
    tr = manifest.get("training", {})
    froc = (manifest.get("metrics") or {}).get("froc")
    inp = manifest.get("input", {})
    lines = [
        f"# Model card: {manifest['name']} {manifest['version']}",
        "",
        "**Not for clinical use.** A research and demonstration model trained only on synthetic CT; "
        "it has never seen a real patient's scan. Every finding needs a reader's review.",
        "",
        "## What it does",
        "",
        "Finds lung nodules in axial chest CT and reports each as a 3D lesion candidate (centre in "
        "patient coordinates, long-axis diameter, slice range, volume estimate, score 0-1).",
        "",
        f"- Architecture: `{manifest['architecture']}`: torchvision FCOS (focal loss, GIoU loss, centerness, "
        "NMS) on a small ResNet (torchvision BasicBlock) + FPN backbone, trained from scratch (no pretrained "
        f"weights). Network: `{json.dumps(manifest.get('network', {}))}`.",
        f"- Input: {inp.get('channels')} neighbouring slices as channels, resampled to "
        f"{inp.get('pixel_spacing_mm')} mm pixels and {inp.get('slice_spacing_mm')} mm slices, window "
        f"{inp.get('window')} HU; only slices holding lung, cropped to the lungs.",
        f"- Classes: {', '.join(manifest.get('classes', []))}.",
        f"- Parent version: {manifest.get('parent_version') or 'none (trained from scratch)'}.",
        f"- Weights sha256: `{manifest.get('sha256', '')}`.",
        "",
        "## Training data",
        "",
        f"- Source: {td.get('source', 'unknown')}.",
        f"- {td.get('samples', '?')} rendered 2.5D samples "
        f"({td.get('samples_with_nodules', '?')} with nodules) "
        f"from phantom seeds {seed_text}; nodules {td.get('nodule_diameters_mm', '?')} mm"
        + (f", masses {td['masses_mm']} mm" if td.get("masses_mm") else "") + ".",
        *([f"- Nodule types: {', '.join(td['nodule_types'])}."] if td.get("nodule_types") else []),
        *([f"- Anatomy: {', '.join(td['anatomy'])}."] if td.get("anatomy") else []),
        *([f"- Lung disease: {', '.join(td['disease'])}."] if td.get("disease") else []),
        "- Acquisition: "
        + ", ".join(td.get("acquisition") or ["pixel 0.6-1.5 mm", "slices 1-3 mm", "noise 6-30 HU"]) + ".",
        f"- Optimisation: {tr.get('steps', '?')} steps of AdamW (lr {tr.get('lr', '?')}, batch "
        f"{tr.get('batch_size', '?')}, crops of {td.get('crop_px', '?')} px, flips in x, y and z), seed "
        f"{tr.get('seed', '?')}, {(manifest.get('training_seconds') or {}).get('train', '?')} s of training "
        "on this project's 2-core CPU.",
        "",
        "Reproduce it with one command:",
        "",
        "```",
        f"medstation train-detector --out models/{manifest['name']} --samples {td.get('samples', 12000)} "
        f"--steps {tr.get('steps', 3500)} --seed {tr.get('seed', 0)}"
        + (f" --lr {tr['lr']:g} --base {manifest['name']}@{manifest['parent_version']}"
           if manifest.get("parent_version") else ""),
        "```",
        "",
        "(The samples and the schedule are identical for a seed; torch's CPU kernels do not promise "
        "bit-identical weights across machines.)",
        "",
        "## How it scored",
        "",
    ]
    if froc:
        sens = froc["sensitivity_at_fp_per_scan"]
        lines += [
            f"`medstation evaluate` on {froc['scans']} generated studies whose phantom seeds were never "
            "used in "
            f"training (seeds {min(manifest['metrics'].get('eval_seeds', [0]))}-"
            f"{max(manifest['metrics'].get('eval_seeds', [0]))}), written as DICOM and read back; "
            f"{froc['nodules']} nodules of {manifest['metrics'].get('min_diameter_mm', 6):g} mm or more "
            "(a hit is a candidate centre within the nodule's radius, as in LUNA16):",
            "",
            "| FP per scan | " + " | ".join(k for k in sens) + " |",
            "|---|" + "---|" * len(sens),
            "| sensitivity | " + " | ".join(f"{v:.3f}" for v in sens.values()) + " |",
            "",
            f"CPM (mean sensitivity at 1/8 to 8 FP per scan): **{froc['cpm']:.3f}**. Score threshold at 1 FP "
            f"per scan: {froc['threshold_at_1fp']:.3f} (the viewer's default confidence threshold).",
        ]
    else:
        lines += ["Not evaluated yet: run `medstation evaluate --model DIR --write-metrics`."]
    metrics = manifest.get("metrics") or {}
    held = metrics.get("held_out") or {}
    if held.get("froc"):
        hf = held["froc"]
        sens = hf["sensitivity_at_fp_per_scan"]
        lines += [
            "",
            "### On the held-out generator family",
            "",
            f"`medstation evaluate --family held-out`: {hf['scans']} studies of `medstation.synth.heldout`, "
            "a generator written separately from the training one (its own body and lung shapes, "
            "vessel trees, nodule shapes, kernels and correlated noise; training never imports it), "
            f"seeds {min(held.get('eval_seeds', [0]))}-{max(held.get('eval_seeds', [0]))}; {hf['nodules']} "
            f"nodules of {held.get('min_diameter_mm', 6):g} mm or more:",
            "",
            "| FP per scan | " + " | ".join(k for k in sens) + " |",
            "|---|" + "---|" * len(sens),
            "| sensitivity | " + " | ".join(f"{v:.3f}" for v in sens.values()) + " |",
            "",
            f"CPM: **{hf['cpm']:.3f}**.",
        ]
    for title, figures in (("own family", metrics), ("held-out family", held)):
        rows = figures.get("sizes") or []
        if rows:
            lines += ["", f"### Size error by diameter ({title}; segmentation against the phantom's truth)",
                      "", "| diameter (mm) | nodules | diameter, median signed error | volume, median "
                      "signed error | diameter within 1 mm or 10% | volume within 15% |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {r['bin_mm'][0]:g}-{r['bin_mm'][1]:g} | {r['nodules']} | "
                      f"{r['diameter_median_error']:+.1%} | {r['volume_median_error']:+.1%} | "
                      f"{r['diameter_within_1mm_or_10pct']:.0%} | {r['volume_within_15pct']:.0%} |"
                      for r in rows]
    ft = (manifest.get("training_data") or {}).get("fine_tuned_on")
    val = metrics.get("validation") or {}
    if ft:
        split = ft.get("split") or {}
        lines += ["", "## Fine-tuned on local data", "",
                  f"Fine-tuned from {manifest['name']} {manifest.get('parent_version')} on "
                  f"{ft.get('nodules')} labelled nodules ({ft.get('negatives')} known non-nodules) in "
                  f"{ft.get('series')} series of {ft.get('patients')} patients of the local study "
                  "database; "
                  f"split by patient (seed {split.get('seed')}): {len(split.get('train', []))} series train, "
                  f"{len(split.get('validation', []))} validate; {ft.get('replay_synthetic')} synthetic "
                  "samples replayed."]
        if val.get("new") and val.get("parent"):
            lines += ["", f"On the validation series: CPM {val['new'].get('cpm', 0):.3f} "
                      f"(parent {val['parent'].get('cpm', 0):.3f}), sensitivity at 1 FP per scan "
                      f"{val['new'].get('sensitivity_at_1fp', 0):.3f} "
                      f"(parent {val['parent'].get('sensitivity_at_1fp', 0):.3f}). Few validation series "
                      "make these figures coarse."]
    fp = manifest.get("fp_reduction")
    if fp:
        lines += ["", "## False-positive reduction", "",
                  f"A 3D patch classifier (`{fp.get('architecture')}`, widths {fp.get('widths')}) looks at a "
                  f"{fp.get('size')}-voxel cube of {fp.get('spacing_mm')} mm around every candidate; the "
                  "candidate's score is the geometric mean of the detector's score and its probability. "
                  f"Trained on the detector's own candidates in {fp.get('volumes', '?')} generated volumes "
                  f"(phantom seeds {fp.get('phantom_seeds', '?')}; {fp.get('train_patches', '?')} patches, "
                  f"{fp.get('train_positives', '?')} of them nodules), {fp.get('steps', '?')} steps. On the "
                  f"held-out fifth of those volumes ({fp.get('validation_candidates', '?')} candidates, "
                  f"{fp.get('validation_nodules', '?')} on nodules) the AUC of nodule vs not is "
                  f"{fp.get('auc_detector', '?')} for the detector's score, "
                  f"{fp.get('auc_classifier', '?')} for the classifier and {fp.get('auc_combined', '?')} "
                  "combined."]
    cal = manifest.get("calibration")
    if cal:
        lines += ["", "## Calibration", "",
                  f"Scores are calibrated: Platt scaling of the raw score's logit (a = {cal['a']:.3f}, "
                  f"b = {cal['b']:.3f}), fitted on {cal.get('fitted_on', '?')} findings "
                  f"({cal.get('positives', '?')} nodules) of "
                  f"{cal.get('fitted_on_data', 'validation studies')}. "
                  "Operating point (score at 1 FP per scan, calibrated): "
                  f"{manifest.get('operating_point', '?')}."]
        for title, figures in (("own family", metrics), ("held-out family", held)):
            rel = figures.get("reliability") or {}
            if rel.get("table"):
                lines += ["", f"Reliability on the {title} (ECE {rel['ece']:.3f} over {rel['findings']} "
                          "findings; a well-calibrated score matches the share of nodules in its bin):", "",
                          "| score bin | findings | mean score | share that are nodules |",
                          "|---|---|---|---|"]
                lines += [f"| {r['bin'][0]:.1f}-{r['bin'][1]:.1f} | {r['findings']} | "
                          f"{r['mean_score']:.2f} | {r['share_nodules']:.2f} |" for r in rel["table"]]
    lines += [
        "",
        "## Limits",
        "",
        "- Synthetic anatomy only: real scans have scars, atelectasis, effusions, devices, motion and "
        "other findings no generator here draws. Expect more false positives, and misses, on real CT.",
        "- Axial CT only; other orientations and modalities are refused with a clear error; a series with "
        "no lung in it is refused before detection (\"no lung in this series\").",
        "- Nodules under 3 mm and masses over 50 mm were not in the training data.",
        "- Both generator families are synthetic; the held-out family tests generalisation to another "
        "way of drawing chest CT, not to patients.",
        "",
        f"Intended use: {manifest.get('intended_use', 'research; not for clinical use')}",
        "",
    ]
    return "\n".join(lines)


def write_card(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    path = model_dir / "MODEL_CARD.md"
    atomic_write_text(path, render_card(read_manifest(model_dir)))
    return path
