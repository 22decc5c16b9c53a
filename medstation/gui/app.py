"""Start the GUI: ``medstation`` (no arguments), ``medstation open PATH``, ``medstation --demo``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medstation.core.errors import MedstationError


def check_display() -> None:
    """A clear error, not a Qt abort, when there is no screen to draw on."""
    if (sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM")
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        raise MedstationError("there is no display to open the medstation window on",
                              "run it on a desktop session, or under `xvfb-run -a`, or set "
                              "QT_QPA_PLATFORM=offscreen")


def create_app():
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from medstation import __version__

    from .theme import apply_dark_theme

    app = QApplication.instance()
    new = app is None
    if new:
        app = QApplication([sys.argv[0]])
    app.setApplicationName("medstation")
    app.setApplicationDisplayName("medstation")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("medstation")
    app.setDesktopFileName("medstation")  # matches resources/medstation.desktop (taskbar icon, grouping)
    icons = Path(__file__).resolve().parents[2] / "resources" / "icons" / "hicolor"
    icon = QIcon()
    for png in sorted(icons.glob("*/apps/medstation.png")):
        icon.addFile(str(png))
    app.setWindowIcon(icon)
    if new:
        apply_dark_theme(app)
    return app


def seconds_since_start() -> float:
    """Seconds since this process started. On Linux from the kernel's own clocks (the start time in
    ``/proc/self/stat``, in clock ticks since boot, against ``CLOCK_BOOTTIME``): 10 ms resolution.
    psutil's ``create_time`` adds it to a boot time rounded to the second, so it can be up to a
    second off; it is the fallback elsewhere."""
    import time

    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil

        return time.time() - psutil.Process().create_time()


def _report_startup(app) -> None:
    """Print seconds from process start to the first window on screen, and the memory at idle; quit."""
    import psutil
    proc = psutil.Process()
    app.processEvents()
    seconds = seconds_since_start()
    def idle() -> None:  # after two seconds of idling with the window up
        rss = proc.memory_info().rss / 1e6
        peak = ""
        status = Path("/proc/self/status")
        if status.exists():
            line = next((x for x in status.read_text().splitlines() if x.startswith("VmHWM")), "")
            peak = f", peak {int(line.split()[1]) * 1024 / 1e6:.0f} MB" if line else ""
        loaded = "; ".join(f"{m} imported: {m in sys.modules}" for m in ("torch", "pydicom", "pyqtgraph"))
        sys.stderr.write(f"first window after {seconds:.2f} s; resident memory at idle {rss:.0f} MB{peak}; "
                         f"{loaded}\n")
        app.quit()

    from PySide6.QtCore import QTimer
    QTimer.singleShot(2000, idle)


def build_window(db: str | None = None, *, engine_factory=None):
    """The application context and the main window on it: the one place that builds either.

    ``engine_factory(device_preference)`` makes the inference engine (default: the real one;
    tests pass a stub). Needs a ``QApplication`` (``create_app``).
    """
    from .context import AppContext
    from .main_window import MainWindow

    return MainWindow(AppContext(db, engine_factory=engine_factory))


def run(db: str | None = None, open_paths: list[str] | None = None, demo: bool = False) -> int:
    missing = [p for p in open_paths or [] if not Path(p).exists()]
    if missing:
        raise MedstationError(f"cannot open {missing[0]}: no such file or folder", "check the path")
    check_display()
    app = create_app()
    from PySide6.QtCore import QTimer

    from medstation.core.paths import default_db_path

    from .instance import attach, send_to_running, server_name

    name = server_name(str(Path(db).resolve()) if db else str(default_db_path()))
    paths = [str(Path(p).resolve()) for p in open_paths or []]
    if send_to_running(name, paths, demo):
        told = "opened there" if paths or demo else "brought to the front"
        sys.stderr.write(f"medstation is already running: {told}\n")
        return 0

    win = build_window(db)
    attach(win, name)
    win.show()
    if os.environ.get("MEDSTATION_STARTUP_PROBE"):  # packaging/README.md: time to the first window
        QTimer.singleShot(0, lambda: _report_startup(app))
    if demo:
        QTimer.singleShot(0, win.open_demo)
    if open_paths:
        QTimer.singleShot(0, lambda: win.import_paths(list(open_paths), open_after=True))
    _quit_on_sigterm(app, win)
    rc = app.exec()
    win.shutdown()
    return int(rc)


def _quit_on_sigterm(app, win) -> None:
    """SIGTERM (a logout, ``kill``) closes the window as the user would: settings saved, jobs and
    worker processes stopped, the database closed. Python runs signal handlers only between its own
    bytecodes, so a timer gives it the chance while Qt's loop waits."""
    import signal

    from PySide6.QtCore import QTimer

    def close(_sig, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        QTimer.singleShot(0, win.close)
        QTimer.singleShot(0, app.quit)

    signal.signal(signal.SIGTERM, close)
    tick = QTimer(app, interval=250)
    tick.timeout.connect(lambda: None)
    tick.start()
