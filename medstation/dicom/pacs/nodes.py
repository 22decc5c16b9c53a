"""PACS nodes: where a PACS is and how to reach it; saved in the user data folder, passwords in
the OS keyring."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from medstation.core.errors import PacsError
from medstation.core.files import atomic_write_text
from medstation.core.paths import user_data_path

log = logging.getLogger(__name__)

RETRIEVE_METHODS = ("get", "move", "wado")
#: a list of a few nodes is a few kB
MAX_NODES_BYTES = 1_000_000
KEYRING_SERVICE = "medstation-pacs"


@dataclass
class PacsNode:
    """A PACS the user has configured. The password is not part of it (see ``node_password``)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 104
    ae_title: str = "ORTHANC"         # the PACS's AE title (called AE)
    calling_ae: str = "MEDSTATION"    # medstation's AE title, as registered on the PACS
    store_port: int = 11112           # where medstation listens for C-MOVE deliveries
    dicomweb_url: str = ""            # e.g. http://pacs:8042/dicom-web
    username: str = ""
    retrieve: str = "get"             # get | move | wado
    timeout: float = 10.0             # seconds the peer may stay silent
    retries: int = 2                  # extra attempts to connect before giving up

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PacsNode:
        if not isinstance(data, dict):
            raise PacsError(f"a PACS node is a {type(data).__name__}, not an object", "add the node again")
        known = {f.name for f in fields(cls)}
        node = cls(**{k: v for k, v in data.items() if k in known})
        node.validate()
        return node

    def validate(self) -> None:
        """Types and bounds of every field (a node file is user input: a retry count of 1e9 or a
        timeout of NaN would hang a query)."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": (int, float), "str": str}[str(f.type)]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise PacsError(f"PACS node {str(self.name)[:40]!r}: {f.name} is a {type(value).__name__}",
                                f"give {f.name} as {'a number' if kind is not str else 'text'}")
        if not self.name.strip() or len(self.name) > 64 or not self.name.isprintable():
            raise PacsError("a PACS node needs a name (1 to 64 printable characters)",
                            "give it one in the PACS dialog")
        if not self.host.strip() or len(self.host) > 255 or any(c.isspace() for c in self.host):
            raise PacsError(f"{self.name}: host {self.host[:40]!r} is not a host name or address",
                            "enter the PACS's host name or IP address")
        if not (math.isfinite(self.timeout) and 0.1 <= self.timeout <= 600):
            raise PacsError(f"{self.name}: timeout {self.timeout} s out of range", "use 0.1 to 600 seconds")
        if not 0 <= self.retries <= 10:
            raise PacsError(f"{self.name}: {self.retries} retries out of range", "use 0 to 10")
        if self.dicomweb_url and (len(self.dicomweb_url) > 2048
                                  or not self.dicomweb_url.startswith(("http://", "https://"))):
            raise PacsError(f"{self.name}: DICOMweb URL {self.dicomweb_url[:60]!r} is not http(s)",
                            "enter the server's DICOMweb URL, e.g. http://pacs:8042/dicom-web")
        if len(self.username) > 128:
            raise PacsError(f"{self.name}: the user name is longer than 128 characters", "shorten it")
        for label, aet in (("called AE title", self.ae_title), ("calling AE title", self.calling_ae)):
            if not aet or len(aet) > 16 or "\\" in aet or not aet.isprintable():
                raise PacsError(f"{self.name}: {label} {aet!r} is not a valid AE title",
                                "use 1 to 16 printable characters without backslash")
        if not 0 < int(self.port) < 65536 or not 0 <= int(self.store_port) < 65536:
            raise PacsError(f"{self.name}: port {self.port} / {self.store_port} out of range",
                            "ports are 1 to 65535")
        if self.retrieve not in RETRIEVE_METHODS:
            raise PacsError(f"{self.name}: unknown retrieve method {self.retrieve!r}",
                            f"use one of {', '.join(RETRIEVE_METHODS)}")
        if self.retrieve == "wado" and not self.dicomweb_url:
            raise PacsError(f"{self.name}: WADO-RS needs a DICOMweb URL", "enter the server's DICOMweb URL")

    @property
    def where(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def nodes_path() -> Path:
    return user_data_path() / "pacs_nodes.json"


def load_nodes(path: Path | None = None) -> list[PacsNode]:
    path = path or nodes_path()
    if not path.exists():
        return []
    fix = "fix or delete the file and add the nodes again"
    try:
        if path.stat().st_size > MAX_NODES_BYTES:
            raise PacsError(f"{path}: {path.stat().st_size} bytes is not a PACS list", fix)
        data = json.loads(path.read_text(encoding="utf-8"))
        nodes = data["nodes"]
        if not isinstance(nodes, list):
            raise TypeError("'nodes' is not a list")
        return [PacsNode.from_dict(d) for d in nodes]
    except PacsError as exc:
        raise PacsError(f"{path}: {exc.reason}", exc.hint) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise PacsError(f"{path}: the PACS list could not be read ({type(exc).__name__}: {str(exc)[:120]})",
                        fix) from None


def save_nodes(nodes: Sequence[PacsNode], path: Path | None = None) -> None:
    path = path or nodes_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"nodes": [n.to_dict() for n in nodes]}, indent=2))


_session_passwords: dict[str, str] = {}


def set_node_password(node: PacsNode, password: str) -> bool:
    """Keep a password in the OS keyring; True if it was saved there, False if only for this session."""
    _session_passwords[node.name] = password
    try:
        import keyring
        keyring.set_password(KEYRING_SERVICE, f"{node.name}:{node.username}", password)
        return True
    except Exception as exc:  # no keyring backend on this machine: keep it in memory only
        log.info("no OS keyring (%s): the PACS password is kept for this session only", type(exc).__name__)
        return False


def node_password(node: PacsNode) -> str:
    if node.name in _session_passwords:
        return _session_passwords[node.name]
    try:
        import keyring
        return keyring.get_password(KEYRING_SERVICE, f"{node.name}:{node.username}") or ""
    except Exception:
        return ""
