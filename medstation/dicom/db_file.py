"""Opening the study database file: busy is not damaged, a future schema is refused untouched, a
damaged file is set aside with what a reader made recovered from it.

- **Busy.** Another process holding a lock is waited for (``busy_timeout`` seconds, SQLite's own
  retry), then refused with a ``DatabaseError`` naming the processes that have the file open (found
  in ``/proc`` where there is one). A locked database is never called damaged.
- **Future or foreign schema.** The schema version is read on a read-only connection before
  anything is written: a newer version, or one that is not a number, is refused and the file's
  bytes stay as they were.
- **Damaged.** A file that fails ``PRAGMA quick_check`` (or is not SQLite) is moved aside
  (``studies.sqlite.damaged-<time>``, with its -wal and -shm) and a new one is created; the tables
  that hold what readers made and cannot be re-imported from the files (labels, reviews,
  measurements, registrations, patient links, track edits, imported folders, the AI cache) are
  copied from the old file row by row as far as they can be read. The caller then re-imports the
  known folders (``importer.rebuild``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from medstation.core.errors import DatabaseError

#: seconds to wait for another process's lock before refusing (``MEDSTATION_DB_TIMEOUT`` overrides)
BUSY_TIMEOUT_S = 30.0
#: what readers made, recovered from a damaged file (the rest is an index of the files)
RECOVERED_TABLES = ("roots", "labels", "finding_reviews", "measurements", "registrations", "patient_links",
                    "track_edits", "ai_results")


@dataclass
class Opened:
    conn: sqlite3.Connection
    recovered_from: Path | None = None
    recovered: dict[str, int] = field(default_factory=dict)  # table -> rows copied from the damaged file


def busy_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("MEDSTATION_DB_TIMEOUT", BUSY_TIMEOUT_S)))
    except ValueError:
        return BUSY_TIMEOUT_S


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def holders(path: Path) -> list[str]:
    """``"pid 123 (python -m medstation ...)"`` for every other process with ``path`` open (Linux)."""
    found = []
    try:
        target = path.resolve()
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return found
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(Path(os.readlink(f"/proc/{pid}/fd/{fd}")) == target for fd in fds):
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"pid {pid} ({cmd.strip()[:80]})")
        except OSError:
            continue
    return found


def busy_error(path: Path, timeout: float, exc: sqlite3.Error) -> DatabaseError:
    who = holders(path)
    by = f" by {', '.join(who[:3])}" if who else " by another process"
    return DatabaseError(f"the study database {path} is busy: held{by} for more than {timeout:g} s ({exc})",
                         "wait for the other medstation command or window to finish, or close it, and try "
                         "again; the database is not damaged")


def schema_version_of(path: Path, timeout: float, newest: int) -> None:
    """Refuse, before anything is written, a database of a newer or unknown schema."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error:
        return  # not openable: quick_check decides (damaged)
    try:
        has_meta = ro.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        row = ro.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if has_meta else None
    except sqlite3.Error as exc:
        if _is_busy(exc):
            raise busy_error(path, timeout, exc) from None
        return  # damaged or not SQLite: quick_check decides
    finally:
        ro.close()
    if row is None:
        return
    try:
        version = int(str(row[0]).strip())
    except ValueError:
        raise DatabaseError(f"the study database {path} has schema version {str(row[0])[:40]!r}, not a "
                            "number: not a medstation database, or written by something else",
                            "pass another database with --db (this file was left as it is)") from None
    if version > newest:
        raise DatabaseError(f"the study database {path} has schema version {version}, newer than this "
                            f"medstation ({newest}); it was left as it is",
                            "update medstation or use another database with --db")


def open_checked(path: Path, schema: str, newest: int, timeout: float | None = None,
                 migrations: dict[int, tuple[str, ...]] | None = None) -> Opened:
    """Open ``path``: wait out a busy lock, refuse a future schema untouched, set aside a damaged file
    (recovering the readers' tables), create the schema, migrate an older one (``migrations``: version
    -> its statements, run in order in one transaction with the new version)."""
    timeout = busy_timeout() if timeout is None else timeout
    schema_version_of(path, timeout, newest)
    opened = Opened(conn=None)  # type: ignore[arg-type]
    conn = None
    try:
        conn = connect(path, timeout)
        ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        if _is_busy(exc):
            raise busy_error(path, timeout, exc) from None
        ok, conn = False, None
    if not ok:
        if conn is not None:
            conn.close()
        opened.recovered_from = move_aside(path)
        conn = connect(path, timeout)
    try:
        conn.executescript(schema)
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(newest),))
        elif int(version[0]) < newest:
            migrate(conn, int(version[0]), newest, migrations or {})
    except sqlite3.Error as exc:
        conn.close()
        if _is_busy(exc):
            raise busy_error(path, timeout, exc) from None
        raise
    if opened.recovered_from is not None:
        opened.recovered = recover(opened.recovered_from, conn)
        migrate(conn, 0, newest, migrations or {})  # rows copied from an older file get its renames
    opened.conn = conn
    return opened


def migrate(conn: sqlite3.Connection, old: int, newest: int, migrations: dict[int, tuple[str, ...]]) -> None:
    """Bring a schema-``old`` database up to ``newest`` in one transaction: every version's statements
    in order, then the version; a failure leaves the file as it was. Statements are idempotent (rows
    recovered from a damaged file of any version are passed through all of them)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for version in range(old + 1, newest + 1):
            for statement in migrations.get(version, ()):
                conn.execute(statement)
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(newest),))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    return aside


def recover(old: Path, conn: sqlite3.Connection) -> dict[str, int]:
    """Copy :data:`RECOVERED_TABLES` from the damaged file ``old`` into ``conn``, row by row, as far as
    each table can be read (a damaged page ends that table, not the others)."""
    counts: dict[str, int] = {}
    try:
        src = sqlite3.connect(f"file:{old}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return counts
    try:
        for table in RECOVERED_TABLES:
            try:
                old_cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            except sqlite3.Error:
                continue
            new_cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            cols = [c for c in old_cols if c in new_cols]
            if not cols:
                continue
            insert = (f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) "
                      f"VALUES ({', '.join('?' * len(cols))})")
            n = 0
            conn.execute("BEGIN")
            try:
                for row in src.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                    try:
                        conn.execute(insert, row)
                        n += 1
                    except sqlite3.Error:
                        continue
            except sqlite3.Error:
                pass  # the rest of this table is unreadable
            conn.execute("COMMIT")
            if n:
                counts[table] = n
    finally:
        src.close()
    return counts
