"""The capture: every event received, in SQLite (WAL), with model checkpoints and route positions.

One transaction per batch: a model's events and its checkpoint are committed together, so a
checkpoint never runs ahead of what is stored (docs/architecture.md, "The delivery promise").
Appends are idempotent on ``(model, key, rev)`` because change feeds may replay.

Its schema, version and the upgrades from older versions are in :mod:`eventdesk.core.capture_schema`.
A :class:`Capture` owns one connection guarded by a lock; the runtime calls it from one
worker thread so the event loop never waits on SQLite. The tables and how they are versioned:
docs/architecture.md, "The capture: schema and versioning".
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventdesk.core import capture_schema, json_codec
from eventdesk.core.envelope import Event, utc_now_iso
from eventdesk.core.errors import CaptureUnusableError, DiskFullError, EventDeskError
from eventdesk.core.paths import FILE_MODE, make_private

_EVENT_COLUMNS = 8
# Rows per INSERT statement. One multi-row INSERT is one sqlite3_step, so the GIL is released
# and taken back once per chunk; ``executemany`` does that once per row, and each time it
# takes the GIL back it can wait a whole switch interval (5 ms) behind a busy thread.
INSERT_ROWS = 500


@functools.lru_cache(maxsize=8)
def _insert_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?,?)"] * rows)
    columns = "id, received_at, datasource, model, op, key, rev, envelope"
    return f"INSERT OR IGNORE INTO events ({columns}) VALUES {values}"  # noqa: S608 - placeholders only


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


@dataclass(slots=True)
class CapturedEvent:
    """An event as stored: its capture position and its envelope. Treat it as read-only (not
    frozen: a frozen dataclass's ``__init__`` costs measurably on the hot path, and its dict
    envelope made it unhashable anyway)."""

    pos: int
    envelope: dict[str, Any]


RouteRow = tuple[int, bytes, str, str, str]
"""What a route publishes from: ``(pos, envelope JSON, datasource, op, key)``."""


@dataclass(slots=True)
class Appended:
    """What one append stored: the model's last position before it, the new events, and the
    same events as route rows."""

    after: int
    events: list[CapturedEvent]
    rows: list[RouteRow]


QUARANTINE_HELD = "held"  # waits for the user: retry, drop or export
QUARANTINE_RETRY = "retry"  # the user asked for it to be sent again: the route picks it up


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """An event a route could not publish and set aside, with why (the event stays in capture)."""

    route: str
    pos: int
    model: str
    key: str
    op: str
    field: str  # the message's part at fault: topic or payload
    reason: str
    state: str  # QUARANTINE_HELD or QUARANTINE_RETRY
    attempts: int
    first_at: str
    last_at: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class StoredState:
    object: str
    state: str
    detail: str | None
    pid: int | None
    updated_at: str


class Capture:
    """The capture database at ``path``; safe to share between threads."""

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
        variables = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._insert_rows = max(1, min(INSERT_ROWS, variables // _EVENT_COLUMNS))

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._route_lock:
            if self._route_db is not None:
                self._route_db.close()
                self._route_db = None

    # -- writing ---------------------------------------------------------------------------
    def append(self, model: str, events: Sequence[Event], checkpoint: Any) -> list[CapturedEvent]:
        """Store ``events`` and move ``model``'s checkpoint to ``checkpoint`` in one transaction.

        Returns the events that were new (a replayed ``(model, key, rev)`` is skipped).
        """
        return self.append_rows(model, events, checkpoint).events

    def append_rows(self, model: str, events: Sequence[Event], checkpoint: Any) -> Appended:
        """:meth:`append`, also returning what a route publishes the new events from: their
        rows as :meth:`read_route_rows` would read them, and the model's last position before
        them (so a route that has read up to there may take the rows without reading them)."""
        now = utc_now_iso()
        envs = [ev.to_dict() for ev in events]
        dumps = json_codec.dumps
        raws = [dumps(env) for env in envs]
        rows = [
            (ev.id, ev.received_at, ev.datasource, model, ev.op, ev.key, ev.rev, raw)
            for ev, raw in zip(events, raws, strict=True)
        ]
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                (after,) = cur.execute(
                    "SELECT COALESCE(MAX(pos), 0) FROM events WHERE model = ?", (model,)
                ).fetchone()
                inserted = 0
                step = self._insert_rows
                for start in range(0, len(rows), step):
                    chunk = rows[start : start + step]
                    cur.execute(_insert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))
                    inserted += cur.rowcount
                if inserted == len(rows):
                    # Nothing was a replay: AUTOINCREMENT gave the rows consecutive positions,
                    # the last one being lastrowid (no query, which costs a GIL hand-off per row).
                    last = int(cur.lastrowid or 0)
                    new_rows = [
                        (pos, ev.id)
                        for pos, ev in zip(range(last - inserted + 1, last + 1), events, strict=True)
                    ]
                else:
                    # Nobody else writes inside this transaction: the model's rows after its
                    # previous maximum are exactly the new ones.
                    new_rows = cur.execute(
                        "SELECT pos, id FROM events WHERE model = ? AND pos > ? ORDER BY pos", (model, after)
                    ).fetchall()
                if checkpoint is not None:
                    cur.execute(
                        "INSERT INTO checkpoints (model, seq, updated_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
                        (model, json_codec.dumps(checkpoint), now),
                    )
                cur.execute("COMMIT")
            except BaseException as exc:
                self._abandon(exc)
                raise
        if len(new_rows) == len(events):  # the usual case: nothing was a replay
            return Appended(
                int(after),
                [CapturedEvent(int(pos), env) for (pos, _), env in zip(new_rows, envs, strict=True)],
                [
                    (int(pos), raw, ev.datasource, ev.op, ev.key)
                    for (pos, _), ev, raw in zip(new_rows, events, raws, strict=True)
                ],
            )
        index = {ev.id: i for i, ev in enumerate(events)}
        kept = [(int(pos), index[ev_id]) for pos, ev_id in new_rows]
        return Appended(
            int(after),
            [CapturedEvent(pos, envs[i]) for pos, i in kept],
            [(pos, raws[i], events[i].datasource, events[i].op, events[i].key) for pos, i in kept],
        )

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

    def set_route_position(self, route: str, pos: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO route_positions (route, pos, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (route) DO UPDATE SET pos = excluded.pos, updated_at = excluded.updated_at",
                (route, pos, utc_now_iso()),
            )

    def set_state(self, obj: str, state: str, detail: str | None) -> None:
        """Record an object's live state so ``status`` in another process can show it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO states (object, state, detail, pid, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (object) DO UPDATE SET state = excluded.state, detail = excluded.detail,"
                " pid = excluded.pid, updated_at = excluded.updated_at",
                (obj, state, detail, os.getpid(), utc_now_iso()),
            )

    def forget(self, *, model: str | None = None, route: str | None = None) -> None:
        """Drop a removed model's checkpoint or a removed route's position (events stay)."""
        with self._lock:
            if model is not None:
                self._db.execute("DELETE FROM checkpoints WHERE model = ?", (model,))
                self._db.execute("DELETE FROM states WHERE object = ?", (f"model/{model}",))
            if route is not None:
                self._db.execute("DELETE FROM route_positions WHERE route = ?", (route,))
                self._db.execute("DELETE FROM quarantine WHERE route = ?", (route,))
                self._db.execute("DELETE FROM states WHERE object = ?", (f"route/{route}",))

    # -- quarantine ------------------------------------------------------------------------
    def quarantine_add(self, route: str, pos: int, field: str, reason: str) -> None:
        """Set the event at ``pos`` aside for ``route`` (again: one more attempt, the new reason)."""
        now = utc_now_iso()
        with self._lock:
            self._db.execute(
                "INSERT INTO quarantine (route, pos, field, reason, state, attempts, first_at, last_at)"
                " VALUES (?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (route, pos) DO UPDATE SET field = excluded.field,"
                " reason = excluded.reason, state = excluded.state, attempts = attempts + 1,"
                " last_at = excluded.last_at",
                (route, pos, field, reason, QUARANTINE_HELD, now, now),
            )

    def quarantine_entries(
        self, route: str | None = None, positions: Iterable[int] | None = None
    ) -> list[QuarantineEntry]:
        """The quarantined events (of ``route``, at ``positions``), in route and capture order."""
        sql = (
            "SELECT q.route, q.pos, e.model, e.key, e.op, q.field, q.reason, q.state, q.attempts, q.first_at,"
            " q.last_at FROM quarantine q JOIN events e ON e.pos = q.pos"
        )
        clauses, params = self._quarantine_where(route, positions)
        with self._lock:
            rows = self._db.execute(f"{sql} {clauses} ORDER BY q.route, q.pos", params).fetchall()
        return [QuarantineEntry(*row) for row in rows]

    def quarantine_counts(self) -> dict[str, int]:
        """How many events each route has in quarantine (routes with none are left out)."""
        with self._lock:
            rows = self._db.execute("SELECT route, COUNT(*) FROM quarantine GROUP BY route").fetchall()
        return {str(route): int(n) for route, n in rows}

    def quarantine_retry(self, route: str | None = None, positions: Iterable[int] | None = None) -> int:
        """Mark entries to be sent again by their route (running or next started); returns how many."""
        clauses, params = self._quarantine_where(route, positions)
        with self._lock:
            cur = self._db.execute(
                f"UPDATE quarantine AS q SET state = ? {clauses}",  # noqa: S608 - values bound
                (QUARANTINE_RETRY, *params),
            )
        return int(cur.rowcount)

    def quarantine_drop(self, route: str | None = None, positions: Iterable[int] | None = None) -> int:
        """Forget entries (the events stay in capture; the route never sends them); returns how many."""
        clauses, params = self._quarantine_where(route, positions)
        with self._lock:
            cur = self._db.execute(f"DELETE FROM quarantine AS q {clauses}", params)  # noqa: S608 - values bound
        return int(cur.rowcount)

    def quarantine_due(self, route: str, limit: int = 100) -> list[RouteRow]:
        """The rows of ``route``'s entries marked for retry, in capture order (what it publishes
        from). A running route asks every second: through the routes' own connection, so it
        never waits for an append."""
        return self._route_query(
            "SELECT e.pos, e.envelope, e.datasource, e.op, e.key FROM quarantine q JOIN events e"
            " ON e.pos = q.pos WHERE q.route = ? AND q.state = ? ORDER BY q.pos LIMIT ?",
            (route, QUARANTINE_RETRY, limit),
        )

    def quarantine_release(self, route: str, pos: int) -> None:
        """A retried entry was published: it leaves the quarantine."""
        with self._lock:
            self._db.execute("DELETE FROM quarantine WHERE route = ? AND pos = ?", (route, pos))

    @staticmethod
    def _quarantine_where(route: str | None, positions: Iterable[int] | None) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        params: list[Any] = []
        if route is not None:
            clauses.append("q.route = ?")
            params.append(route)
        if positions is not None:
            wanted = list(positions)
            clauses.append(f"q.pos IN ({','.join('?' * len(wanted))})" if wanted else "0")
            params += wanted
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    # -- reading ---------------------------------------------------------------------------
    def checkpoint(self, model: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT seq FROM checkpoints WHERE model = ?", (model,)).fetchone()
        return None if row is None else json_codec.loads(row[0])

    def route_position(self, route: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT pos FROM route_positions WHERE route = ?", (route,)).fetchone()
        return None if row is None else int(row[0])

    def last_pos(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                row = self._db.execute("SELECT MAX(pos) FROM events").fetchone()
            else:
                row = self._db.execute("SELECT MAX(pos) FROM events WHERE model = ?", (model,)).fetchone()
        return int(row[0] or 0)

    def read_after(self, model: str, pos: int, limit: int) -> list[tuple[int, bytes]]:
        """The next ``limit`` stored envelopes (raw JSON) of ``model`` after position ``pos``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT pos, envelope FROM events WHERE model = ? AND pos > ? ORDER BY pos LIMIT ?",
                (model, pos, limit),
            ).fetchall()
        return [(int(p), bytes(e)) for p, e in rows]

    def events_after(self, pos: int, limit: int) -> list[CapturedEvent]:
        """The next ``limit`` events of every model after position ``pos`` (a viewer following
        a capture that another process writes)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT pos, envelope FROM events WHERE pos > ? ORDER BY pos LIMIT ?", (pos, limit)
            ).fetchall()
        return [CapturedEvent(int(p), json_codec.loads(e)) for p, e in rows]

    def read_route_rows(self, model: str, pos: int, limit: int) -> list[RouteRow]:
        """Like :meth:`read_after`, with the columns a topic is made of:
        ``(pos, envelope, datasource, op, key)`` (the route then needs no JSON parsing).

        Reads through the routes' own connection: safe to call while another thread appends.
        """
        return self._route_query(
            "SELECT pos, envelope, datasource, op, key FROM events WHERE model = ? AND pos > ? ORDER BY pos LIMIT ?",
            (model, pos, limit),
        )

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

    def count(self, model: str | None = None, *, after: int = 0) -> int:
        with self._lock:
            if model is None:
                row = self._db.execute("SELECT COUNT(*) FROM events WHERE pos > ?", (after,)).fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM events WHERE model = ? AND pos > ?", (model, after)
                ).fetchone()
        return int(row[0])

    def latest(
        self,
        limit: int,
        *,
        models: Iterable[str] | None = None,
        before: int | None = None,
        quarantined: bool = False,
    ) -> list[CapturedEvent]:
        """The newest ``limit`` events (optionally of ``models``, before ``pos``, only those some
        route holds in quarantine), oldest first."""
        clauses, params = self._where(models=models, before=before, quarantined=quarantined)
        sql = f"SELECT pos, envelope FROM events {clauses} ORDER BY pos DESC LIMIT ?"  # noqa: S608 - clauses are ours, values bound
        with self._lock:
            rows = self._db.execute(sql, (*params, limit)).fetchall()
        return [CapturedEvent(int(p), json_codec.loads(e)) for p, e in reversed(rows)]

    def previous_revision(self, model: str, key: str, pos: int) -> CapturedEvent | None:
        """The latest earlier event of the same key (for "diff against previous revision")."""
        with self._lock:
            row = self._db.execute(
                "SELECT pos, envelope FROM events WHERE model = ? AND key = ? AND pos < ? ORDER BY pos DESC LIMIT 1",
                (model, key, pos),
            ).fetchone()
        return None if row is None else CapturedEvent(int(row[0]), json_codec.loads(row[1]))

    def get(self, pos: int) -> CapturedEvent | None:
        with self._lock:
            row = self._db.execute("SELECT pos, envelope FROM events WHERE pos = ?", (pos,)).fetchone()
        return None if row is None else CapturedEvent(int(row[0]), json_codec.loads(row[1]))

    def iter_raw(
        self,
        *,
        models: Iterable[str] | None = None,
        ops: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        quarantined: bool = False,
        chunk: int = 5000,
    ) -> Iterator[tuple[int, bytes]]:
        """Every matching stored envelope in capture order, read in chunks (flat memory)."""
        after = 0
        while True:
            clauses, params = self._where(
                models=models, ops=ops, since=since, until=until, after=after, quarantined=quarantined
            )
            with self._lock:
                rows = self._db.execute(
                    f"SELECT pos, envelope FROM events {clauses} ORDER BY pos LIMIT ?",  # noqa: S608 - values bound
                    (*params, chunk),
                ).fetchall()
            if not rows:
                return
            for p, e in rows:
                yield int(p), bytes(e)
            after = int(rows[-1][0])

    def iter_raw_at(self, positions: Iterable[int], *, chunk: int = 500) -> Iterator[tuple[int, bytes]]:
        """The stored envelopes at ``positions`` (e.g. selected rows), in capture order; unknown ones are skipped."""
        wanted = sorted(set(positions))
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            marks = ",".join("?" * len(part))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT pos, envelope FROM events WHERE pos IN ({marks}) ORDER BY pos",  # noqa: S608 - values bound
                    part,
                ).fetchall()
            for p, e in rows:
                yield int(p), bytes(e)

    def iter_joined(
        self,
        separator: bytes,
        *,
        models: Iterable[str] | None = None,
        ops: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        quarantined: bool = False,
        upto: int | None = None,
        span: int = 5000,
    ) -> Iterator[tuple[int, bytes]]:
        """Matching stored envelopes up to position ``upto``, in capture order, joined by ``separator``
        inside SQLite ``span`` positions at a time: ``(count, joined)`` per non-empty window.

        The fast path of exports that need no parsing: one Python object per window, not per event.
        """
        with self._lock:
            lo, hi = self._db.execute("SELECT MIN(pos), MAX(pos) FROM events").fetchone()
        if lo is None:
            return
        last = int(hi) if upto is None else min(int(hi), upto)
        after = int(lo) - 1
        names = None if models is None else list(models)
        wanted = None if ops is None else list(ops)
        while after < last:
            before = min(after + span, last) + 1
            clauses, params = self._where(
                models=names,
                ops=wanted,
                since=since,
                until=until,
                after=after,
                before=before,
                quarantined=quarantined,
            )
            # NOT INDEXED keeps the scan on the rowid range, so the rows come in capture order.
            inner = f"SELECT envelope FROM events NOT INDEXED {clauses} ORDER BY pos"  # noqa: S608 - values bound
            sql = f"SELECT COUNT(*), CAST(group_concat(envelope, ?) AS BLOB) FROM ({inner})"  # noqa: S608
            with self._lock:
                count, joined = self._db.execute(sql, (separator, *params)).fetchone()
            if count:
                yield int(count), bytes(joined)
            after = before - 1

    def models(self) -> list[str]:
        """The names of the models that have events here, sorted."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT model FROM events ORDER BY model").fetchall()
        return [str(r[0]) for r in rows]

    def count_matching(
        self,
        *,
        models: Iterable[str] | None = None,
        ops: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        quarantined: bool = False,
    ) -> int:
        """How many events :meth:`iter_raw` would yield with the same arguments."""
        clauses, params = self._where(
            models=models, ops=ops, since=since, until=until, quarantined=quarantined
        )
        with self._lock:
            row = self._db.execute(f"SELECT COUNT(*) FROM events {clauses}", params).fetchone()  # noqa: S608 - values bound
        return int(row[0])

    def import_events(self, events: Sequence[Event]) -> int:
        """Store events taken from elsewhere (an imported recording) in one transaction, each under
        its own model and without touching checkpoints; returns how many were new."""
        added = 0
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for ev in events:
                    cur.execute(
                        "INSERT OR IGNORE INTO events (id, received_at, datasource, model, op, key, rev, envelope)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            ev.id,
                            ev.received_at,
                            ev.datasource,
                            ev.model,
                            ev.op,
                            ev.key,
                            ev.rev,
                            json_codec.dumps(ev.to_dict()),
                        ),
                    )
                    added += cur.rowcount
                cur.execute("COMMIT")
            except BaseException as exc:
                self._abandon(exc)
                raise
        return added

    def states(self) -> list[StoredState]:
        with self._lock:
            rows = self._db.execute("SELECT object, state, detail, pid, updated_at FROM states").fetchall()
        return [StoredState(*r) for r in rows]

    def checkpoints(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT model, seq FROM checkpoints").fetchall()
        return {m: json_codec.loads(s) for m, s in rows}

    @staticmethod
    def _where(
        *,
        models: Iterable[str] | None = None,
        ops: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        after: int | None = None,
        before: int | None = None,
        quarantined: bool = False,
    ) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        params: list[Any] = []
        if models is not None:
            names = list(models)
            clauses.append(f"model IN ({','.join('?' * len(names))})" if names else "0")
            params += names
        if ops is not None:
            wanted = list(ops)
            clauses.append(f"op IN ({','.join('?' * len(wanted))})" if wanted else "0")
            params += wanted
        if since is not None:
            clauses.append("received_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("received_at < ?")
            params.append(until)
        if after is not None:
            clauses.append("pos > ?")
            params.append(after)
        if before is not None:
            clauses.append("pos < ?")
            params.append(before)
        if quarantined:
            clauses.append("pos IN (SELECT pos FROM quarantine)")
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
