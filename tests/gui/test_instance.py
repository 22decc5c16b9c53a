"""Single instance: a second start hands its study to the running window, which opens it."""

from __future__ import annotations

import json
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


RAW_CLIENT = """
import sys
from PySide6.QtCore import QCoreApplication, QByteArray
from PySide6.QtNetwork import QLocalSocket
app = QCoreApplication([])
sock = QLocalSocket()
sock.connectToServer(sys.argv[1])
assert sock.waitForConnected(3000)
sock.write(QByteArray(sys.stdin.buffer.read()))
sock.waitForBytesWritten(3000)
ok = sock.waitForReadyRead(3000)
print(bytes(sock.readAll().data()).decode().strip() if ok else "closed")
"""


def test_the_socket_is_the_users_and_requests_are_capped(qtbot, window, tmp_path):
    import os
    import stat

    from PySide6.QtNetwork import QLocalServer

    from medstation.gui.instance import MAX_REQUEST_BYTES

    name = f"medstation-test-{uuid.uuid4().hex[:8]}"
    old = os.umask(0o002)  # a umask that would let the group in
    try:
        server = attach(window, name)
    finally:
        os.umask(old)
    path = server.server.fullServerName()
    assert server.server.socketOptions() == QLocalServer.UserAccessOption
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, oct(os.stat(path).st_mode)
    seen = []
    server.request.connect(lambda paths, demo: seen.append(paths))
    too_long = b"x" * (MAX_REQUEST_BYTES + 10) + b"\n"
    not_json = b'{"open": ["/a"]\n'
    too_many = (json.dumps({"open": ["/p"] * 5000}) + "\n").encode()
    for payload in (too_long, not_json, too_many):
        proc = subprocess.Popen([sys.executable, "-c", RAW_CLIENT, name], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        proc.stdin.write(payload)
        proc.stdin.close()
        qtbot.waitUntil(lambda p=proc: p.poll() is not None, timeout=20000)
        assert proc.stdout.read().decode().strip() in ("bad", "closed")
    assert seen == []
