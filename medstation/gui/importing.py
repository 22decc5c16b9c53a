"""Importing into the study database from the GUI: folders, files, drops, the demo study; thumbnails.

Everything runs as background tasks of the context; the study browser reloads
on ``ctx.studies_changed`` and ``open_after`` asks for the largest imported
series of the newest imported study to be opened (``ctx.open_requested``): a patient's folder
of three studies opens the current one, not the oldest.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice, QObject, Signal
from PySide6.QtGui import QImage

from medstation.core.errors import MedstationError
from medstation.core.files import atomic_writer
from medstation.dicom.database import StudyDatabase

from .tasks import Task
from .thumbnails import thumbnail_path, thumbnail_pixels


def series_to_open(db, counts: dict[str, int]) -> str:
    """Of the imported series (UID -> instances), the largest of the newest study (date, then UID)."""
    rows = {r.series_uid: r for r in db.index.series() if r.series_uid in counts}
    if not rows:
        return max(counts, key=counts.get)
    newest = max(rows.values(), key=lambda r: (r.study_date or "", r.study_uid)).study_uid
    return max((u for u, r in rows.items() if r.study_uid == newest),
               key=lambda u: (rows[u].images or counts[u], u))


class Importer(QObject):
    import_finished = Signal(object)  # ImportReport
    thumbnail_ready = Signal(str, QImage)  # series UID, image

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.ctx = ctx

    def import_paths(self, paths: list[str], open_after: bool = False) -> Task:
        ctx = self.ctx
        db_path = ctx.db.path
        pool = ctx.pools.scan

        def work(progress, cancel):
            from medstation.dicom.importer import import_paths  # pydicom: on first import, not at start

            with StudyDatabase(db_path) as db:  # its own connection, on this thread
                return import_paths(db, paths, pool, progress=progress, cancel=cancel)

        def done(report):
            ctx.studies_changed.emit()
            if report.errors:
                ctx.add_problems(report.errors, f"Import of {', '.join(Path(p).name for p in paths)}", True)
            ctx.notify(f"Imported {report.files} files: {report.added} added, {report.unchanged} "
                       f"unchanged, {report.skipped} not DICOM, {len(report.errors)} with problems.")
            self.thumbnails_for(list(report.series))
            self.import_finished.emit(report)
            if open_after and report.series:
                ctx.open_requested.emit(series_to_open(ctx.db, report.series))

        return ctx.run_task(work, "import", "Importing", done)

    def open_demo(self) -> Task:
        """Write the built-in demo study (once), import it and open its lung series."""
        from medstation.synth import demo_study

        folder = self.ctx.data_dir / "demo"

        def work(progress, cancel):
            if not (folder / "truth.json").exists():
                demo_study(folder, progress=progress)
            return folder

        self.ctx.notify("Writing the demo study (synthetic chest CT, not a real patient)…")
        return self.ctx.run_task(work, "demo", "Writing demo study",
                                 lambda f: self.import_paths([str(f)], open_after=True))

    # -- thumbnails ----------------------------------------------------------------------------
    def thumbnails_for(self, uids: list[str]) -> None:
        """Cached thumbnails at once; the rest made on a thread (``thumbnail_ready`` for each)."""
        data_dir = self.ctx.data_dir
        todo = []
        for uid in uids:
            path = thumbnail_path(data_dir, uid)
            image = QImage(str(path)) if path.exists() else QImage()
            if not image.isNull():
                self.thumbnail_ready.emit(uid, image)
            else:
                todo.append(uid)
        if not todo:
            return
        db, pool = self.ctx.db, self.ctx.pools.scan
        ready: list[str] = []

        def work(progress, cancel):
            for uid in todo:
                if cancel.is_set():
                    break
                try:
                    pixels = thumbnail_pixels(db, pool, uid)
                except MedstationError:
                    continue
                h, w = pixels.shape[:2]
                fmt = QImage.Format_RGB888 if pixels.ndim == 3 else QImage.Format_Grayscale8
                image = QImage(pixels.data, w, h, pixels.strides[0], fmt).copy()
                path = thumbnail_path(data_dir, uid)
                path.parent.mkdir(parents=True, exist_ok=True)
                buf = QBuffer()
                buf.open(QIODevice.WriteOnly)
                image.save(buf, "PNG")
                with atomic_writer(path, "wb", fsync=False) as f:  # a cache: no fsync needed
                    f.write(bytes(buf.data()))
                ready.append(uid)
            return ready

        self.ctx.run_task(work, "thumbnails", "Thumbnails", show_progress=False,
                          on_done=lambda uids: [self._loaded(u) for u in uids])

    def _loaded(self, uid: str) -> None:
        image = QImage(str(thumbnail_path(self.ctx.data_dir, uid)))
        if not image.isNull():
            self.thumbnail_ready.emit(uid, image)
