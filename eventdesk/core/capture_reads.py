"""Reading the capture's events: by model and position (routes, views), filtered (exports), counted.

Most reads go through the writer's connection under its lock; the routes read through a
connection of their own (:meth:`read_route_rows`), so a route catching up never queues behind
its model's appends, and so does the live table (the ``view_*`` reads: pages of its virtual
view over the whole capture, and the index of what its filter matches, built on a worker thread).
The filters of the queries are built in one place, :meth:`CaptureReads._where`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventdesk.core import capture_schema, json_codec
from eventdesk.core.capture_db import CaptureDatabase


@dataclass(slots=True)
class CapturedEvent:
    """An event as stored: its capture position and its envelope. Treat it as read-only (not
    frozen: a frozen dataclass's ``__init__`` costs measurably on the hot path, and its dict
    envelope made it unhashable anyway)."""

    pos: int
    envelope: dict[str, Any]


StoredRow = tuple[int, str, str, str, str, str, "str | None", bytes]
"""A row of the table as stored: ``(pos, received_at, datasource, model, op, key, rev, envelope JSON)``."""

RouteRow = tuple[int, bytes, str, str, str]
"""What a route publishes from: ``(pos, envelope JSON, datasource, op, key)``."""


class CaptureReads(CaptureDatabase):
    """The event reads of a capture (a part of :class:`~eventdesk.core.capture.Capture`)."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        super().__init__(path, readonly=readonly)
        self._view_lock = threading.RLock()
        self._view_db: sqlite3.Connection | None = None
        self._view_closed = False

    def close(self) -> None:
        super().close()
        with self._view_lock:
            self._view_closed = True
            if self._view_db is not None:
                self._view_db.close()
                self._view_db = None

    # -- the live table's reads: a read-only connection of its own (WAL: never waits for appends) --
    def _view_query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._view_lock:
            db = self._view_db
            if db is None:
                if self._view_closed:  # a worker's late read: never reopen a closed capture
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
                db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
                )
                db.execute("PRAGMA busy_timeout=5000")
                capture_schema.stand_in(db, capture_schema.stored_version(db))  # an older file's quarantine
                self._view_db = db
            return db.execute(sql, params).fetchall()

    def view_span(
        self,
        *,
        after: int = 0,
        before: int | None = None,
        models: Iterable[str] | None = None,
        ops: Iterable[str] | None = None,
        quarantined: bool = False,
    ) -> tuple[int, int, int]:
        """``(count, lowest, highest)`` position of the events in ``(after, before)`` of ``models``
        and ``ops`` (``count == highest - lowest + 1``: they are a contiguous run)."""
        if models is None and ops is None and not quarantined:
            # SQLite counts a whole table fast (from its smallest index) but a range of rowids
            # only by reading the table's pages: count everything and take the ends away.
            queries: list[tuple[str, Sequence[Any]]] = [("SELECT COUNT(*) FROM events", ())]
            if before is not None:
                queries.append(("SELECT COUNT(*) FROM events WHERE pos >= ?", (before,)))
            if after:
                queries.append(("SELECT COUNT(*) FROM events WHERE pos <= ?", (after,)))
            clauses, params = self._where(after=after or None, before=before)
            queries.append((f"SELECT MIN(pos), MAX(pos) FROM events {clauses}", params))  # noqa: S608 - values bound
            *counts, (lo, hi) = self._view_snapshot(queries)
            count = counts[0][0] - sum(c[0] for c in counts[1:])
        else:
            clauses, params = self._where(
                models=models, ops=ops, after=after or None, before=before, quarantined=quarantined
            )
            sql = f"SELECT COUNT(*), MIN(pos), MAX(pos) FROM events {clauses}"  # noqa: S608 - values bound
            count, lo, hi = self._view_query(sql, params)[0]
        return int(count), int(lo or 0), int(hi or 0)

    def _view_snapshot(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """The first row of each query, all read from one snapshot of the capture."""
        with self._view_lock:
            self._view_query("BEGIN", ())
            try:
                return [self._view_query(sql, params)[0] for sql, params in queries]
            finally:
                self._view_query("COMMIT", ())

    def view_positions(
        self,
        limit: int,
        *,
        after: int = 0,
        before: int | None = None,
        models: Iterable[str] | None = None,
        ops: Iterable[str] | None = None,
        quarantined: bool = False,
    ) -> list[int]:
        """The positions of the newest ``limit`` such events in ``(after, before)``, newest first."""
        clauses, params = self._where(
            models=models, ops=ops, after=after or None, before=before, quarantined=quarantined
        )
        sql = f"SELECT pos FROM events {clauses} ORDER BY pos DESC LIMIT ?"  # noqa: S608 - values bound
        return [int(r[0]) for r in self._view_query(sql, (*params, limit))]

    def view_raw(
        self,
        limit: int,
        *,
        after: int = 0,
        before: int | None = None,
        models: Iterable[str] | None = None,
        ops: Iterable[str] | None = None,
        quarantined: bool = False,
        contains: str | None = None,
    ) -> list[tuple[int, bytes]]:
        """Like :meth:`view_positions`, with each stored envelope (raw JSON). ``contains`` (ASCII,
        lower case) keeps only envelopes that may contain it in any case: those that contain it
        ASCII-lowercased, and every one with a non-ASCII character (whose case folding SQLite
        does not know). SQLite does that work, without Python's GIL."""
        clauses, params = self._where(
            models=models, ops=ops, after=after or None, before=before, quarantined=quarantined
        )
        if contains is not None:
            screen = (
                "(instr(lower(CAST(envelope AS TEXT)), ?) > 0"
                " OR length(CAST(envelope AS TEXT)) != length(envelope))"
            )
            clauses = f"{clauses} AND {screen}" if clauses else f"WHERE {screen}"
            params = (*params, contains)
        sql = f"SELECT pos, envelope FROM events {clauses} ORDER BY pos DESC LIMIT ?"  # noqa: S608 - values bound
        return [(int(p), bytes(e)) for p, e in self._view_query(sql, (*params, limit))]

    def view_rows(self, positions: Sequence[int]) -> list[StoredRow]:
        """The table's page at ``positions``, in capture order: each event's shown columns as
        stored, and its envelope's raw JSON left for the caller to decode when it needs it."""
        if not positions:
            return []
        marks = ",".join("?" * len(positions))
        sql = (
            "SELECT pos, received_at, datasource, model, op, key, rev, envelope"  # noqa: S608 - values bound
            f" FROM events WHERE pos IN ({marks}) ORDER BY pos"
        )
        return self._view_query(sql, positions)

    def view_last_pos(self) -> int:
        """The newest position (0: none), read without waiting for the writer's lock."""
        return int(self._view_query("SELECT MAX(pos) FROM events", ())[0][0] or 0)

    def view_received_at(self, pos: int) -> str | None:
        """The ``received_at`` of the event at ``pos`` (None: no such event)."""
        rows = self._view_query("SELECT received_at FROM events WHERE pos = ?", (pos,))
        return str(rows[0][0]) if rows else None

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

    def last_event_upto(self, model: str, pos: int) -> CapturedEvent | None:
        """``model``'s last event at or before position ``pos`` (a fleet agent's resume point:
        eventdesk/fleet/progress.py)."""
        with self._lock:
            row = self._db.execute(
                "SELECT pos, envelope FROM events WHERE model = ? AND pos <= ? ORDER BY pos DESC LIMIT 1",
                (model, pos),
            ).fetchone()
        return None if row is None else CapturedEvent(int(row[0]), json_codec.loads(row[1]))

    def position_of(self, model: str, key: str, rev: str | None) -> int | None:
        """The position of ``model``'s event ``(key, rev)`` if this capture holds it."""
        with self._lock:
            row = self._db.execute(
                "SELECT pos FROM events WHERE model = ? AND key = ? AND rev IS ?", (model, key, rev)
            ).fetchone()
        return None if row is None else int(row[0])

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
