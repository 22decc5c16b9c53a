"""What every subject's tables share: the connection and its write transaction."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager


class Tables:
    """One subject's tables on the study database's connection; writes go through ``tx()`` (one
    ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception)."""

    #: ``CREATE ... IF NOT EXISTS`` statements for this subject's tables
    SCHEMA = ""

    def __init__(self, conn: sqlite3.Connection,
                 tx: Callable[[], AbstractContextManager] | None = None) -> None:
        self._conn = conn
        self._tx = tx or (lambda: transaction(conn))


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection):
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
