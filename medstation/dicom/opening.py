"""The one way from a path or a ``SeriesRef`` to a ``Volume``, and the one list of what a path holds.

Every caller goes through here: the CLI commands (``info``, ``detect``,
``selftest``), the benchmarks, the evaluation and the viewer.

* :func:`list_series` -- folders, files, DICOMDIRs or ``.zip`` archives in; every
  image stack found (a ``SeriesStack`` with its ``SeriesRef``), the headers, and
  the files that could not be used.
* :func:`resolve_series` -- a path, a list of files, a ``SeriesRef`` (looked up
  in the study database) or a ``SeriesStack`` in; the stack to load (the largest
  part unless the reference names one), all parts, and the text a viewer shows.
* :func:`open_series` -- the same sources in; the loaded ``Volume`` out (in an
  :class:`OpenedSeries` that also carries the slices that failed), with
  ``progress(done, total)``, ``cancel`` and ``on_slice(k)`` for progressive display.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from medstation.core.errors import LoadError
from medstation.core.series import SeriesRef
from medstation.core.volume import Volume
from medstation.dicom._pool import WorkerPool
from medstation.dicom.header import InstanceHeader
from medstation.dicom.loader import load_stack, scan
from medstation.dicom.series import SeriesStack, assemble
from medstation.dicom.sources import collect

Progress = Callable[[int, int], None]
#: what ``resolve_series`` and ``open_series`` accept
Source = Union[str, Path, Sequence[Union[str, Path]], SeriesRef, SeriesStack]  # noqa: UP007 (runtime alias)


def stack_ref(stack: SeriesStack) -> SeriesRef:
    """The reference of one assembled stack (its study, series and part)."""
    return SeriesRef(stack.first.study_uid, stack.series_uid, int(stack.part))


@dataclass
class SeriesListing:
    """What :func:`list_series` found."""

    stacks: list[SeriesStack] = field(default_factory=list)
    headers: list[InstanceHeader] = field(default_factory=list)
    problems: list[LoadError] = field(default_factory=list)  # damaged or unreadable files
    skipped: list[LoadError] = field(default_factory=list)  # not DICOM

    @property
    def refs(self) -> list[SeriesRef]:
        return [stack_ref(s) for s in self.stacks]


@dataclass
class ResolvedSeries:
    """The stack to load, every part of its series, and the corner text (patient, study, series)."""

    stack: SeriesStack
    parts: list[SeriesStack]
    info: dict[str, str]
    #: the series UID the database knows it by (files without a Series Instance UID get a
    #: stand-in there); "" when the stack's own UID names it
    database_uid: str = ""

    @property
    def ref(self) -> SeriesRef:
        ref = stack_ref(self.stack)
        return SeriesRef(ref.study_uid, self.database_uid, ref.part) if self.database_uid else ref


@dataclass
class OpenedSeries:
    """A loaded series: the ``Volume``, its reference, and the slices that could not be read."""

    volume: Volume
    ref: SeriesRef
    stack: SeriesStack
    info: dict[str, str]
    errors: list[LoadError] = field(default_factory=list)
    seconds: float = 0.0
    first_slice_seconds: float = 0.0


def list_series(paths: Iterable[str | Path], pool: WorkerPool | None = None, *,
                progress: Progress | None = None, cancel: threading.Event | None = None,
                extract_dir: str | Path | None = None) -> SeriesListing:
    """Every image stack under ``paths`` (header scan only; no pixels are decoded).

    ``.zip`` archives are extracted into ``extract_dir`` (a temporary folder that is
    removed again when None: pass a folder to load the stacks afterwards).
    """
    paths = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    with _pool(pool) as p, _folder(extract_dir) as tmp:
        found = collect(paths, extract_dir=tmp)
        scanned = scan(found.files, p, progress=progress, cancel=cancel)
    return SeriesListing(assemble(scanned.headers), scanned.headers,
                         list(found.errors) + list(scanned.errors), list(scanned.skipped))


def patient_age(age: str, birth_date: str, study_date: str) -> str:
    """``"64 y"``, ``"8 m"``, ... from Patient's Age, else from the birth and study dates."""
    if len(age) == 4 and age[:3].isdigit() and age[3] in "DWMY":
        return f"{int(age[:3])} {age[3].lower()}"
    if len(birth_date) == 8 and len(study_date) == 8 and (birth_date + study_date).isdigit():
        b, s = (int(birth_date[:4]), int(birth_date[4:6]), int(birth_date[6:])), \
            (int(study_date[:4]), int(study_date[4:6]), int(study_date[6:]))
        years = s[0] - b[0] - ((s[1], s[2]) < (b[1], b[2]))
        return f"{years} y" if 0 <= years < 150 else ""
    return ""


def series_info(stack: SeriesStack) -> dict[str, str]:
    """Patient, study and series as a reader reads them (for the viewer's corners and titles)."""
    h = stack.first
    date = h.study_date
    age_sex = " ".join(t for t in (patient_age(h.patient_age, h.birth_date, date), h.sex) if t)
    acquisition = [f"{h.slice_thickness:g} mm" if h.slice_thickness else "",
                   f"{h.kvp:g} kV" if h.kvp else "",
                   f"{h.exposure_mas:.0f} mAs" if h.exposure_mas else ""]
    return {
        "patient": h.patient_name.replace("^", " ").strip(),
        "patient_id": h.patient_id,
        "age_sex": age_sex,
        "study": (f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else date)
        + (f"  {h.study_description}" if h.study_description else ""),
        "series": f"{h.modality} #{h.series_number if h.series_number is not None else '-'} "
                  f"{h.series_description}".strip(),
        "acquisition": "  ".join(t for t in acquisition if t),
    }


def _pick(stacks: list[SeriesStack], ref: SeriesRef | None, where: str,
          from_database: bool = False) -> ResolvedSeries:
    if ref is not None and not from_database:  # the database's headers are all of this series
        stacks = [s for s in stacks if s.series_uid == ref.series_uid]
    if not stacks:
        if ref is not None:
            raise LoadError(where, "no image slices in this series",
                            "it may hold only non-image objects (SR, presentation states)")
        raise LoadError(where, "no image series found", "point medstation at a folder of DICOM image files")
    if ref is not None and ref.part:
        chosen = [s for s in stacks if s.part == ref.part]
        if not chosen:
            raise LoadError(where, f"series {ref.series_uid} has no part {ref.part} "
                            f"(it has {len(stacks)})", "open the series as a whole")
        stack = chosen[0]
    else:
        stack = max(stacks, key=lambda s: len(s.slices))
    parts = [s for s in stacks if s.series_uid == stack.series_uid]
    database_uid = ref.series_uid if from_database and ref is not None and \
        ref.series_uid != stack.series_uid else ""
    return ResolvedSeries(stack, parts, series_info(stack), database_uid)


def resolve_series(source: Source, *, db=None, pool: WorkerPool | None = None,
                   series: SeriesRef | str | None = None,
                   extract_dir: str | Path | None = None) -> ResolvedSeries:
    """The stack ``source`` names, without decoding pixels.

    ``source``: a ``SeriesRef`` looked up in the study database ``db``; a file,
    folder, archive or list of files (the largest stack found, or the series
    ``series`` names); or a ``SeriesStack`` as it is. Files inside a ``.zip`` need
    an ``extract_dir`` that outlives the load (``open_series`` makes one). Raises
    ``LoadError`` naming the series or path and what to do.
    """
    if isinstance(source, SeriesStack):
        return ResolvedSeries(source, [source], series_info(source))
    if isinstance(source, SeriesRef):
        ref = source
        if db is None:
            raise ValueError("a SeriesRef is looked up in the study database: pass db=")
        headers = db.index.series_headers(ref)
        if not headers:
            raise LoadError(None, f"series {ref.series_uid} has no readable files in the study database",
                            "the files may have moved: import their folder again")
        return _pick(assemble(headers), ref, headers[0].path, from_database=True)
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    wanted = SeriesRef.parse(series) if isinstance(series, str) else series
    listing = list_series(paths, pool, extract_dir=extract_dir)
    return _pick(listing.stacks, wanted, ", ".join(str(p) for p in paths[:3]))


def open_series(source: Source, *, db=None, pool: WorkerPool | None = None,
                series: SeriesRef | str | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, on_slice: Callable[[int], None] | None = None,
                volume: Volume | None = None) -> OpenedSeries:
    """Resolve ``source`` (see :func:`resolve_series`) and load it: middle slice first,
    ``on_slice(k)`` as each slice lands, ``progress(done, total)``, ``cancel`` checked
    between slices (``CancelledError``). Slices that fail are left blank and listed
    in ``errors``; the volume's warnings say so."""
    with _pool(pool) as p, contextlib.ExitStack() as scratch:
        # files from a .zip are extracted into a folder that lives as long as the load
        tmp = None if isinstance(source, (SeriesStack, SeriesRef)) else scratch.enter_context(_folder(None))
        resolved = resolve_series(source, db=db, pool=p, series=series, extract_dir=tmp)
        total = len(resolved.stack.slices)
        done = [0]

        def landed(k: int) -> None:
            done[0] += 1
            if on_slice is not None:
                on_slice(k)
            if progress is not None:
                progress(done[0], total)

        result = load_stack(resolved.stack, p, on_slice=landed, cancel=cancel, volume=volume)
    return OpenedSeries(result.volume, resolved.ref, resolved.stack, resolved.info, result.errors,
                        result.seconds, result.first_slice_seconds)


class _pool:
    """The caller's pool, or a private one closed on exit."""

    def __init__(self, pool: WorkerPool | None) -> None:
        self.pool = pool
        self.own = pool is None

    def __enter__(self) -> WorkerPool:
        if self.own:
            self.pool = WorkerPool()
        return self.pool  # type: ignore[return-value]

    def __exit__(self, *exc) -> None:
        if self.own and self.pool is not None:
            self.pool.close()


class _folder:
    """``extract_dir``, or a private temporary folder removed on exit. The private one is only
    named here: it is created when a zip archive is extracted into it (most inputs have none)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = folder
        self._tmp: Path | None = None

    def __enter__(self) -> str:
        if self.folder is not None:
            return str(self.folder)
        self._tmp = Path(tempfile.gettempdir()) / f"medstation-series-{uuid.uuid4().hex}"
        return str(self._tmp)

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
