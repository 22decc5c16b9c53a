"""Single instance: a second start hands its study to the running window, which opens it."""

from __future__ import annotations

import subprocess
import sys
import uuid

from medstation.gui.instance import attach

CLIENT = """
import sys
from PySide6.QtCore import QCoreApplication
from medstation.gui.instance import send_to_running
app = QCoreApplication([])
sys.exit(0 if send_to_running(sys.argv[1], sys.argv[2:], timeout_ms=3000) else 3)
"""


def test_second_start_opens_in_the_running_window(qtbot, window, small_study):
    name = f"medstation-test-{uuid.uuid4().hex[:8]}"
    server = attach(window, name)
    assert server.listening
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, name, small_study.folder])
    with qtbot.waitSignal(window.series_loaded, timeout=60000):
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=20000)
    assert proc.returncode == 0
    assert window.state.volume is not None


def test_no_running_window_means_start_normally(qtbot):
    from medstation.gui.instance import send_to_running
    assert send_to_running(f"medstation-none-{uuid.uuid4().hex[:8]}", ["/x"], timeout_ms=200) is False
