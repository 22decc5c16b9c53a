"""Opening a series in the viewer: resolve it on a thread, then stream its slices into the view model.

``dicom.resolve_series`` finds the stack (off the GUI thread); a ``LoadJob``
decodes it in the worker processes. The loader polls the job 30 times a second
and tells the view model which slices arrived; the first image shows as soon as
the middle slice lands. Measurements of the series come from the study
database and edits go back to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal

from medstation.core.errors import MedstationError
from medstation.core.series import SeriesRef
from medstation.imaging import Measurement

from .tasks import Task

if TYPE_CHECKING:
    from medstation.dicom.loader import LoadJob

POLL_MS = 30


class SeriesLoader(QObject):
    series_loaded = Signal(str)  # series UID, once every slice has arrived (or the load ended)
    first_image = Signal(str)  # series UID, when the first slice can be shown
    open_failed = Signal(str, object)  # series UID, the error: the series could not be opened
    opened = Signal(object, str)  # SeriesRef, "patient — series" (recent list, window title)
    notes = Signal(str)  # what a reader should know about the series (parts, geometry)

    def __init__(self, ctx, state=None) -> None:
        super().__init__(ctx)
        self.ctx = ctx
        self.state = state if state is not None else ctx.state
        self.load_job: LoadJob | None = None
        self.ref: SeriesRef | None = None
        self._ready_seen = -1
        self._window_set = False
        self._first_sent = False
        self._poll = QTimer(self, interval=POLL_MS)
        self._poll.timeout.connect(self._poll_load)
        ctx.tasks.busy_while.append(lambda: self.load_job is not None and not self.load_job.done())
        self.state.measurement_edited.connect(self._save_measurement)
        self.state.measurement_deleted.connect(self._delete_measurement)

    @property
    def current_uid(self) -> str:
        return self.ref.series_uid if self.ref is not None else ""

    def open(self, series: SeriesRef | str) -> Task:
        """Resolve ``series`` (a ``SeriesRef``, a database key or a series UID) on a thread, then
        stream its slices into the viewer."""
        ref = series if isinstance(series, SeriesRef) else SeriesRef.parse(series)
        if self.load_job is not None and not self.load_job.done():
            self.load_job.cancel()
        db = self.ctx.db

        def work(progress, cancel):
            # pydicom and the decoders load here, off the GUI thread, when the first series opens
            from medstation.dicom.opening import resolve_series

            return resolve_series(ref, db=db)

        def done(resolved):
            try:
                self._start(resolved)
            except MedstationError as exc:
                self.ctx.report_error(exc, "Opening")
                self.open_failed.emit(ref.series_uid, exc)

        self.ctx.notify("Opening series…")
        return self.ctx.run_task(work, "prepare", "Opening", done,
                                 on_error=lambda exc: self.open_failed.emit(ref.series_uid, exc))

    def _start(self, resolved) -> None:
        stack, parts, info = resolved.stack, resolved.parts, resolved.info
        self.ref = resolved.ref
        from medstation.dicom.loader import LoadJob  # imported by the resolve above

        self.load_job = LoadJob(stack, self.ctx.pools.load)
        self._window_set = False
        self._first_sent = False
        self._ready_seen = -1
        self.state.set_volume(self.load_job.volume, self.load_job.ready, info, self.ref)
        vol = self.load_job.volume
        if vol.windows:
            self.state.reset_window()
            self._window_set = True
        self._load_measurements()
        notes = [f"{len(parts)} image stacks in this series (sizes or orientations differ); "
                 f"showing the largest"] if len(parts) > 1 else []
        notes += vol.warnings
        self.ctx.notify(f"{info.get('series', '')}: " + ("; ".join(notes) if notes else
                                                          f"{vol.shape[0]} slices"))
        self.opened.emit(self.ref, f"{info.get('patient', '')} — {info.get('series', '')}")
        self.ctx.tasks.show("Loading", 0, vol.shape[0])
        self._poll.start()

    def _poll_load(self) -> None:
        job = self.load_job
        if job is None:
            self._poll.stop()
            return
        done, total = job.progress
        if done != self._ready_seen:
            self._ready_seen = done
            shown = job.ready[int(round(self.state.position[0]))]
            if shown and not self._window_set:
                self.state.reset_window()
                self._window_set = True
            if shown and not self._first_sent:
                self._first_sent = True
                self.first_image.emit(self.current_uid)
            self.state.data_arrived()
            self.ctx.tasks.show("Loading", done, total)
        if job.done():
            self._poll.stop()
            try:
                result = job.result(0)
            except MedstationError as exc:
                self.ctx.report_error(exc, "Loading")
            else:
                if result.errors:
                    self.ctx.add_problems(result.errors, "Loading the series")
                self.ctx.notify(f"Loaded {total} slices in {result.seconds:.2f} s"
                                + (f"; {len(result.errors)} could not be read" if result.errors else ""))
            if not self._window_set:
                self.state.reset_window()
                self._window_set = True
            self.state.data_arrived()
            self.ctx.tasks.hide_if_idle()
            self.series_loaded.emit(self.current_uid)

    def cancel(self) -> None:
        if self.load_job is not None and not self.load_job.done():
            self.load_job.cancel()

    def shutdown(self) -> None:
        self._poll.stop()
        if self.load_job is not None:
            self.load_job.cancel()
            try:
                self.load_job.result(10)
            except BaseException:  # noqa: BLE001 - shutting down; the outcome no longer matters
                pass

    # -- measurements of the open series ---------------------------------------------------------
    def _load_measurements(self) -> None:
        items = []
        for mid, _kind, data in self.ctx.db.annotations.measurements(self.state.series_key):
            try:
                items.append(Measurement.from_dict(data, mid))
            except (KeyError, TypeError, ValueError):
                continue  # written by a newer medstation; left in the database untouched
        self.state.set_measurements(items)

    def _save_measurement(self, m: Measurement) -> None:
        if self.state.series_key:
            m.id = self.ctx.db.annotations.save_measurement(self.state.series_key, m.kind,
                                                            m.to_dict(self.state.volume), m.id)

    def _delete_measurement(self, m: Measurement) -> None:
        if m.id is not None:
            self.ctx.db.annotations.delete_measurement(m.id)
            m.id = None  # an undo stores it again as a new row
