"""PACS nodes: where a PACS is and how to reach it; saved in the user data folder, passwords in
the OS keyring."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from medstation.core.errors import PacsError
from medstation.core.files import atomic_write_text
from medstation.core.paths import user_data_path

log = logging.getLogger(__name__)

RETRIEVE_METHODS = ("get", "move", "wado")
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
        known = {f.name for f in fields(cls)}
        node = cls(**{k: v for k, v in data.items() if k in known})
        node.validate()
        return node

    def validate(self) -> None:
        if not self.name.strip():
            raise PacsError("a PACS node needs a name", "give it one in the PACS dialog")
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [PacsNode.from_dict(d) for d in data["nodes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PacsError(f"{path}: the PACS list could not be read ({exc})",
                        "fix or delete the file and add the nodes again") from exc


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
