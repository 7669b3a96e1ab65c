"""The capture's SQLite connections: opening one (version check, upgrade, WAL), mapping its failures.

:class:`CaptureDatabase` owns the writer's connection, guarded by a lock so that one thread at a
time uses it, and a read-only connection of the routes' own (WAL: readers never wait for the
writer). The capture's tables are reached through its subclasses, one per concern, which
:class:`~eventdesk.core.capture.Capture` brings together. An SQLite failure a user can act on
(a full disk, a file that is not a capture) becomes an error that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from eventdesk.core import capture_schema
from eventdesk.core.errors import CaptureUnusableError, DiskFullError, EventDeskError
from eventdesk.core.paths import FILE_MODE, make_private


def recovery_hint(path: Path) -> str:
    return (
        f"move it aside (keep the copy: `mv {path} {path}.broken`) and start with a fresh capture"
        " (`eventdesk run --fresh-capture`, or in the app: Start with a fresh capture), or try to"
        f" save its events first with `sqlite3 {path} .recover | sqlite3 {path}.recovered`"
    )


def capture_failure(path: Path, exc: sqlite3.Error) -> EventDeskError | None:
    """The user-facing error for an SQLite failure on the capture at ``path`` (None: not one of
    the failures a user can act on)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return DiskFullError(str(path))
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or (
        code is None and isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc)
    ):
        return CaptureUnusableError(
            f"not a readable capture database ({exc}); {recovery_hint(path)}", obj=f"capture {str(path)!r}"
        )
    return None


class CaptureDatabase:
    """The connections to the capture database at ``path``; safe to share between threads."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._open(readonly)
        except BaseException as exc:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self._db.close()
            if not isinstance(exc, sqlite3.Error):
                raise
            failure = capture_failure(self.path, exc)
            if failure is None:
                raise
            raise failure from None
        # Routes read through a connection of their own (WAL: readers never wait for a writer),
        # so a route catching up does not queue behind the appends of its model.
        self._route_lock = threading.Lock()
        self._route_db: sqlite3.Connection | None = None

    def _open(self, readonly: bool) -> None:
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Private from the first byte (SQLite gives the -wal and -shm files the same mode).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
            make_private(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        # The version first: a newer (or unknown) one is refused before anything writes to it.
        version = capture_schema.stored_version(self._db)
        capture_schema.check_version(version, self.path)
        if readonly:
            capture_schema.stand_in(self._db, version)
        else:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (our crash model); only a power
            # loss can drop the last transactions.
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                capture_schema.upgrade(self._db, self.path, version)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'capture_id'").fetchone()
        self.capture_id: str | None = None if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._route_lock:
            if self._route_db is not None:
                self._route_db.close()
                self._route_db = None

    def _abandon(self, exc: BaseException) -> None:
        """Roll back the failed transaction, if SQLite has not already (it has after a full
        disk), and raise what a user should see of ``exc``, if it is one of those."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the first failure is the one to report
                self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            failure = capture_failure(self.path, exc)
            if failure is not None:
                raise failure from exc

    def _route_query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run a read through the routes' own connection (WAL: it never waits for a writer)."""
        with self._route_lock:
            db = self._route_db
            if db is None:
                db = self._route_db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
                )
                db.execute("PRAGMA busy_timeout=5000")
            return db.execute(sql, params).fetchall()
