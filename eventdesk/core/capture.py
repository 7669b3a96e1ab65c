"""The capture: every event received, in SQLite (WAL), with model checkpoints and route positions.

One transaction per batch: a model's events and its checkpoint are committed together, so a
checkpoint never runs ahead of what is stored (docs/architecture.md, "The delivery promise").
Appends are idempotent on ``(model, key, rev)`` because change feeds may replay.

A :class:`Capture` owns one connection guarded by a lock; the runtime calls it from one
worker thread so the event loop never waits on SQLite. This module holds the writes of events;
the rest of the capture is one module per concern: its connections (``capture_db``), event
reads (``capture_reads``), checkpoints, route positions and states (``capture_positions``),
the quarantine (``capture_quarantine``), and its schema, version and upgrades
(``capture_schema``); docs/architecture.md, "The capture: schema and versioning".
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventdesk.core import json_codec
from eventdesk.core.capture_db import CaptureDatabase, capture_failure, recovery_hint
from eventdesk.core.capture_positions import CapturePositions, StoredState
from eventdesk.core.capture_quarantine import (
    QUARANTINE_HELD,
    QUARANTINE_RETRY,
    CaptureQuarantine,
    QuarantineEntry,
)
from eventdesk.core.capture_reads import CapturedEvent, CaptureReads, RouteRow
from eventdesk.core.envelope import Event, utc_now_iso

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


@dataclass(slots=True)
class Appended:
    """What one append stored: the model's last position before it, the new events, and the
    same events as route rows."""

    after: int
    events: list[CapturedEvent]
    rows: list[RouteRow]


class Capture(CaptureReads, CapturePositions, CaptureQuarantine):
    """The capture database at ``path``; safe to share between threads."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        super().__init__(path, readonly=readonly)
        variables = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._insert_rows = max(1, min(INSERT_ROWS, variables // _EVENT_COLUMNS))

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


__all__ = [
    "INSERT_ROWS",
    "QUARANTINE_HELD",
    "QUARANTINE_RETRY",
    "Appended",
    "Capture",
    "CaptureDatabase",
    "CapturedEvent",
    "QuarantineEntry",
    "RouteRow",
    "StoredState",
    "capture_failure",
    "recovery_hint",
]
