"""Screenshot of the PACS dialog against a real Orthanc.

Run: `xvfb-run -a .venv/bin/python packaging/screenshot_pacs.py`.

Starts Orthanc (Debian package) on loopback ports with the test suite's helper,
stores the demo study into it with medstation's C-STORE, searches it from the
dialog and saves resources/screenshots/pacs-search.png.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "resources" / "screenshots"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="medstation-pacs-shot-"))
    os.environ["MEDSTATION_DATA"] = str(tmp / "data")
    os.environ["MEDSTATION_DB"] = str(tmp / "studies.sqlite")
    from PySide6.QtCore import QTimer

    from medstation.dicom.pacs import DimseClient, PacsNode, save_nodes, set_node_password
    from medstation.gui.app import build_window, check_display, create_app
    from medstation.synth import demo_study
    from tests._orthanc import PASSWORD, USER, Orthanc

    server = Orthanc(tmp / "orthanc").start()
    try:
        truth = demo_study(tmp / "demo")
        node = PacsNode("Radiology PACS (Orthanc)", port=server.dicom_port, ae_title=server.aet,
                        calling_ae=server.client_aet, store_port=server.store_port,
                        dicomweb_url=server.dicomweb_url, username=USER)
        set_node_password(node, PASSWORD)
        DimseClient(node).store(sorted(str(p) for p in Path(truth.folder).rglob("*.dcm")))
        save_nodes([node])
        check_display()
        app = create_app()
        win = build_window()
        win.resize(1500, 940)
        win.show()
        dialog = win.show_pacs()
        dialog.patient_id.setText(truth.patient_id)

        def take(_matches=None):
            QTimer.singleShot(400, lambda: (dialog.grab().save(str(OUT / "pacs-search.png")),
                                            print(f"wrote {OUT / 'pacs-search.png'}", file=sys.stderr),
                                            win.shutdown(), app.quit()))

        dialog.searched.connect(take)
        QTimer.singleShot(500, dialog.search)
        app.exec()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
