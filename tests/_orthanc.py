"""A real Orthanc (Debian packages orthanc + orthanc-dicomweb) as a child process on loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "reader", "s3cret-reader"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    def __init__(self, folder: Path, *, aet: str = "ORTHANC", client_aet: str = "MEDSTATION") -> None:
        self.folder = Path(folder)
        self.aet = aet
        self.client_aet = client_aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.store_port = free_port()  # where medstation's C-MOVE receiver listens
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web"

    def config(self) -> dict:
        storage = self.folder / "storage"
        cfg = {
            "Name": "medstation-test",
            "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "Plugins": [DICOMWEB_PLUGIN] if os.path.exists(DICOMWEB_PLUGIN) else [],
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
            "DicomServerEnabled": True, "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True, "DicomCheckModalityHost": False,
            "DicomModalities": {"medstation": [self.client_aet, "127.0.0.1", self.store_port]},
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
            "UnknownSopClassAccepted": False, "DicomScpTimeout": 30,
            # enough association threads that one left open by an earlier test (a cancelled retrieve)
            # never leaves the next test unanswered
            "DicomThreadsCount": 16,
            "StableAge": 1, "SaveJobs": False, "ConcurrentJobs": 2, "HttpTimeout": 30,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        }
        return cfg

    def start(self, timeout: float = 30.0) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg_path = self.folder / "orthanc.json"
        cfg_path.write_text(json.dumps(self.config(), indent=2))
        self.log = open(self.folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(cfg_path)], stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=self.folder, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.folder / "orthanc.log").read_text()[-3000:]
                raise RuntimeError("Orthanc exited at start:\n" + log)
            try:
                if requests.get(self.url + "/system", auth=(USER, PASSWORD), timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not start within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        self.process = None

    # REST helpers for the tests (not what medstation uses)
    def rest(self, method: str, path: str, **kw):
        r = requests.request(method, self.url + path, auth=(USER, PASSWORD), timeout=30, **kw)
        r.raise_for_status()
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r

    def upload(self, files) -> None:
        for f in files:
            self.rest("POST", "/instances", data=Path(f).read_bytes())

    def clear(self) -> None:
        for pid in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{pid}")
