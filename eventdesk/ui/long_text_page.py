"""A read-only page for texts of megabytes (the detail pane's Text and Diff): a notice line, an
optional button, and the text laid out a piece per turn of the event loop.

Qt lays out a line (a text block) whole, and a line of megabytes (one long string, a bytea's
base64) froze the window for seconds. A line longer than ``LONG_LINE`` is therefore shown as
pieces of at most that many characters, each but the last ending in ``CONTINUED``. Nothing is
cut off, and what is copied or read back (:meth:`LazyTextPage.shown`) is the text as given: the
marks and their line breaks are taken out again.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QMimeData, QTimer
from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from eventdesk.core.quantities import size_text

FILL_STEP = 200_000  # characters of a long text laid out per turn of the event loop
LONG_LINE = 10_000  # characters of a displayed line at most (Qt lays one out in ~4 ms)
CONTINUED = "\u21b5"  # "↵": the line goes on in the next one
_BREAK = CONTINUED + "\n"  # never in JSON or a diff of it: a line there ends before its newline
_LONG = re.compile(f"[^\n]{{{LONG_LINE + 1}}}")


def cut_long_lines(text: str) -> str:
    """``text`` with each line longer than LONG_LINE shown as pieces ending in CONTINUED."""
    if not _LONG.search(text):
        return text
    return "\n".join(
        _BREAK.join(line[i : i + LONG_LINE] for i in range(0, len(line), LONG_LINE))
        if len(line) > LONG_LINE
        else line
        for line in text.split("\n")
    )


def uncut(text: str) -> str:
    """What :func:`cut_long_lines` was given (its marks and their line breaks taken out)."""
    return text.replace(_BREAK, "")


class ExactCopyTextEdit(QPlainTextEdit):
    """Copies (and drags) the selection without the marks of lines cut for display."""

    def createMimeDataFromSelection(self) -> QMimeData:
        mime = QMimeData()
        mime.setText(uncut(self.textCursor().selection().toPlainText()))
        return mime


class LazyTextPage(QWidget):
    """A notice line, an optional "render" button and a read-only monospace text."""

    def __init__(self, button_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.notice = QLabel(self)
        self.notice.setWordWrap(True)
        self.button = QPushButton(button_text, self)
        self.text = ExactCopyTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setUndoRedoEnabled(False)  # read-only: an undo stack would copy every piece
        self._fill_text = ""
        self._fill_pos = 0
        self._fill_notice = ""
        self._fill_timer = QTimer(self)
        self._fill_timer.setInterval(0)
        self._fill_timer.timeout.connect(self._fill_step)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.notice, 1)
        row.addWidget(self.button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.text, 1)
        self.show_notice("")

    def show_notice(self, notice: str, *, button: bool = False) -> None:
        self.notice.setText(notice)
        self.notice.setVisible(bool(notice))
        self.button.setVisible(button)

    @property
    def filling(self) -> bool:
        """True while a long text is still going in, a piece per turn of the event loop."""
        return self._fill_timer.isActive()

    def shown(self) -> str:
        """The text shown, as it was given (lines cut for display joined again)."""
        return uncut(self.text.toPlainText())

    def set_text(self, text: str, notice: str = "") -> None:
        """Show ``text`` (and then ``notice``). A text longer than FILL_STEP, or with a line
        longer than LONG_LINE, goes in by pieces, one per turn of the event loop, so the window
        keeps responding while megabytes are laid out; the notice shows how far it got meanwhile."""
        self._fill_timer.stop()
        self._fill_text, self._fill_pos = "", 0
        if len(text) <= FILL_STEP and not _LONG.search(text):
            self.text.setPlainText(text)
            self.show_notice(notice)
            return
        self.text.clear()
        self._fill_text, self._fill_notice = text, notice
        self._fill_step()
        self._fill_timer.start()

    def _fill_step(self) -> None:
        """One piece: up to the first line end after FILL_STEP characters, or FILL_STEP
        characters of a line far longer than that (the next piece goes on with the line)."""
        text, pos = self._fill_text, self._fill_pos
        end = text.find("\n", pos + FILL_STEP)
        end = len(text) if end < 0 else end
        inside = end - pos > 2 * FILL_STEP  # a line that long: cut it here
        if inside:
            end = pos + FILL_STEP
        piece = cut_long_lines(text[pos:end]) + (_BREAK if inside else "")
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(piece)
        self._fill_pos = end
        if end < len(text):
            self.show_notice(f"Showing the text… {end * 100 // len(text)} % of {size_text(len(text))}")
            return
        self._fill_timer.stop()
        self._fill_text = ""
        self.show_notice(self._fill_notice)
