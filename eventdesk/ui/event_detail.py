"""The detail pane of one event: envelope header, lazy JSON tree, full text and a diff with the previous revision.

Large payloads are never cut: the text and the diff of a payload over ``LARGE_PAYLOAD`` bytes are
rendered only when asked for (by pieces, long lines shown in parts: ui/long_text_page.py), and the
tree creates rows only when they are expanded. Such a diff
is computed on a worker thread (the window keeps answering; another event drops it); a small one
at once, so the tab never flickers.
"""

from __future__ import annotations

import asyncio
import difflib
import html
from typing import Any

import orjson
from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QSyntaxHighlighter,
    QTextCharFormat,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from eventdesk.core import json_codec
from eventdesk.core.capture import CapturedEvent
from eventdesk.core.quantities import size_text
from eventdesk.ui.async_tasks import TaskSlots
from eventdesk.ui.event_rows import OP_COLORS
from eventdesk.ui.json_tree import JsonTreeModel
from eventdesk.ui.long_text_page import CONTINUED, LazyTextPage

LARGE_PAYLOAD = 1_000_000
FIRST_REVISION = "First revision seen of this key."
NO_CHANGE = "The payload did not change since the previous revision."
DIFF_ON_REQUEST = "The payloads are large; their diff is computed on request."
COMPUTING_DIFF = "Computing the diff…"
TAB_TREE, TAB_TEXT, TAB_DIFF = range(3)


def pretty_json(value: Any, *, sort_keys: bool = False) -> str:
    option = orjson.OPT_INDENT_2 | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return json_codec.dumps(value, option=option, default=str).decode()


def unified_payload_diff(previous: CapturedEvent, current: CapturedEvent) -> str:
    """A unified diff of the two payloads as pretty JSON with sorted keys ("" when equal)."""
    before = pretty_json(previous.envelope.get("payload"), sort_keys=True).splitlines()
    after = pretty_json(current.envelope.get("payload"), sort_keys=True).splitlines()
    lines = difflib.unified_diff(
        before,
        after,
        fromfile=f"rev {previous.envelope.get('rev')} (#{previous.pos})",
        tofile=f"rev {current.envelope.get('rev')} (#{current.pos})",
        lineterm="",
    )
    return "\n".join(lines)


class DiffHighlighter(QSyntaxHighlighter):
    """Colours unified-diff lines: additions green, removals red, hunk headers blue."""

    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self._added = self._format("#1b5e20", "#c8e6c9")
        self._removed = self._format("#b71c1c", "#ffcdd2")
        self._hunk = self._format("#0d47a1", None)
        self._file = self._format(None, None, bold=True)
        self._formats = (self._file, self._added, self._removed, self._hunk)

    @staticmethod
    def _format(fg: str | None, bg: str | None, *, bold: bool = False) -> QTextCharFormat:
        fmt = QTextCharFormat()
        if fg:
            fmt.setForeground(QColor(fg))
        if bg:
            fmt.setBackground(QColor(bg))
        if bold:
            fmt.setFontWeight(QFont.Weight.Bold)
        return fmt

    def highlightBlock(self, text: str) -> None:
        # A line cut for display (long_text_page.py) goes on in the next block: the block state
        # carries its format's index there. (An if-chain: this runs once per line of a diff.)
        kind = self.previousBlockState()
        if kind < 0:
            if text.startswith(("+++", "---")):
                kind = 0
            elif text.startswith("+"):
                kind = 1
            elif text.startswith("-"):
                kind = 2
            elif text.startswith("@@"):
                kind = 3
            else:
                return
        self.setFormat(0, len(text), self._formats[kind])
        if text.endswith(CONTINUED):
            self.setCurrentBlockState(kind)


class EventDetail(QWidget):
    """Shows one event. ``show_event(event, previous)``; ``previous`` is the key's earlier revision."""

    filterRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Event detail")
        self.setAccessibleDescription("The selected event: its document, what changed, its envelope")
        self._event: CapturedEvent | None = None
        self._previous: CapturedEvent | None = None
        self._size = 0
        self._text_done = False
        self._diff_done = False
        self._diff_large: bool | None = None  # either payload over LARGE_PAYLOAD (known once asked)
        self.tasks = TaskSlots(on_error=self._diff_failed)

        self.header = QLabel(self)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.header.setWordWrap(True)
        self.copy_payload_button = QPushButton("Copy payload", self)
        self.copy_payload_button.setToolTip("Copy the payload as JSON")
        self.copy_payload_button.clicked.connect(self.copy_payload)
        self.copy_key_button = QPushButton("Copy key", self)
        self.copy_key_button.clicked.connect(self.copy_key)

        self.tree_model = JsonTreeModel(self)
        self.tree = QTreeView(self)
        self.tree.setModel(self.tree_model)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.header().setStretchLastSection(True)
        self.tree.setColumnWidth(0, 220)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._tree_menu)

        self.text_page = LazyTextPage("Show full text", self)
        self.text_page.button.clicked.connect(self._render_text)
        self.diff_page = LazyTextPage("Show diff", self)
        self.diff_page.button.clicked.connect(self._diff_button)
        self._highlighter = DiffHighlighter(self.diff_page.text.document())

        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.tree, "Tree")
        self.tabs.addTab(self.text_page, "Text")
        self.tabs.addTab(self.diff_page, "Diff")
        self.tabs.currentChanged.connect(self._render_current)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.header, 1)
        top.addWidget(self.copy_key_button)
        top.addWidget(self.copy_payload_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        self.show_event(None, None)

    # -- public ------------------------------------------------------------------------------------
    @property
    def current_event(self) -> CapturedEvent | None:
        return self._event

    def show_event(self, event: CapturedEvent | None, previous: CapturedEvent | None = None) -> None:
        """Show ``event`` (None: nothing); cheap for any payload size, the heavy parts wait for a click."""
        self.tasks.cancel("diff")  # a diff still computing is the previous event's: dropped
        self._event, self._previous = event, previous
        self._text_done = self._diff_done = False
        self._diff_large = None
        self.diff_page.button.setText("Show diff")
        has_event = event is not None
        self.copy_payload_button.setEnabled(has_event)
        self.copy_key_button.setEnabled(has_event)
        self.text_page.set_text("")
        self.diff_page.set_text("")
        if event is None:
            self._size = 0
            self.header.setText("<i>No event selected</i>")
            self.tree_model.set_document({})
            self.text_page.show_notice("")
            self.diff_page.show_notice("")
            return
        payload = event.envelope.get("payload")
        self._size = len(json_codec.dumps(payload, default=str))
        self.header.setText(self._header_html(event))
        self.tree_model.set_document(payload)
        if self.tree_model.rowCount() == 1:
            self.tree.expandToDepth(0)
        self._render_current(self.tabs.currentIndex())

    @property
    def large(self) -> bool:
        return self._size > LARGE_PAYLOAD

    def copy_payload(self) -> None:
        if self._event is not None:
            QGuiApplication.clipboard().setText(pretty_json(self._event.envelope.get("payload")))

    def copy_key(self) -> None:
        if self._event is not None:
            QGuiApplication.clipboard().setText(str(self._event.envelope.get("key", "")))

    # -- rendering ---------------------------------------------------------------------------------
    @staticmethod
    def _header_html(event: CapturedEvent) -> str:
        env = event.envelope
        op = str(env.get("op", ""))
        esc = html.escape

        def short(label: str, value: str, limit: int = 24, bold: bool = False) -> str:
            """``label value`` cut at ``limit`` characters (all of it in the tooltip): a long
            key, rev or seq must not make the header, and so the pane, taller or wider."""
            shown = value if len(value) <= limit else value[: limit - 1] + "…"
            inner = f"<b>{esc(shown)}</b>" if bold else esc(shown)
            return f"<span title='{esc(value, quote=True)}'>{label} {inner}</span>"

        color = OP_COLORS.get(op, "#616161")
        parts = [
            f"<b>{esc(str(env.get('model', '')))}</b>",
            f"<b style='color:{color}'>{esc(op)}</b>",
            short("key", str(env.get("key", "")), 40, bold=True),
            short("rev", str(env.get("rev"))) if env.get("rev") is not None else "",  # webhooks have none
            short("seq", str(env.get("seq"))) if env.get("seq") is not None else "",  # core NATS has none
            esc(str(env.get("received_at", ""))),
            esc(str(env.get("datasource", ""))),
        ]
        return " · ".join(p for p in parts if p)

    def _render_current(self, tab: int) -> None:
        if self._event is None:
            return
        if tab == TAB_TEXT and not self._text_done:
            if self.large:
                self.text_page.show_notice(
                    f"The payload is {size_text(self._size)}; its text is shown on request.", button=True
                )
            else:
                self._render_text()
        elif tab == TAB_DIFF and not self._diff_done:
            if self._previous is None:
                self.diff_page.show_notice(FIRST_REVISION)
                self._diff_done = True
            elif self.diff_large:
                self.diff_page.show_notice(DIFF_ON_REQUEST, button=True)
            else:
                self._render_diff()

    @property
    def diff_large(self) -> bool:
        """Whether the shown event's or its previous revision's payload is over LARGE_PAYLOAD."""
        if self._diff_large is None:
            previous = self._previous.envelope.get("payload") if self._previous is not None else None
            self._diff_large = self.large or len(json_codec.dumps(previous, default=str)) > LARGE_PAYLOAD
        return self._diff_large

    @property
    def diff_computing(self) -> bool:
        """True while a large diff is being computed off the GUI thread."""
        return self.tasks.running("diff")

    def _render_text(self) -> None:
        if self._event is None:
            return
        self._text_done = True
        notice = f"{size_text(self._size)}" if self.large else ""
        self.text_page.show_notice("")
        self.text_page.set_text(pretty_json(self._event.envelope.get("payload")), notice)

    def _diff_button(self) -> None:
        """The diff page's button: "Show diff", or "Cancel" while the diff is computed."""
        if not self.diff_computing:
            self._render_diff()
            return
        self.tasks.cancel("diff")
        self._diff_done = False
        self.diff_page.button.setText("Show diff")
        self.diff_page.show_notice(DIFF_ON_REQUEST, button=True)

    def _render_diff(self) -> None:
        """Show the diff: a small one at once; a large one computed on a worker thread meanwhile
        (without a running event loop, at once as well)."""
        if self._event is None or self._previous is None:
            return
        self._diff_done = True
        if self.diff_large:
            try:
                self.tasks.start("diff", self._diff_off_thread(self._previous, self._event))
            except RuntimeError:
                pass  # no running event loop (a script, a test without one): at once, below
            else:
                self.diff_page.button.setText("Cancel")
                self.diff_page.show_notice(COMPUTING_DIFF, button=True)
                return
        self._show_diff(unified_payload_diff(self._previous, self._event))

    async def _diff_off_thread(self, previous: CapturedEvent, current: CapturedEvent) -> None:
        diff = await asyncio.to_thread(unified_payload_diff, previous, current)
        if self._event is not current or self._previous is not previous:
            return  # another event is shown by now (show_event cancels; this is for certain)
        self._show_diff(diff)

    def _show_diff(self, diff: str) -> None:
        self.diff_page.button.setText("Show diff")
        self.diff_page.show_notice("")
        self.diff_page.set_text(diff, "" if diff else NO_CHANGE)

    def _diff_failed(self, _slot: str, exc: BaseException) -> None:
        self._diff_done = False
        self.diff_page.button.setText("Show diff")
        self.diff_page.show_notice(f"The diff could not be computed: {exc}", button=True)

    def text_shown(self) -> str:
        return self.text_page.shown()

    def diff_shown(self) -> str:
        return self.diff_page.shown()

    # -- tree context menu -------------------------------------------------------------------------
    def _tree_menu(self, point: QPoint) -> None:
        index = self.tree.indexAt(point)
        if not index.isValid():
            return
        index = index.siblingAtColumn(0)
        menu = QMenu(self)
        menu.addAction("Copy path", lambda: self._copy(self.tree_model.path_of(index)))
        menu.addAction("Copy value", lambda: self._copy(self.tree_model.json_of(index)))
        value = self.tree_model.value_of(index)
        if not isinstance(value, dict | list):
            menu.addAction(
                "Filter on this value", lambda: self.filterRequested.emit(self.filter_expression(index))
            )
        menu.popup(self.tree.viewport().mapToGlobal(point))

    def filter_expression(self, index: QModelIndex) -> str:
        """``<path> == `<json value>``` for a scalar node."""
        value = json_codec.dumps(self.tree_model.value_of(index), default=str).decode().replace("`", "\\`")
        return f"{self.tree_model.path_of(index)} == `{value}`"

    @staticmethod
    def _copy(text: str) -> None:
        QGuiApplication.clipboard().setText(text)
