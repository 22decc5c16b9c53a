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
        "- Findings kept: " + ("those centred in the search region (each lung's convex hull grown 5 mm "
                               "in-plane: central, hilar and juxtamediastinal tumours; never the neck or the "
                               "abdomen)." if manifest.get("keep_findings_in") == "search region" else
                               "those centred in the air-based lung mask."),
        f"- Classes: {', '.join(manifest.get('classes', []))}.",
        f"- Parent version: {manifest.get('parent_version') or 'none (trained from scratch)'}.",
        f"- Weights sha256: `{manifest.get('sha256', '')}`.",
        "",
        "## Training data",
        "",
        *_kernel_model(td),
        f"- Source: {td.get('source', 'unknown')}.",
        f"- {td.get('samples', '?')} rendered 2.5D samples "
        f"({td.get('samples_with_nodules', '?')} with nodules) "
        f"from phantom seeds {seed_text}; nodules {td.get('nodule_diameters_mm', '?')} mm"
        + (f", masses {td['masses_mm']} mm" if td.get("masses_mm") else "") + ".",
        *([f"- Nodule types: {', '.join(td['nodule_types'])}."] if td.get("nodule_types") else []),
        *([f"- Anatomy: {', '.join(td['anatomy'])}."] if td.get("anatomy") else []),
        *([f"- Lung disease: {', '.join(td['disease'])}."] if td.get("disease") else []),
        *([f"- Masses: {', '.join(td['masses'])}."] if td.get("masses") else []),
        *([f"- Extra small nodules: {td['small_nodules_mm'][0]:g}-{td['small_nodules_mm'][1]:g} mm, "
           "some beside vessels."] if td.get("small_nodules_mm") else []),
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
           if manifest.get("parent_version") and td.get("generator", "1") == "1" else "")
        + (f" --lr {tr['lr']:g} --version {manifest['version']} --generator {td['generator']} --network "
           f"{_network_name(manifest.get('network'))} --epoch-length {tr.get('epoch_length')} "
           f"--validate-every {tr.get('validate_every')} --val-studies {tr.get('val_studies')}"
           if td.get("generator", "1") != "1" else ""),
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
    lines += _every_annotation(metrics)
    lines += _breakdown(metrics)
    lines += _real_ct(metrics.get("real_ct"))
    lines += _validation(manifest.get("validation"))
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
        f"- Nodules under 3 mm and masses over {(td.get('masses_mm') or [0, 50])[1]:g} mm were not in the "
        "training data.",
        "- Both generator families are synthetic; the held-out family tests generalisation to another "
        "way of drawing chest CT, not to patients.",
        "",
        f"Intended use: {manifest.get('intended_use', 'research; not for clinical use')}",
        "",
    ]
    return "\n".join(lines)


def _network_name(network) -> str:
    from medstation.ai.network import NETWORKS

    return next((name for name, net in NETWORKS.items() if net == network), "default")


def _kernel_model(td: dict) -> list[str]:
    """The measured kernel model (generator "2"): what was measured on real CT, what is drawn."""
    if td.get("generator", "1") == "1":
        return []
    from medstation.synth.kernels import KERNELS, MEASURED

    lines = ["Reconstruction kernels are drawn from a model measured on real CT (`medstation.synth.kernels`; "
             "the shared case Lung-PET-CT-Dx Lung_Dx-A0001, Li P et al., TCIA 2020, "
             "doi 10.7937/TCIA.2020.NNC20461, CC BY 4.0, measured only, never trained on):", "",
             "| series | noise SD, soft tissue (HU) | noise SD, air outside the body (HU) | "
             "noise power spectrum peak (cycles/mm) |", "|---|---|---|---|"]
    lines += [f"| {name} | {m['noise_sd_soft_hu']} | {m['noise_sd_air_hu']} | {m['nps_peak_per_mm']} |"
              for name, m in MEASURED.items()]
    lines += ["", "| generator kernel | MTF sigma (mm) | edge enhancement | NPS cut-off fc (cycles/mm; "
              "peak at fc/1.41) | noise SD (HU) | outside / inside the body |", "|---|---|---|---|---|---|"]
    lines += [f"| {k.name} | {k.mtf_sigma_mm[0]:g}-{k.mtf_sigma_mm[1]:g} | "
              f"{k.enhance[0]:g}-{k.enhance[1]:g} | {k.nps_cutoff[0]:g}-{k.nps_cutoff[1]:g} | "
              f"{k.noise_hu[0]:g}-{k.noise_hu[1]:g} | "
              f"{k.air_ratio[0]:g}-{k.air_ratio[1]:g} |" for k in KERNELS]
    lines += ["", "The lung-kernel series lies in the `sharp` range, the standard-kernel series in `soft` "
              "(tested: `tests/test_real_ct.py`). Slices 1-8 mm thick through a Gaussian slice profile.", ""]
    return lines


def _every_annotation(metrics: dict) -> list[str]:
    lines = []
    for key, title in (("own_all", "own family"), ("held_out_all", "held-out family")):
        f = (metrics.get(key) or {}).get("froc")
        if f:
            sens = f["sensitivity_at_fp_per_scan"]
            lines += ["", f"### Every annotation ({title}, nodules of any size)", "",
                      f"{f['scans']} studies (seeds {min(metrics[key].get('eval_seeds', [0]))}-"
                      f"{max(metrics[key].get('eval_seeds', [0]))}), all {f['nodules']} nodules:", "",
                      "| FP per scan | " + " | ".join(k for k in sens) + " |", "|---|" + "---|" * len(sens),
                      "| sensitivity | " + " | ".join(f"{v:.3f}" for v in sens.values()) + " |", "",
                      f"CPM: **{f['cpm']:.3f}**."]
    return lines


def _breakdown(metrics: dict) -> list[str]:
    lines = []
    shown = False
    for key, title in (("held_out_all", "held-out family, every annotation"),
                       ("held_out", "held-out family"),
                       ("held_out_masses_all", "held-out family with masses, every annotation")):
        b = ((metrics.get(key) or {}).get("breakdown") or {}).get("operating point")
        if not b or (shown and key == "held_out"):
            continue
        shown = True
        f = (metrics.get(key) or {}).get("froc") or {}
        if key.startswith("held_out_masses") and f:
            lines += ["", f"### Held-out family with masses ({f['scans']} studies, {f['nodules']} lesions)",
                      "",
                      "`medstation evaluate --family held-out-masses --min-diameter 0`: each study of the "
                      "held-out family with one 35-90 mm mass on the mediastinum or the chest wall, drawn by "
                      "that family's own code, and 1.25, 2.5 or 5 mm slices. CPM "
                      f"**{f['cpm']:.3f}**."]
        lines += ["", f"### Sensitivity at the operating point by kernel, slice thickness and size ({title})",
                  "", f"At score {b['score']:g} (a hit is a candidate strictly inside the nodule's "
                  "radius):", "",
                  "| group | nodules | sensitivity | FP per scan |", "|---|---|---|---|"]
        for part, label in (("by_kernel", "kernel"), ("by_slice_mm", "slice (mm)"),
                            ("by_size_mm", "size (mm)")):
            for value, row in (b.get(part) or {}).items():
                sens = "-" if row.get("sensitivity") is None else f"{row['sensitivity']:.3f}"
                fp = row.get("fp_per_scan")
                lines.append(f"| {label} {value} | {row['nodules']} | {sens} | {'-' if fp is None else fp} |")
    return lines


def _real_ct(real: dict | None) -> list[str]:
    if not real:
        return []
    lines = ["", "### The shared real CT (development case; never trained on)", "",
             f"{real.get('case', '')}. The tumour (a left hilar adenocarcinoma on the mediastinum) in both "
             "reconstructions of one acquisition:", "",
             "| reconstruction | tumour score | found at the operating point | size (what, how) | "
             "findings above the operating point |", "|---|---|---|---|---|"]
    for r in real.get("series", []):
        score = "-" if r.get("score") is None else f"{r['score']:.3f}"
        found = "yes" if r.get("found") else "no"
        lines.append(f"| {r['series']} | {score} | {found} | {r.get('size', '-')} | "
                     f"{r.get('above_operating_point', '-')} |")
    lines += ["", "One patient: a development check, not an evaluation."]
    return lines


def _validation(val: dict | None) -> list[str]:
    hist = (val or {}).get("history") or []
    if not hist:
        return []
    lines = ["", "### Validation curve", "",
             "FROC on generated validation studies (own family, seeds 30000+: neither the evaluation's "
             "nor the calibration's) during training:", "", "| step | CPM | sensitivity at 1 FP/scan |",
             "|---|---|---|"]
    lines += [f"| {h.get('step')} | {h.get('cpm', 0):.3f} | {h.get('sensitivity_at_1fp', 0):.3f} |"
              for h in hist]
    return lines


def write_card(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    path = model_dir / "MODEL_CARD.md"
    atomic_write_text(path, render_card(read_manifest(model_dir)))
    return path
