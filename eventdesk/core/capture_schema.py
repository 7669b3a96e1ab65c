"""The capture database's schema, its version and the upgrades from older versions.

A capture carries its version in ``PRAGMA user_version``. Files made before that (user_version
0 with a ``meta`` table, EventDesk up to commit 301e23e) are version 1. Opening a capture for
writing brings it to :data:`CAPTURE_VERSION` one :class:`Upgrade` at a time, each in its own
transaction (so a failed step leaves the file at the last complete version, and two processes
opening it at once upgrade it once). A capture of a newer version is refused, untouched.
A capture opened read only is never written: an older one is read through empty stand-ins for
the tables its version lacks.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from eventdesk import __version__
from eventdesk.core.errors import CaptureUnusableError

CAPTURE_VERSION = 2

_QUARANTINE = """
CREATE {temp}TABLE IF NOT EXISTS quarantine (
    route TEXT NOT NULL,
    pos INTEGER NOT NULL,
    field TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    PRIMARY KEY (route, pos)
) WITHOUT ROWID
"""
# A new capture's identity: the workspace records it, so a lost or swapped capture is noticed.
_CAPTURE_ID = "INSERT OR IGNORE INTO meta (key, value) VALUES ('capture_id', lower(hex(randomblob(16))))"

SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS events (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    datasource TEXT NOT NULL,
    model TEXT NOT NULL,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    rev TEXT,
    envelope BLOB NOT NULL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_identity ON events (model, key, rev)",
    "CREATE INDEX IF NOT EXISTS events_model_pos ON events (model, pos)",
    "CREATE TABLE IF NOT EXISTS checkpoints (model TEXT PRIMARY KEY, seq BLOB NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS route_positions (route TEXT PRIMARY KEY, pos INTEGER NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS states (object TEXT PRIMARY KEY, state TEXT NOT NULL, detail TEXT,"
    " pid INTEGER, updated_at TEXT NOT NULL)",
    _QUARANTINE.format(temp=""),
    _CAPTURE_ID,
)
"""The current schema: what a new capture is made of (statements run in one transaction)."""


@dataclass(frozen=True)
class Upgrade:
    """The step from version ``to - 1`` to ``to``: ``statements`` run in one transaction;
    ``stand_ins`` (TEMP tables) let a read-only connection read an older file as if upgraded."""

    to: int
    what: str
    statements: tuple[str, ...]
    stand_ins: tuple[str, ...] = ()


UPGRADES: tuple[Upgrade, ...] = (
    Upgrade(
        2,
        "per-route quarantine of poison events; the capture's own id; the version in user_version",
        # IF NOT EXISTS / OR IGNORE: development versions between 1 and 2 already had them.
        (_QUARANTINE.format(temp=""), _CAPTURE_ID, "DELETE FROM meta WHERE key = 'capture_version'"),
        (_QUARANTINE.format(temp="TEMP "),),
    ),
)


def stored_version(db: sqlite3.Connection) -> int:
    """The capture's version: user_version, else 1 for a file from before versions (it has a
    ``meta`` table), else 0 (an empty database: a new capture)."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version:
        return int(version)
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    return 0 if row is None else 1


def check_version(version: int, path: Path) -> None:
    """Refuse a capture written by a newer EventDesk, or of no version any EventDesk wrote
    (before anything writes to it)."""
    if version > CAPTURE_VERSION:
        raise CaptureUnusableError(
            f"written by a newer EventDesk (needs capture version {version}; EventDesk {__version__} reads"
            f" capture versions up to {CAPTURE_VERSION}): open it with that newer EventDesk."
            " The file was left unchanged",
            obj=f"capture {str(path)!r}",
        )
    if version < 0:
        raise CaptureUnusableError(
            f"not a capture of any EventDesk version (its user_version is {version}); the file was left"
            " unchanged",
            obj=f"capture {str(path)!r}",
        )


def upgrade(db: sqlite3.Connection, path: Path, version: int) -> None:
    """Bring the capture on ``db`` (autocommit mode) from ``version`` to :data:`CAPTURE_VERSION`."""
    while version < CAPTURE_VERSION:
        db.execute("BEGIN IMMEDIATE")
        try:
            # Under the write lock: another process may have upgraded it meanwhile.
            version = stored_version(db)
            check_version(version, path)
            if version == CAPTURE_VERSION:
                db.execute("COMMIT")
                return
            if version == 0:
                statements, target = SCHEMA, CAPTURE_VERSION
            else:
                step = UPGRADES[version - 1]
                statements, target = step.statements, step.to
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {int(target)}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        version = target


def stand_in(db: sqlite3.Connection, version: int) -> None:
    """Let a read-only connection to a capture of an older ``version`` read it as the current one."""
    for step in UPGRADES[max(version, 1) - 1 :]:
        for statement in step.stand_ins:
            db.execute(statement)
