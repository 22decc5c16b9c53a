"""Regenerate the README screenshots from the real app: `bash packaging/screenshots.sh`.

Runs the main window on a real X server (Xvfb), opens the built-in demo study,
draws two measurements on the largest nodule, and saves what the window shows
in a few states to resources/screenshots/. Uses a throw-away data folder.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "resources" / "screenshots"


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="medstation-shots-")
    os.environ["MEDSTATION_DATA"] = tmp
    os.environ["MEDSTATION_DB"] = str(Path(tmp) / "studies.sqlite")
    from PySide6.QtCore import QTimer

    from medstation.gui.app import build_window, check_display, create_app
    from medstation.imaging import PRESETS, Measurement

    check_display()
    app = create_app()
    win = build_window()
    win.resize(1500, 940)
    win.show()
    OUT.mkdir(parents=True, exist_ok=True)
    steps = []

    def shot(name):
        def take():
            win.grab().save(str(OUT / f"{name}.png"))
            print(f"wrote {OUT / name}.png", file=sys.stderr)
        return take

    def on_detected(_key, _run):
        win.ai.detection_finished.disconnect(on_detected)
        truth = json.loads((Path(tmp) / "demo" / "truth.json").read_text())
        lll = next(n for n in truth["nodules"] if n["label"].startswith("LUL"))
        target = min(win.state.findings.visible(),
                     key=lambda f: sum((a - b) ** 2 for a, b in zip(f.center_mm, lll["center"])))

        def show_ai():
            win.panels["findings"].raise_()
            win.state.findings.select(target)

        steps.extend([
            (10, show_ai),
            (600, shot("viewer-ai-findings")),
            (10, lambda: win.state.heatmap.set_show(True)),
            (600, shot("viewer-ai-heatmap")),
            (10, lambda: (win.state.heatmap.set_show(False), win.panels["finetune"].raise_())),
            (600, shot("viewer-finetune-panel")),
            (10, lambda: win.panels["findings"].raise_()),
            (10, lambda: win.set_layout("2x2")),
            (10, lambda: win.state.findings.select(target)),
            (600, shot("viewer-ai-mpr-2x2")),
            (10, lambda: win.state.set_slab("mip", 10.0)),  # a sliding thick-slab MIP, every plane
            (600, shot("viewer-slab-mip-2x2")),
            (10, lambda: win.state.set_slab("off")),
            (10, lambda: (win.set_layout("1x1"), win.panels["measurements"].raise_(), measure())),
        ] + later)
        run_next()

    later = []

    def measure():
        truth = json.loads((Path(tmp) / "demo" / "truth.json").read_text())
        nodule = truth["nodules"][0]
        vol = win.state.volume
        idx = vol.patient_to_index(nodule["center"])
        win.state.set_position(idx)
        k = int(round(idx[0]))
        r = nodule["diameter_mm"] / 2 / vol.spacing[1]
        win.state.add_measurement(Measurement("length", 0, k, [(k, idx[1], idx[2] - r),
                                                               (k, idx[1], idx[2] + r)]))
        win.state.add_measurement(Measurement("ellipse", 0, k, [(k, idx[1] - 2 * r, idx[2] + 1.5 * r),
                                                                (k, idx[1] + 1 * r, idx[2] + 5 * r)]))
        win.state.select(None)
        for view in win.viewer.views.values():
            view.fit()
            view._update_hover(view.rect().center())

    def on_loaded(_uid):
        win.series_loaded.disconnect(on_loaded)
        later.extend([
            (400, shot("viewer-axial-lung")),
            (10, lambda: win.set_layout("2x2")),
            (400, shot("viewer-mpr-2x2")),
            (10, lambda: win.set_layout("1x3")),
            (10, lambda: win.state.set_window(PRESETS["Mediastinum"])),
            (400, shot("viewer-mpr-1x3-mediastinum")),
            (10, lambda: (win.panels["tags"].show(), win.panels["tags"].raise_(), win.set_layout("1x1"))),
            (600, shot("viewer-tags")),
            (10, lambda: (win.panels["findings"].raise_(), win.state.set_window(PRESETS["Lung"]))),
        ] + reading_sizes() + [(10, win.close)])

    def reading_sizes():
        """The reading layouts at two screen sizes, inverted and not (issue 14's review set)."""
        out = []
        for w, h in ((1280, 720), (1920, 1080)):
            out.append((10, lambda w=w, h=h: win.resize(w, h)))
            for layout in ("1x1", "2x2", "1x3"):
                for inverted in (False, True):
                    name = f"reading-{w}x{h}-{layout}" + ("-inverted" if inverted else "")
                    out += [(10, lambda lay=layout, inv=inverted: (win.set_layout(lay),
                                                                    win.state.set_invert(inv))),
                            (500, shot(name))]
        out.append((10, lambda: (win.state.set_invert(False), win.resize(1500, 940))))
        return out

    def run_next():
        if steps:
            delay, fn = steps.pop(0)
            QTimer.singleShot(delay, lambda: (fn(), run_next()))

    win.series_loaded.connect(on_loaded)
    win.ai.detection_finished.connect(on_detected)
    QTimer.singleShot(200, win.open_demo)
    QTimer.singleShot(300_000, win.close)  # never hang a CI job
    app.exec()
    win.shutdown()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
