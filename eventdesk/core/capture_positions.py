"""The capture's bookkeeping tables: model checkpoints, route positions and live states.

A model's checkpoint is written with its events (:meth:`~eventdesk.core.capture.Capture.append`);
here it is read back, beside each route's acknowledged position and the last state of every
model, route and broker (with the writer's PID, so ``eventdesk status`` in another process
can show a running ``run``'s states).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from eventdesk.core import json_codec
from eventdesk.core.capture_db import CaptureDatabase
from eventdesk.core.envelope import utc_now_iso


@dataclass(frozen=True, slots=True)
class StoredState:
    object: str
    state: str
    detail: str | None
    pid: int | None
    updated_at: str


class CapturePositions(CaptureDatabase):
    """Checkpoints, route positions and states of a capture (a part of :class:`~eventdesk.core.capture.Capture`)."""

    def set_route_position(self, route: str, pos: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO route_positions (route, pos, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (route) DO UPDATE SET pos = excluded.pos, updated_at = excluded.updated_at",
                (route, pos, utc_now_iso()),
            )

    def set_checkpoint(self, model: str, seq: Any) -> None:
        """Set ``model``'s checkpoint (None: none, the model starts from its ``since``) without
        events: a fleet agent taking a model over resumes from the fleet's point, not its own."""
        with self._lock:
            if seq is None:
                self._db.execute("DELETE FROM checkpoints WHERE model = ?", (model,))
                return
            self._db.execute(
                "INSERT INTO checkpoints (model, seq, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
                (model, json_codec.dumps(seq), utc_now_iso()),
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

    def checkpoint(self, model: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT seq FROM checkpoints WHERE model = ?", (model,)).fetchone()
        return None if row is None else json_codec.loads(row[0])

    def route_position(self, route: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT pos FROM route_positions WHERE route = ?", (route,)).fetchone()
        return None if row is None else int(row[0])

    def states(self) -> list[StoredState]:
        with self._lock:
            rows = self._db.execute("SELECT object, state, detail, pid, updated_at FROM states").fetchall()
        return [StoredState(*r) for r in rows]

    def checkpoints(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT model, seq FROM checkpoints").fetchall()
        return {m: json_codec.loads(s) for m, s in rows}
