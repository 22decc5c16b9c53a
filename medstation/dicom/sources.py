"""Turn what the user points at (folders, files, DICOMDIR, .zip) into file paths.

Paths taken from a DICOMDIR or a zip never leave their root: an entry such as
``../../etc/passwd`` or an absolute path is refused with a ``LoadError``.
Zip archives are extracted (with size limits against zip bombs) into a cache
folder so the study database can point at real files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from medstation.core.errors import LoadError
from medstation.dicom.header import read_head
from medstation.dicom.volume_files import is_data_file_of_a_header

MAX_ZIP_BYTES = 20 * 1024**3  # total uncompressed size accepted from one archive
MAX_ZIP_RATIO = 200  # uncompressed / compressed, per entry (zip bomb guard)


@dataclass
class Collected:
    files: list[str] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)


def inside(root: Path, candidate: Path) -> bool:
    """True when ``candidate`` resolves to a path within ``root``."""
    try:
        candidate.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def collect(inputs, extract_dir: str | Path | None = None) -> Collected:
    """Expand inputs into a sorted, de-duplicated list of candidate files.

    A file named directly is read once (its first 512 bytes) to tell a DICOM file,
    a DICOMDIR and a zip archive apart; a file is listed once however it is reached
    (same device and inode: links and ``..`` paths included).
    """
    out = Collected()
    seen: set = set()

    def add(p: Path, st: os.stat_result | None = None) -> None:
        try:
            st = st or os.stat(p)
            key: object = (st.st_dev, st.st_ino)
        except OSError:  # listed anyway: the scan reports why it cannot be read
            key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            out.files.append(str(p))

    for raw in inputs:
        p = Path(raw)
        try:
            st = os.stat(p)
        except OSError:
            out.errors.append(LoadError(p, "no such file or folder", "check the path"))
            continue
        if stat.S_ISDIR(st.st_mode):
            # linked folders are followed, each real folder once: a link back up (a loop) or to a folder
            # already walked is named as skipped, never walked again
            walked = {(st.st_dev, st.st_ino)}
            for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
                keep = []
                for d in sorted(dirnames):
                    sub = Path(dirpath) / d
                    try:
                        sst = os.stat(sub)
                    except OSError:
                        out.errors.append(LoadError(sub, "a linked folder whose target is missing",
                                                    "fix or remove the link"))
                        continue
                    if (sst.st_dev, sst.st_ino) in walked:
                        out.errors.append(LoadError(sub, "a link to a folder already imported (a loop, or "
                                                    "a second path to it): skipped", "nothing to do"))
                        continue
                    walked.add((sst.st_dev, sst.st_ino))
                    keep.append(d)
                dirnames[:] = keep
                for name in sorted(filenames):
                    f = Path(dirpath) / name
                    # a DICOMDIR in a walked folder is listed (as skipped) by the scan;
                    # the files it points at are in this folder tree anyway
                    if name.lower().endswith(".zip") and zipfile.is_zipfile(f):
                        _from_zip(f, extract_dir, out, add)
                    elif is_data_file_of_a_header(f):
                        continue  # x.raw of x.mhd: read through its header
                    elif f.is_file():
                        add(f)
                    elif f.is_symlink() and not f.exists():
                        out.errors.append(LoadError(f, "a link whose target is missing",
                                                    "fix or remove the link"))
            continue
        head = read_head(p, 512)
        dicom = head[128:132] == b"DICM"
        if p.name.upper() == "DICOMDIR" or (dicom and _DICOMDIR_UID in head):
            _from_dicomdir(p, out, add)
        elif not dicom and zipfile.is_zipfile(p):
            _from_zip(p, extract_dir, out, add)
        else:
            add(p, st)
    return out


_DICOMDIR_UID = b"1.2.840.10008.1.3.10"  # Media Storage Directory Storage


def _from_dicomdir(p: Path, out: Collected, add) -> None:
    import pydicom

    root = p.parent
    try:
        ds = pydicom.dcmread(p)
        records = ds.DirectoryRecordSequence
    except Exception as exc:
        out.errors.append(LoadError(p, f"cannot read the DICOMDIR: {type(exc).__name__}",
                                    "import the folder instead of the DICOMDIR"))
        return
    for rec in records:
        ref = rec.get("ReferencedFileID")
        if not ref:
            continue
        parts = [str(x) for x in ref] if not isinstance(ref, str) else [ref]
        target = root.joinpath(*parts)
        if any(part in ("..", "") or os.path.isabs(part) for part in parts) or not inside(root, target):
            out.errors.append(LoadError(p, f"the DICOMDIR points outside its folder: {'/'.join(parts)}",
                                        "the DICOMDIR is damaged or malicious; import the folder"))
            continue
        if not target.exists():
            # media written on case-insensitive systems: try a case-insensitive match
            target = _case_insensitive(root, parts) or target
        if target.is_file():
            add(target)
        else:
            out.errors.append(LoadError(target, "listed in the DICOMDIR but missing",
                                        "copy the whole disc or folder again"))


def _case_insensitive(root: Path, parts: list[str]) -> Path | None:
    cur = root
    for part in parts:
        try:
            match = next((c for c in cur.iterdir() if c.name.upper() == part.upper()), None)
        except OSError:
            return None
        if match is None:
            return None
        cur = match
    return cur


def _from_zip(p: Path, extract_dir, out: Collected, add) -> None:
    if extract_dir is None:
        out.errors.append(LoadError(p, "zip archives need a folder to extract into",
                                    "pass a database or extract the archive first"))
        return
    digest = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:16]
    dest = Path(extract_dir) / f"{p.stem}-{digest}"
    try:
        with zipfile.ZipFile(p) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            total = sum(i.file_size for i in infos)
            if total > MAX_ZIP_BYTES:
                raise LoadError(p, f"the archive expands to {total / 1024**3:.1f} GiB, above the "
                                   f"{MAX_ZIP_BYTES / 1024**3:.0f} GiB limit",
                                "extract it yourself and import the folder")
            tmp = dest.with_name(dest.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            for info in infos:
                target = tmp / info.filename
                if os.path.isabs(info.filename) or ".." in Path(info.filename).parts \
                        or not inside(tmp, target):
                    out.errors.append(LoadError(p, f"archive entry points outside the archive: "
                                                   f"{info.filename!r}; skipped",
                                                "the archive is damaged or malicious"))
                    continue
                if info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO:
                    ratio = info.file_size // max(1, info.compress_size)
                    out.errors.append(LoadError(p, f"archive entry {info.filename!r} expands "
                                                   f"{ratio}x; skipped",
                                                "the archive looks like a zip bomb"))
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            # the extracted tree appears whole or not at all
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
    except LoadError as exc:
        out.errors.append(exc)
        return
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
        out.errors.append(LoadError(p, f"cannot extract the archive: {exc}",
                                    "the archive is damaged or encrypted; extract it yourself"))
        return
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames.sort()
        for name in sorted(filenames):
            if name.upper() != "DICOMDIR":
                add(Path(dirpath) / name)
