"""One medstation window per user and study database: a second start hands its paths to the first.

The running app listens on a local socket (``QLocalServer``) named after the user and the
study database. ``medstation open STUDY`` (or a double-click on a DICOM folder) first tries
to connect; if a window answers, the paths go to it (it imports and opens them and comes to
the front) and the second process exits.
"""

from __future__ import annotations

import getpass
import hashlib
import json

from PySide6.QtCore import QByteArray, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket


def server_name(db_path: str) -> str:
    digest = hashlib.sha256(f"{getpass.getuser()}|{db_path}".encode()).hexdigest()[:16]
    return f"medstation-{digest}"


def send_to_running(name: str, paths: list[str], demo: bool = False, timeout_ms: int = 500) -> bool:
    """True if a running medstation took the request."""
    sock = QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(timeout_ms):
        return False
    sock.write(QByteArray(json.dumps({"open": list(paths), "demo": demo}).encode() + b"\n"))
    sock.flush()
    if sock.bytesToWrite():
        sock.waitForBytesWritten(timeout_ms)
    ok = sock.waitForReadyRead(max(timeout_ms, 2000)) and bytes(sock.readAll().data()).strip() == b"ok"
    sock.disconnectFromServer()
    return bool(ok)


#: the longest request line taken (a few hundred paths); longer ones are refused unread
MAX_REQUEST_BYTES = 64 * 1024
MAX_PATHS = 1000


class InstanceServer(QObject):
    """Listens for later starts; emits ``request(paths, demo)`` on the GUI thread.

    The socket is the user's alone (``UserAccessOption``: mode 0600 whatever the umask), and a
    request is one JSON line of at most ``MAX_REQUEST_BYTES`` with at most ``MAX_PATHS`` paths.
    """

    request = Signal(list, bool)

    def __init__(self, name: str, parent=None) -> None:
        super().__init__(parent)
        self.server = QLocalServer(self)
        QLocalServer.removeServer(name)  # a stale socket left by a crash
        self.server.setSocketOptions(QLocalServer.UserAccessOption)
        self.listening = self.server.listen(name)
        self.server.newConnection.connect(self._accept)

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            sock.readyRead.connect(lambda s=sock: self._read(s))

    def _read(self, sock: QLocalSocket) -> None:
        if not sock.canReadLine():
            if sock.bytesAvailable() > MAX_REQUEST_BYTES:  # no end in sight: refuse, do not buffer it
                self._refuse(sock)
            return
        line = bytes(sock.readLine(MAX_REQUEST_BYTES + 1).data())
        try:
            if len(line) > MAX_REQUEST_BYTES:
                raise ValueError("request too long")
            msg = json.loads(line.decode())
            paths = [str(p) for p in msg.get("open", [])]
            demo = bool(msg.get("demo", False))
            if len(paths) > MAX_PATHS or any(len(p) > 4096 or "\0" in p for p in paths):
                raise ValueError("too many or too long paths")
        except (ValueError, AttributeError, UnicodeDecodeError, TypeError):
            self._refuse(sock)
            return
        sock.write(QByteArray(b"ok\n"))
        sock.flush()
        self.request.emit(paths, demo)


    @staticmethod
    def _refuse(sock: QLocalSocket) -> None:
        sock.write(QByteArray(b"bad\n"))
        sock.flush()
        sock.disconnectFromServer()


def attach(window, name: str) -> InstanceServer:
    """Make ``window`` the one that later starts hand their paths to."""
    server = InstanceServer(name, window)

    def handle(paths: list[str], demo: bool) -> None:
        window.showNormal()
        window.raise_()
        window.activateWindow()
        if demo:
            window.open_demo()
        if paths:
            window.import_paths(paths, open_after=True)

    server.request.connect(handle)
    window.instance_server = server  # closed (its socket file removed) when the window shuts down
    return server
