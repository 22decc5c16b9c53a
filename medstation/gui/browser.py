"""The study browser: patients -> studies -> series from the study database, with search and thumbnails."""

from __future__ import annotations

import re
import time

from PySide6.QtCore import QMimeData, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medstation.dicom.database import SeriesRow, StudyDatabase

UID_ROLE = Qt.UserRole
THUMB = 56
SERIES_MIME = "application/x-medstation-series"  # the viewer's drop target reads it
WATCH_MS = 2000  # how often the browser looks for studies imported by another process


class _SeriesTree(QTreeWidget):
    """The tree; a series row can be dragged onto a view (carries its UID)."""

    def mimeTypes(self) -> list[str]:  # noqa: N802
        return [SERIES_MIME]

    def mimeData(self, items) -> QMimeData:  # noqa: N802
        data = QMimeData()
        uid = next((i.data(0, UID_ROLE) for i in items if i.data(0, UID_ROLE)), "")
        if uid:
            data.setData(SERIES_MIME, uid.encode())
            data.setText(uid)
        return data


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if re.fullmatch(r"\d{8}", d or "") else (d or "")


def _interval(prior: str, later: str) -> str:
    """"+84 d" / "+1.3 y" between two YYYYMMDD dates ("" when either is missing)."""
    from medstation.core.tracks import days_between

    if not (re.fullmatch(r"\d{8}", prior or "") and re.fullmatch(r"\d{8}", later or "")):
        return ""
    try:
        days = days_between(prior, later)
    except ValueError:
        return ""
    return f"+{days:.0f} d" if days < 365 else f"+{days / 365.25:.1f} y"


def _search_text(text: str) -> str:
    """Dates typed as 2024-05-01 or 01.05.2024 match the stored 20240501."""
    t = text.strip()
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", t)
    if m:
        return "".join(m.groups())
    m = re.fullmatch(r"(\d{2})\.(\d{2})\.(\d{4})", t)
    if m:
        return m.group(3) + m.group(2) + m.group(1)
    return t


class StudyBrowser(QWidget):
    """Search over name, patient ID, date, modality and description; a click (or Enter) on a
    series opens it; a series dragged onto a view opens there (the right half in 1x2)."""

    series_activated = Signal(str)
    compare_requested = Signal(str)  # "Show beside the open series" from the context menu
    studies_added = Signal(list)  # series UIDs another process imported (the window makes thumbnails)

    def __init__(self, db: StudyDatabase, parent=None) -> None:
        super().__init__(parent)
        self.db = db
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search name, patient ID, date, description (Ctrl+F)")
        # only a click (or Ctrl+F) puts the cursor here: single-key shortcuts stay with the views
        self.search.setFocusPolicy(Qt.ClickFocus)
        self.search.setClearButtonEnabled(True)
        self.modality = QComboBox(self)
        self.modality.addItem("All")
        self.tree = _SeriesTree(self)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QTreeWidget.DragOnly)
        self.tree.setFocusPolicy(Qt.ClickFocus)
        self.tree.setContextMenuPolicy(Qt.ActionsContextMenu)
        self.tree.setHeaderLabels(["Patient / study / series", "Mod.", "Images"])
        self.tree.headerItem().setToolTip(1, "Modality")
        self.tree.setWordWrap(True)  # a description wraps beside its thumbnail rather than vanish
        self.tree.setIndentation(12)
        self.tree.setIconSize(QSize(THUMB, THUMB))
        self.tree.setUniformRowHeights(False)
        # the description takes what is left; modality and image count always show (a narrow dock
        # once pushed them out of view)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        self.tree.setTextElideMode(Qt.ElideRight)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        row = QHBoxLayout()
        row.addWidget(self.search, 1)
        row.addWidget(self.modality)
        lay.addLayout(row)
        lay.addWidget(self.tree)
        self.thumbnails: dict[str, QIcon] = {}
        self.rows: list[SeriesRow] = []
        self.search.textChanged.connect(self.refresh)
        self.modality.currentTextChanged.connect(self.refresh)
        self.tree.itemClicked.connect(self._activated)
        self.tree.itemActivated.connect(self._activated)
        self._last = ("", 0.0)
        # a study imported from a terminal (`medstation import`) or another window shows up here too
        self.db.index.changed_elsewhere()
        self._watch = QTimer(self)
        self._watch.setInterval(WATCH_MS)
        self._watch.timeout.connect(self._check_database)
        self._watch.start()
        beside = QAction("Show beside the open series (1×2)", self.tree)
        beside.triggered.connect(self._compare)
        self.tree.addAction(beside)

    def refresh(self) -> None:
        rows = self.db.index.series(_search_text(self.search.text()))
        modalities = sorted({r.modality for r in self.db.index.series()} - {""})
        current = self.modality.currentText()
        self.modality.blockSignals(True)
        self.modality.clear()
        self.modality.addItems(["All", *modalities])
        self.modality.setCurrentText(current if current in modalities else "All")
        self.modality.blockSignals(False)
        if self.modality.currentText() != "All":
            rows = [r for r in rows if r.modality == self.modality.currentText()]
        self.rows = rows
        self.tree.clear()
        patients: dict[tuple, QTreeWidgetItem] = {}
        studies: dict[str, QTreeWidgetItem] = {}
        last_date: dict[tuple, str] = {}
        for r in rows:
            pkey = (r.patient_id, r.patient_name)
            if pkey not in patients:
                name = r.patient_name.replace("^", " ").strip() or "(no name)"
                patients[pkey] = QTreeWidgetItem([f"{name}  [{r.patient_id or 'no ID'}]", "", ""])
                self.tree.addTopLevelItem(patients[pkey])
            if r.study_uid not in studies:
                # the patient's studies are a timeline: date order (the query's), each with the
                # interval since the one before
                previous = last_date.get(pkey)
                label = _date(r.study_date) or "(no date)"
                gap = _interval(previous, r.study_date) if previous is not None else ""
                item = QTreeWidgetItem([f"{label}   {gap}" if gap else label, "", ""])
                item.setToolTip(0, f"{gap[1:]} after the prior study ({_date(previous)})" if gap
                                else "the patient's first study here")
                studies[r.study_uid] = item
                patients[pkey].addChild(item)
                last_date[pkey] = r.study_date
            number = r.series_number if r.series_number is not None else "-"
            text = f"{number}: {r.description or '(no description)'}"
            images = r.images or r.instances
            count = f"{images}" + (f" ({r.missing} missing)" if r.missing else "")
            item = QTreeWidgetItem([text, r.modality, count])
            item.setData(0, UID_ROLE, r.series_uid)
            files = f" in {r.instances} file(s)" if r.instances != images else ""
            item.setToolTip(0, f"{text}\n{r.modality or 'no modality'}, {images} image(s){files}"
                               f"\n{r.series_uid}")
            item.setToolTip(2, f"{images} image(s){files}")
            if r.series_uid in self.thumbnails:
                item.setIcon(0, self.thumbnails[r.series_uid])
            studies[r.study_uid].addChild(item)
        for pkey, item in patients.items():  # "· 3 studies", spanning "2022-12-25 to 2023-12-27"
            dates = sorted(r.study_date for r in rows
                           if (r.patient_id, r.patient_name) == pkey and r.study_date)
            count = item.childCount()
            if count > 1:
                item.setText(0, f"{item.text(0)}  · {count} studies")
                if dates:
                    item.setToolTip(0, f"{count} studies, {_date(dates[0])} to {_date(dates[-1])}")
        self.tree.expandAll()

    def _check_database(self) -> None:
        if self.db.index.changed_elsewhere():
            before = {r.series_uid for r in self.rows}
            current = self.tree.currentItem()
            uid = current.data(0, UID_ROLE) if current is not None else ""
            self.refresh()
            if uid:
                self.select_series(uid)
            added = [r.series_uid for r in self.rows if r.series_uid not in before]
            if added:
                self.studies_added.emit(added)

    def series_items(self) -> dict[str, QTreeWidgetItem]:
        out = {}
        it = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        while it:
            item = it.pop()
            uid = item.data(0, UID_ROLE)
            if uid:
                out[uid] = item
            it.extend(item.child(i) for i in range(item.childCount()))
        return out

    def set_thumbnail(self, series_uid: str, image: QImage) -> None:
        icon = QIcon(QPixmap.fromImage(image))
        self.thumbnails[series_uid] = icon
        item = self.series_items().get(series_uid)
        if item is not None:
            item.setIcon(0, icon)

    def select_series(self, series_uid: str) -> None:
        item = self.series_items().get(series_uid)
        if item is not None:
            self.tree.setCurrentItem(item)

    def _activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        uid = item.data(0, UID_ROLE)
        if not uid:
            return
        # a double click is a click and an activation: open once
        now = time.monotonic()
        if self._last[0] == uid and now - self._last[1] < QApplication.doubleClickInterval() / 1000:
            return
        self._last = (uid, now)
        self.series_activated.emit(uid)

    def _compare(self) -> None:
        item = self.tree.currentItem()
        uid = item.data(0, UID_ROLE) if item is not None else ""
        if uid:
            self.compare_requested.emit(uid)
