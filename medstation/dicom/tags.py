"""The DICOM tag inspector's data: every element of one file as rows, sequences nested."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset

from medstation.core.errors import LoadError

MAX_VALUE_CHARS = 160


@dataclass
class TagRow:
    depth: int  # 0 for top-level elements, +1 per sequence item level
    tag: str  # "(0010,0010)"
    name: str
    vr: str
    value: str


def _value(elem) -> str:
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or elem.tag == 0x7FE00010:
        n = len(elem.value) if elem.value is not None else 0
        return f"<{n} bytes>"
    text = str(elem.value) if elem.value is not None else ""
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _walk(ds: Dataset, depth: int, out: list[TagRow]) -> None:
    for elem in ds:
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        name = elem.name if elem.tag.is_private is False else f"{elem.name} [private]"
        if elem.VR == "SQ":
            out.append(TagRow(depth, tag, name, "SQ", f"{len(elem.value)} item(s)"))
            for n, item in enumerate(elem.value):
                out.append(TagRow(depth + 1, "", f"Item {n + 1}", "", ""))
                _walk(item, depth + 2, out)
        else:
            out.append(TagRow(depth, tag, name, str(elem.VR), _value(elem)))


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def read_tags(path: str) -> list[TagRow]:
    """All elements of ``path`` except the pixel data, file meta first (a NIfTI / MetaImage / NRRD
    file: its header fields as SimpleITK reads them)."""
    from medstation.dicom.volume_files import header_fields, is_volume_file

    if is_volume_file(path):
        return [TagRow(0, "", key, "", _short(value)) for key, value in header_fields(path)]
    try:
        with warnings.catch_warnings():  # oddities pydicom warns about are shown as they are
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, defer_size=4096)
        rows: list[TagRow] = []
        if getattr(ds, "file_meta", None) is not None:
            _walk(ds.file_meta, 0, rows)
        _walk(ds, 0, rows)
        return rows
    except Exception as exc:  # noqa: BLE001 - any parser failure is this file's problem
        raise LoadError(path, f"cannot read the header: {exc}",
                        "the file may be damaged; `medstation info` lists what is readable") from None
