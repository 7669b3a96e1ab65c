"""What the event table shows of an event: its columns, colours, one-line summary and local time.

Shared by the table's model (eventdesk/ui/event_table_model.py), the detail pane and the rate chart.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from eventdesk.core.capture import CapturedEvent

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


def format_received(iso: str) -> str:
    """Local time of day (with the date when not today) from an envelope's UTC ``received_at``."""
    try:
        when = datetime.fromisoformat(iso).astimezone()
    except (TypeError, ValueError):
        return str(iso)
    clock = when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    if when.date() == datetime.now().astimezone().date():
        return clock
    return when.strftime("%Y-%m-%d ") + clock


class Row:
    """One event of the table with its cell texts, made when first shown."""

    __slots__ = ("event", "received", "summary")

    def __init__(self, event: CapturedEvent) -> None:
        self.event = event
        self.received: str | None = None
        self.summary: str | None = None


def cell_text(row: Row, col: int) -> str:
    """The text of column ``col`` of ``row`` (the received time and summary made once)."""
    env = row.event.envelope
    if col == COL_RECEIVED:
        if row.received is None:
            row.received = format_received(str(env.get("received_at", "")))
        return row.received
    if col == COL_SUMMARY:
        if row.summary is None:
            row.summary = summarize(env.get("payload"))
        return row.summary
    value = env.get(COLUMNS[col].lower())
    return "" if value is None else str(value)


def cell_data(row: Row, col: int, role: int, bold: Any) -> Any:
    """What ``data()`` answers for ``role`` in column ``col`` of ``row`` (``bold``: the op's font)."""
    env = row.event.envelope
    if role == Qt.ItemDataRole.DisplayRole:
        return cell_text(row, col)
    if role == Qt.ItemDataRole.ToolTipRole:
        if col == COL_RECEIVED:
            return str(env.get("received_at", ""))
        if col in (COL_KEY, COL_REV, COL_SUMMARY):
            return cell_text(row, col)
        return None
    if role == Qt.ItemDataRole.ForegroundRole:
        if col == COL_OP:
            return _OP_FOREGROUND.get(str(env.get("op")))
        if col == COL_MODEL:
            return model_color(str(env.get("model", "")))
        return None
    if role == Qt.ItemDataRole.BackgroundRole and col == COL_OP:
        return _OP_BACKGROUND.get(str(env.get("op")))
    if role == Qt.ItemDataRole.FontRole and col == COL_OP:
        return bold
    if role == EventRole:
        return row.event
    return None
