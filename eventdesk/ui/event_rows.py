"""What the event table shows of an event: its columns, colours, one-line summary and local time.

Shared by the table's model (eventdesk/ui/event_table_model.py), the detail pane and the rate chart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from eventdesk.core import json_codec
from eventdesk.core.capture import CapturedEvent
from eventdesk.core.capture_reads import StoredRow

COLUMNS = ("Received", "Datasource", "Model", "Op", "Key", "Rev", "Summary")
COL_RECEIVED, COL_DATASOURCE, COL_MODEL, COL_OP, COL_KEY, COL_REV, COL_SUMMARY = range(len(COLUMNS))
DEFAULT_WIDTHS = (95, 110, 90, 70, 150, 110)

SUMMARY_CHARS = 200

EventRole = Qt.ItemDataRole.UserRole + 1
"""``data(index, EventRole)`` is the row's :class:`CapturedEvent`."""

OP_COLORS = {"created": "#2e7d32", "updated": "#1565c0", "deleted": "#c62828", "truncated": "#6a1b9a"}
_OP_FOREGROUND = {op: QColor(c) for op, c in OP_COLORS.items()}
_OP_BACKGROUND = {
    op: QColor(QColor(c).red(), QColor(c).green(), QColor(c).blue(), 38) for op, c in OP_COLORS.items()
}

# Distinct on light and dark backgrounds. Models get them in the order they are first asked for,
# so the first ten models of a session never share a colour.
MODEL_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#5c6bc0",
)
_model_colors: dict[str, QColor] = {}


def model_color(name: str) -> QColor:
    """The colour of a model, shared by the table and the rate chart."""
    color = _model_colors.get(name)
    if color is None:
        color = _model_colors[name] = QColor(MODEL_PALETTE[len(_model_colors) % len(MODEL_PALETTE)])
    return color


# -- one-line summaries ----------------------------------------------------------------------------
def _tokens(value: Any, limit: int, depth: int = 0) -> Iterator[str]:
    if depth > 32:
        yield "…"
    elif isinstance(value, dict):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            if i:
                yield ", "
            yield orjson.dumps(str(k)[:limit]).decode()
            yield ": "
            yield from _tokens(v, limit, depth + 1)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for i, v in enumerate(value):
            if i:
                yield ", "
            yield from _tokens(v, limit, depth + 1)
        yield "]"
    elif isinstance(value, str):
        yield orjson.dumps(value[: limit + 1]).decode()
    else:
        try:
            yield orjson.dumps(value).decode()
        except (TypeError, orjson.JSONEncodeError):
            yield str(value)[: limit + 1]


def summarize(payload: Any, limit: int = SUMMARY_CHARS) -> str:
    """A one-line JSON rendering of ``payload`` cut at ``limit`` characters; never walks more than it shows."""
    if payload is None:
        return ""
    parts: list[str] = []
    size = 0
    for token in _tokens(payload, limit):
        parts.append(token)
        size += len(token)
        if size > limit:
            break
    text = "".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_today: tuple[float, Any] = (0.0, None)  # (when it was asked, the local date then)


def _local_today() -> Any:
    """Today's local date, asked of the clock at most once a second (not for every cell)."""
    global _today
    now = time.monotonic()
    if now - _today[0] >= 1.0 or _today[1] is None:
        _today = (now, datetime.now().astimezone().date())
    return _today[1]


def format_received(iso: str) -> str:
    """Local time of day (with the date when not today) from an envelope's UTC ``received_at``."""
    try:
        when = datetime.fromisoformat(iso).astimezone()
    except (TypeError, ValueError):
        return str(iso)
    clock = f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}"
    if when.date() == _local_today():
        return clock
    return f"{when.year:04d}-{when.month:02d}-{when.day:02d} {clock}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class Row:
    """One event of the table: the stored columns it shows (``received_at, datasource, model,
    op, key, rev``), its envelope decoded only when asked (the summary, :attr:`event`), and its
    cell texts made once, when it is first painted."""

    __slots__ = ("_event", "_raw", "_texts", "fields", "pos")

    def __init__(self, event: CapturedEvent) -> None:
        env = event.envelope
        self.pos = event.pos
        self.fields = tuple(_text(env.get(name)) for name in _FIELDS)
        self._raw: bytes | None = None
        self._event: CapturedEvent | None = event
        self._texts: tuple[str, ...] | None = None

    @classmethod
    def stored(cls, row: StoredRow) -> Row:
        """A row as the capture holds it (``CaptureReads.view_rows``): nothing decoded yet."""
        self = cls.__new__(cls)
        self.pos = row[0]
        self.fields = (row[1], row[2], row[3], row[4], row[5], _text(row[6]))
        self._raw = row[7]
        self._event = None
        self._texts = None
        return self

    @property
    def event(self) -> CapturedEvent:
        if self._event is None:
            assert self._raw is not None
            self._event = CapturedEvent(self.pos, json_codec.loads(self._raw))
            self._raw = None
        return self._event

    def texts(self) -> tuple[str, ...]:
        """The seven cells' texts (the received time local, the payload summarized)."""
        if self._texts is None:
            received, datasource, model, op, key, rev = self.fields
            summary = summarize(self.event.envelope.get("payload"))
            self._texts = (format_received(received), datasource, model, op, key, rev, summary)
        return self._texts


_FIELDS = ("received_at", "datasource", "model", "op", "key", "rev")
ANSWERED_ROLES = frozenset(
    int(r)
    for r in (
        Qt.ItemDataRole.DisplayRole,
        Qt.ItemDataRole.ToolTipRole,
        Qt.ItemDataRole.ForegroundRole,
        Qt.ItemDataRole.BackgroundRole,
        Qt.ItemDataRole.FontRole,
        EventRole,
    )
)
"""The roles :func:`cell_data` may answer (the model answers the others None without a row)."""


def cell_text(row: Row, col: int) -> str:
    """The text of column ``col`` of ``row``."""
    return row.texts()[col]


def cell_data(row: Row, col: int, role: int, bold: Any) -> Any:
    """What ``data()`` answers for ``role`` in column ``col`` of ``row`` (``bold``: the op's font)."""
    if role == Qt.ItemDataRole.DisplayRole:
        return row.texts()[col]
    if role == Qt.ItemDataRole.ToolTipRole:
        if col == COL_RECEIVED:
            return row.fields[0]
        if col in (COL_KEY, COL_REV, COL_SUMMARY):
            return row.texts()[col]
        return None
    if role == Qt.ItemDataRole.ForegroundRole:
        if col == COL_OP:
            return _OP_FOREGROUND.get(row.fields[3])
        if col == COL_MODEL:
            return model_color(row.fields[2])
        return None
    if role == Qt.ItemDataRole.BackgroundRole and col == COL_OP:
        return _OP_BACKGROUND.get(row.fields[3])
    if role == Qt.ItemDataRole.FontRole and col == COL_OP:
        return bold
    if role == EventRole:
        return row.event
    return None
