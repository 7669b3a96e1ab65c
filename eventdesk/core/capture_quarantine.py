"""The capture's quarantine table: events a route could not publish, set aside with the reason.

An entry is per route and capture position; the event itself stays in the events table. The
user retries an entry (the route sends it again, after the events that followed it) or drops
it (the route never sends it); see docs/architecture.md, "The delivery promise".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eventdesk.core.capture_db import CaptureDatabase
from eventdesk.core.capture_reads import RouteRow
from eventdesk.core.envelope import utc_now_iso

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


class CaptureQuarantine(CaptureDatabase):
    """The quarantine of a capture (a part of :class:`~eventdesk.core.capture.Capture`)."""

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
