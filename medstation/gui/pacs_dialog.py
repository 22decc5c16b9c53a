"""The PACS dialog: nodes (with keyring passwords), search, retrieve into the study database.

Every network call runs as a background task of the application context, so
the window never waits on a PACS; retrieves show progress in the status bar
and stop with its Cancel button. The DICOM exports (SR/SEG, de-identified) are
in ``gui/exports.py``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from medstation.core.errors import MedstationError, PacsError
from medstation.dicom.pacs import (
    RETRIEVE_METHODS,
    PacsNode,
    StudyMatch,
    load_nodes,
    node_password,
    open_client,
    retrieve_study,
    save_nodes,
    set_node_password,
)


class NodeEditor(QDialog):
    """Add or edit one PACS node; the password goes to the OS keyring when there is one."""

    def __init__(self, node: PacsNode | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS node")
        node = node or PacsNode("PACS")
        form = QFormLayout(self)
        self.name = QLineEdit(node.name)
        self.host = QLineEdit(node.host)
        self.port = QSpinBox(maximum=65535, minimum=1, value=int(node.port))
        self.ae_title = QLineEdit(node.ae_title)
        self.calling_ae = QLineEdit(node.calling_ae)
        self.store_port = QSpinBox(maximum=65535, minimum=0, value=int(node.store_port))
        self.dicomweb_url = QLineEdit(node.dicomweb_url)
        self.dicomweb_url.setPlaceholderText("http://pacs:8042/dicom-web (optional)")
        self.username = QLineEdit(node.username)
        self.password = QLineEdit(node_password(node) if node.username else "")
        self.password.setEchoMode(QLineEdit.Password)
        self.retrieve = QComboBox()
        labels = {"get": "C-GET", "move": "C-MOVE (to medstation's storage port)", "wado": "WADO-RS"}
        for m in RETRIEVE_METHODS:
            self.retrieve.addItem(labels[m], m)
        self.retrieve.setCurrentIndex(RETRIEVE_METHODS.index(node.retrieve))
        self.timeout = QDoubleSpinBox(minimum=1, maximum=600, value=float(node.timeout), suffix=" s")
        for label, w in (("Name", self.name), ("Host", self.host), ("Port", self.port),
                         ("PACS AE title", self.ae_title), ("medstation AE title", self.calling_ae),
                         ("medstation storage port (C-MOVE)", self.store_port),
                         ("DICOMweb URL", self.dicomweb_url), ("User (DICOMweb)", self.username),
                         ("Password", self.password), ("Retrieve with", self.retrieve),
                         ("Timeout", self.timeout)):
            form.addRow(label, w)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #e06c6c")
        self.error.setWordWrap(True)
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.result_node: PacsNode | None = None
        self.keyring_saved: bool | None = None

    def node(self) -> PacsNode:
        return PacsNode(name=self.name.text().strip(), host=self.host.text().strip(), port=self.port.value(),
                        ae_title=self.ae_title.text().strip(), calling_ae=self.calling_ae.text().strip(),
                        store_port=self.store_port.value(), dicomweb_url=self.dicomweb_url.text().strip(),
                        username=self.username.text().strip(), retrieve=self.retrieve.currentData(),
                        timeout=self.timeout.value())

    def _accept(self) -> None:
        node = self.node()
        try:
            node.validate()
        except PacsError as exc:
            self.error.setText(str(exc))
            return
        if node.username:
            self.keyring_saved = set_node_password(node, self.password.text())
        self.result_node = node
        self.accept()


class PacsDialog(QDialog):
    """Search a PACS and retrieve studies into the study database (non-modal)."""

    searched = Signal(list)  # list[StudyMatch]
    retrieved = Signal(object)  # (TransferReport, ImportReport)
    failed = Signal(object)

    COLUMNS = ["Date", "Patient ID", "Patient", "Modalities", "Series", "Images", "Description"]

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("PACS")
        self.resize(900, 520)
        self.nodes: list[PacsNode] = []
        self.matches: list[StudyMatch] = []
        layout = QVBoxLayout(self)

        top = QHBoxLayout()
        self.node_box = QComboBox()
        self.node_box.setMinimumWidth(220)
        top.addWidget(QLabel("PACS"))
        top.addWidget(self.node_box, 1)
        for text, slot in (("Add…", self.add_node), ("Edit…", self.edit_node), ("Remove", self.remove_node),
                           ("Test connection", self.echo)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            top.addWidget(b)
        layout.addLayout(top)

        form = QHBoxLayout()
        self.patient_id = QLineEdit(placeholderText="Patient ID")
        self.patient_name = QLineEdit(placeholderText="Name (DOE^J*)")
        self.date_from = QLineEdit(placeholderText="From YYYY-MM-DD")
        self.date_to = QLineEdit(placeholderText="To YYYY-MM-DD")
        self.modality = QLineEdit(placeholderText="Modality")
        self.modality.setMaximumWidth(80)
        for w in (self.patient_id, self.patient_name, self.date_from, self.date_to, self.modality):
            w.returnPressed.connect(self.search)
            form.addWidget(w)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        form.addWidget(self.search_button)
        layout.addLayout(form)

        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(len(self.COLUMNS) - 1, QHeaderView.Stretch)
        self.table.doubleClicked.connect(lambda _i: self.retrieve())
        layout.addWidget(self.table, 1)

        bottom = QHBoxLayout()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        bottom.addWidget(self.status, 1)
        self.retrieve_button = QPushButton("Retrieve and open")
        self.retrieve_button.clicked.connect(self.retrieve)
        bottom.addWidget(self.retrieve_button)
        close = QPushButton("Close")
        close.clicked.connect(self.hide)
        bottom.addWidget(close)
        layout.addLayout(bottom)
        self.reload_nodes()

    # -- nodes
    def reload_nodes(self, select: str = "") -> None:
        try:
            self.nodes = load_nodes()
        except PacsError as exc:
            self.nodes = []
            self.set_status(str(exc), error=True)
        self.node_box.clear()
        for n in self.nodes:
            self.node_box.addItem(f"{n.name}  ({n.where})", n.name)
        if select:
            self.node_box.setCurrentIndex(max(0, self.node_box.findData(select)))
        if not self.nodes:
            self.set_status("No PACS configured yet: Add… one (AE title, host, port; DICOMweb URL optional).")

    def current_node(self) -> PacsNode | None:
        i = self.node_box.currentIndex()
        return self.nodes[i] if 0 <= i < len(self.nodes) else None

    def set_nodes(self, nodes: list[PacsNode], select: str = "") -> None:
        save_nodes(nodes)
        self.reload_nodes(select)

    def add_node(self) -> None:
        ed = NodeEditor(parent=self)
        if ed.exec() and ed.result_node:
            self._saved(ed, [n for n in self.nodes if n.name != ed.result_node.name] + [ed.result_node])

    def edit_node(self) -> None:
        node = self.current_node()
        if node is None:
            return self.add_node()
        ed = NodeEditor(node, parent=self)
        if ed.exec() and ed.result_node:
            self._saved(ed, [ed.result_node if n.name == node.name else n for n in self.nodes])

    def _saved(self, ed: NodeEditor, nodes: list[PacsNode]) -> None:
        self.set_nodes(nodes, ed.result_node.name)
        if ed.keyring_saved is False:
            self.set_status("No OS keyring on this computer: the password is kept until medstation closes.")

    def remove_node(self) -> None:
        node = self.current_node()
        if node is not None:
            self.set_nodes([n for n in self.nodes if n.name != node.name])

    # -- work
    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #e06c6c" if error else "")
        self.status.setText(text)

    def _need_node(self) -> PacsNode | None:
        node = self.current_node()
        if node is None:
            self.set_status("Add a PACS first.", error=True)
        return node

    def _fail(self, exc) -> None:
        text = str(exc) if isinstance(exc, MedstationError) else f"{type(exc).__name__}: {exc}"
        self.set_status(text, error=True)
        self.search_button.setEnabled(True)
        self.retrieve_button.setEnabled(True)
        self.failed.emit(exc)

    def echo(self) -> None:
        node = self._need_node()
        if node is None:
            return
        self.set_status(f"Contacting {node.name}…")

        def work(progress, cancel):
            return open_client(node).echo()

        def done(seconds: float) -> None:
            self.set_status(f"{node.name} answered in {seconds * 1000:.0f} ms.")

        self.ctx.run_task(work, "pacs-echo", "PACS", show_progress=False, on_done=done,
                              on_error=self._fail)

    def search(self) -> None:
        node = self._need_node()
        if node is None:
            return
        query = dict(patient_id=self.patient_id.text().strip(), patient_name=self.patient_name.text().strip(),
                     date_from=self.date_from.text().strip(), date_to=self.date_to.text().strip(),
                     modality=self.modality.text().strip().upper())
        self.search_button.setEnabled(False)
        self.set_status(f"Searching {node.name}…")

        def work(progress, cancel):
            return open_client(node).find_studies(**query)

        self.ctx.run_task(work, "pacs-find", "PACS search", show_progress=False,
                              on_done=self._show_matches, on_error=self._fail)

    def _show_matches(self, matches: list[StudyMatch]) -> None:
        self.search_button.setEnabled(True)
        self.matches = sorted(matches, key=lambda m: m.study_date, reverse=True)
        self.table.setRowCount(len(self.matches))
        for r, m in enumerate(self.matches):
            date = f"{m.study_date[:4]}-{m.study_date[4:6]}-{m.study_date[6:]}" if len(m.study_date) == 8 \
                else m.study_date
            for c, text in enumerate((date, m.patient_id, m.patient_name.replace("^", " "),
                                      "/".join(m.modalities), str(m.n_series or ""),
                                      str(m.n_instances or ""), m.description)):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, m.study_uid)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        if self.matches:
            self.table.selectRow(0)
        n = len(self.matches)
        self.set_status(f"{n} {'study' if n == 1 else 'studies'} found.")
        self.searched.emit(self.matches)

    def retrieve(self) -> None:
        node = self._need_node()
        row = self.table.currentRow()
        if node is None or not 0 <= row < len(self.matches):
            self.set_status("Search, then choose a study.", error=True)
            return
        match = self.matches[row]
        ctx = self.ctx
        db_path, pool = ctx.db.path, ctx.pools.scan
        self.retrieve_button.setEnabled(False)
        self.set_status(f"Retrieving {match.n_instances or '?'} images from {node.name}…")

        def work(progress, cancel):
            from medstation.dicom.database import StudyDatabase
            with StudyDatabase(db_path) as db:
                return retrieve_study(node, match.study_uid, db, pool,
                                      progress=lambda n, t: progress(n, t or 0), cancel=cancel)

        def done(result):
            report, imported = result
            self.retrieve_button.setEnabled(True)
            self.set_status(f"Retrieved {report.transferred} images in {report.seconds:.1f} s.")
            ctx.studies_changed.emit()
            if imported.errors:
                ctx.add_problems(imported.errors, f"Retrieve from {node.name}")
            if imported.series:
                ctx.open_requested.emit(max(imported.series, key=imported.series.get))
            self.retrieved.emit(result)

        ctx.run_task(work, "pacs-retrieve", f"Retrieving from {node.name}", on_done=done, on_error=self._fail)
