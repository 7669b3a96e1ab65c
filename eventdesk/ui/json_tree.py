"""A lazy JSON tree model: child rows exist only once their parent is expanded, in chunks.

Showing a multi-megabyte document costs one chunk of top-level rows; nothing below is walked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from eventdesk.core import json_codec

FETCH_CHUNK = 200
VALUE_CHARS = 500
TOOLTIP_CHARS = 2000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TYPE_COLORS = {
    "string": QColor("#2e7d32"),
    "number": QColor("#1565c0"),
    "boolean": QColor("#8e24aa"),
    "null": QColor("#8e24aa"),
}

Index = QModelIndex | QPersistentModelIndex


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _scalar_text(value: Any, limit: int) -> str:
    if isinstance(value, str):
        return orjson.dumps(value[: limit + 1]).decode()
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(value)[: limit + 1]


def _path_step(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    if _IDENTIFIER.match(key):
        return f".{key}"
    return "." + orjson.dumps(key).decode()


class _Node:
    __slots__ = ("children", "key", "parent", "pending", "row", "size", "value")

    def __init__(self, parent: _Node | None, row: int, key: str | int | None, value: Any) -> None:
        self.parent = parent
        self.row = row
        self.key = key
        self.value = value
        self.children: list[_Node] = []
        self.pending: Iterator[tuple[str | int, Any]] | None = None
        self.size = len(value) if isinstance(value, dict | list | tuple) else 0

    @property
    def is_container(self) -> bool:
        return isinstance(self.value, dict | list | tuple)

    def more(self) -> bool:
        return self.is_container and len(self.children) < self.size

    def fetch(self, count: int) -> list[_Node]:
        if self.pending is None:
            items = self.value.items() if isinstance(self.value, dict) else enumerate(self.value)
            self.pending = iter(items)
        made: list[_Node] = []
        start = len(self.children)
        for key, value in self.pending:
            made.append(_Node(self, start + len(made), key, value))
            if len(made) >= count:
                break
        return made


class JsonTreeModel(QAbstractItemModel):
    """Key / Value columns over any JSON value; ``root_path`` prefixes the JMESPath of each node."""

    def __init__(
        self, parent: QObject | None = None, *, root_path: str = "payload", chunk: int = FETCH_CHUNK
    ) -> None:
        super().__init__(parent)
        self._chunk = chunk
        self._root_path = root_path
        self._root = _Node(None, 0, None, {})
        self._changing = False  # fetches asked for by our own change signals' receivers wait
        self.nodes_created = 0

    def set_document(self, value: Any) -> None:
        """Show ``value``; a scalar is one row, a container its first chunk of members."""
        self._changing = True
        self.beginResetModel()
        self.nodes_created = 0
        if isinstance(value, dict | list | tuple):
            self._root = _Node(None, 0, None, value)
            self._root.children = self._root.fetch(self._chunk)
            self.nodes_created = len(self._root.children)
        else:
            self._root = _Node(None, 0, None, [value])
            self._root.children = [_Node(self._root, 0, None, value)]
            self.nodes_created = 1
        try:
            self.endResetModel()
        finally:
            self._changing = False

    def _node(self, index: Index) -> _Node:
        if not index.isValid():
            return self._root
        node = index.internalPointer()
        assert isinstance(node, _Node)
        return node

    # -- Qt model ----------------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        node = self._node(parent)
        if parent.isValid() and parent.column() != 0:
            return QModelIndex()
        if not (0 <= row < len(node.children) and 0 <= column < 2):
            return QModelIndex()
        return self.createIndex(row, column, node.children[row])

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        node = self._node(index).parent
        if node is None or node is self._root:
            return QModelIndex()
        return self.createIndex(node.row, 0, node)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt override
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._node(parent).children)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt override
        return 2

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008 - Qt override
        if parent.isValid() and parent.column() != 0:
            return False
        node = self._node(parent)
        return bool(node.children) or node.size > 0

    def canFetchMore(self, parent: Index) -> bool:
        if self._changing or (parent.isValid() and parent.column() != 0):
            return False
        return self._node(parent).more()

    def fetchMore(self, parent: Index) -> None:
        if self._changing or (parent.isValid() and parent.column() != 0):
            return
        node = self._node(parent)
        if not node.more():
            return
        made = node.fetch(self._chunk)
        if not made:
            return
        first = len(node.children)
        self._changing = True
        try:
            self.beginInsertRows(parent, first, first + len(made) - 1)
            node.children.extend(made)
            self.nodes_created += len(made)
            self.endInsertRows()
        finally:
            self._changing = False

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < 2
        ):
            return ("Key", "Value")[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = self._node(index)
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                if node.key is None:
                    return "(value)"
                return f"[{node.key}]" if isinstance(node.key, int) else str(node.key)
            return self._value_text(node, VALUE_CHARS)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 0:
                return self.path_of(index)
            return f"{_kind(node.value)}: {self._value_text(node, TOOLTIP_CHARS)}"
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return _TYPE_COLORS.get(_kind(node.value))
        return None

    @staticmethod
    def _value_text(node: _Node, limit: int) -> str:
        if isinstance(node.value, dict):
            return f"{{{node.size} key{'s' if node.size != 1 else ''}}}"
        if isinstance(node.value, list | tuple):
            return f"[{node.size} item{'s' if node.size != 1 else ''}]"
        text = _scalar_text(node.value, limit)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    # -- for copy actions --------------------------------------------------------------------------
    def path_of(self, index: Index) -> str:
        """The JMESPath of a node, e.g. ``payload.items[3]."unit-price"``."""
        steps: list[str] = []
        node: _Node | None = self._node(index)
        while node is not None and node is not self._root:
            if node.key is not None:
                steps.append(_path_step(node.key))
            node = node.parent
        return self._root_path + "".join(reversed(steps))

    def value_of(self, index: Index) -> Any:
        return self._node(index).value

    def json_of(self, index: Index) -> str:
        """The node's value as pretty JSON (the full value, never cut)."""
        return json_codec.dumps(self.value_of(index), option=orjson.OPT_INDENT_2, default=str).decode()
