"""Which captured events an export or a replay takes: models, ops, a time range, a filter, rows.

Models, ops and the time range run in SQLite; free text and the JMESPath expression run in
Python with the same :class:`~eventdesk.core.filters.EventFilter` as the live table, so "what
the table shows now" exports exactly what the table shows (beyond its bounded window too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventdesk.core import json_codec
from eventdesk.core.capture import Capture
from eventdesk.core.envelope import OPS
from eventdesk.core.errors import ConfigError
from eventdesk.core.filters import EventFilter, FilterError

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def format_utc(when: datetime) -> str:
    """``when`` as an envelope's ``received_at``: ``2026-11-29T10:00:00.123Z``."""
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str, *, obj: str = "scope", field: str = "since", now: datetime | None = None) -> str:
    """A user's time as a ``received_at`` string for comparisons.

    Accepts ISO 8601 (``2026-11-29``, ``2026-11-29T10:00``, ``… 10:00:00.5Z``, ``…+02:00``; a time
    without a zone is local time), ``now``, or a duration ago (``30s``, ``15m``, ``2h``, ``3d``, ``1w``).
    """
    raw = text.strip()
    current = now if now is not None else datetime.now(UTC)
    if raw.lower() == "now":
        return format_utc(current)
    match = _RELATIVE.match(raw)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        return format_utc(current - timedelta(seconds=seconds))
    try:
        when = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time; use ISO 8601 (2026-11-29T10:00:00Z), 'now' or a duration ago (15m, 2h, 3d)",
            obj=obj,
            field=field,
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as typed
    return format_utc(when)


@dataclass(frozen=True)
class EventScope:
    """The events to take. ``None`` means "any"; everything given must hold (AND).

    ``since`` is inclusive and ``until`` exclusive, both ``received_at`` strings (see
    :func:`parse_time`). ``positions`` restricts to those capture positions (selected rows).
    """

    models: frozenset[str] | None = None
    ops: frozenset[str] | None = None
    since: str | None = None
    until: str | None = None
    expression: str = ""
    text: str = ""
    positions: frozenset[int] | None = None
    quarantined: bool = False

    @classmethod
    def from_filter(cls, flt: EventFilter, **extra: Any) -> EventScope:
        """The scope of "what the table shows now" for the table's filter ``flt``."""
        return cls(
            models=flt.models,
            ops=flt.ops,
            expression=flt.expression,
            text=flt.text,
            quarantined=flt.quarantined,
            **extra,
        )

    @property
    def event_filter(self) -> EventFilter:
        return EventFilter(text=self.text, expression=self.expression)

    def conditions(self) -> dict[str, Any]:
        """The conditions SQLite applies, as keyword arguments of the capture's queries."""
        return {
            "models": self.models,
            "ops": self.ops,
            "since": self.since,
            "until": self.until,
            "quarantined": self.quarantined,
        }

    def describe(self) -> str:
        parts = []
        if self.positions is not None:
            parts.append(f"{len(self.positions)} selected rows")
        if self.models is not None:
            parts.append("models " + ", ".join(sorted(self.models)))
        if self.ops is not None:
            parts.append("op " + ", ".join(sorted(self.ops)))
        if self.since:
            parts.append(f"since {self.since}")
        if self.until:
            parts.append(f"until {self.until}")
        if self.text:
            parts.append(f"text {self.text!r}")
        if self.expression:
            parts.append(f"filter {self.expression!r}")
        if self.quarantined:
            parts.append("quarantined")
        return "; ".join(parts) if parts else "every event"

    def check(self, obj: str = "scope") -> EventScope:
        """Raise :class:`ConfigError` naming the field for a bad op, time range or expression."""
        if self.ops is not None:
            unknown = sorted(set(self.ops) - set(OPS))
            if unknown:
                raise ConfigError(
                    f"unknown op {unknown[0]!r}; expected one of {', '.join(OPS)}", obj=obj, field="op"
                )
        if self.since and self.until and self.since >= self.until:
            raise ConfigError(
                f"the time range is empty: since {self.since} is not before until {self.until}",
                obj=obj,
                field="until",
            )
        try:
            self.event_filter.compile()
        except FilterError as exc:
            raise ConfigError(f"invalid JMESPath: {exc.describe()}", obj=obj, field="filter") from None
        return self


class Selection:
    """Iterates the events of ``scope`` in ``capture`` in capture order, with flat memory.

    Yields ``(pos, raw_envelope, envelope_or_None)``: the envelope is parsed only when a Python
    filter needed it. ``scanned`` counts rows read so far, ``total()`` the rows SQLite will hand
    over (an upper bound of what matches, for progress).
    """

    def __init__(self, capture: Capture, scope: EventScope, *, chunk: int = 5000) -> None:
        self.capture = capture
        self.scope = scope.check()
        self.chunk = chunk
        self.scanned = 0
        self.upto = capture.last_pos()  # what was captured when the selection was made
        flt = scope.event_filter
        self._filter: EventFilter | None = None if flt.is_empty else flt.compile()

    @property
    def parses(self) -> bool:
        """True when every event is parsed anyway (a text or JMESPath filter is set)."""
        return self._filter is not None

    def total(self) -> int:
        s = self.scope
        if s.positions is not None:
            return len(s.positions)
        return self.capture.count_matching(**s.conditions())

    @property
    def joinable(self) -> bool:
        """True when :meth:`joined` can serve this scope (no Python filter, no selected rows)."""
        return self._filter is None and self.scope.positions is None

    def joined(self, separator: bytes) -> Iterator[tuple[int, bytes]]:
        """``(count, envelopes joined by separator)`` per window, done inside SQLite (see
        :meth:`Capture.iter_joined`); only when :attr:`joinable`."""
        assert self.joinable
        s = self.scope
        for count, joined in self.capture.iter_joined(separator, upto=self.upto, **s.conditions()):
            self.scanned += count
            yield count, joined

    def _rows(self) -> Iterable[tuple[int, bytes]]:
        s = self.scope
        if s.positions is None:
            return self.capture.iter_raw(chunk=self.chunk, **s.conditions())
        return self.capture.iter_raw_at(s.positions)

    def __iter__(self) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
        s = self.scope
        flt = self._filter
        # Selected rows are fetched by position: the other conditions are checked here.
        sql_side = s.positions is None
        upto = self.upto
        for pos, raw in self._rows():
            if pos > upto:
                return
            self.scanned += 1
            env: dict[str, Any] | None = None
            if not sql_side:
                env = json_codec.loads(raw)
                if not _in_sql_scope(env, s):
                    continue
            if flt is not None:
                if env is None:
                    env = json_codec.loads(raw)
                if not flt.matches(env):
                    continue
            yield pos, raw, env


def _in_sql_scope(env: dict[str, Any], s: EventScope) -> bool:
    received = str(env.get("received_at", ""))
    return (
        (s.models is None or env.get("model") in s.models)
        and (s.ops is None or env.get("op") in s.ops)
        and (s.since is None or received >= s.since)
        and (s.until is None or received < s.until)
    )
