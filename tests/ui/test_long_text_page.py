"""The detail pane's text pages with lines of megabytes: shown as pieces Qt lays out quickly,
nothing cut off, copied and read back exactly, a diff line's colour kept on its pieces."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor

from eventdesk.ui.event_detail import DiffHighlighter
from eventdesk.ui.long_text_page import CONTINUED, LONG_LINE, LazyTextPage, cut_long_lines, uncut

pytestmark = pytest.mark.gui


@given(
    st.lists(
        st.one_of(
            st.text(st.characters(exclude_characters="\n\u21b5"), max_size=50), st.integers(0, 3 * LONG_LINE)
        ),
        max_size=8,
    )
)
def test_cut_lines_are_short_and_join_back_exactly(parts: list[Any]) -> None:
    # Lines of any text, and lines of thousands of characters (an int n stands for "y" * n).
    text = "\n".join("y" * p if isinstance(p, int) else p for p in parts)
    shown = cut_long_lines(text)
    assert uncut(shown) == text
    assert all(len(line) <= LONG_LINE + 1 for line in shown.split("\n"))
    assert (shown == text) == all(len(line) <= LONG_LINE for line in text.split("\n"))


@pytest.fixture
def page(qtbot: Any) -> LazyTextPage:
    widget = LazyTextPage("Show")
    qtbot.addWidget(widget)
    widget.resize(600, 400)
    widget.show()
    return widget


def test_a_line_of_megabytes_goes_in_by_pieces_and_reads_and_copies_back_whole(
    page: LazyTextPage, qtbot: Any
) -> None:
    text = '{\n  "blob": "' + "QUJD" * 500_000 + '"\n}'  # a 2 MB base64 line, as a bytea gives
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    start = time.perf_counter()
    page.set_text(text, "done")
    assert page.filling  # not laid out in the call
    qtbot.waitUntil(lambda: not page.filling, timeout=30_000)
    timer.stop()
    assert len([t for t in ticks if t > start]) >= 2  # the loop went on meanwhile
    assert page.shown() == text and page.notice.text() == "done"
    block, longest, blocks = page.text.document().firstBlock(), 0, 0
    while block.isValid():
        longest, blocks = max(longest, len(block.text())), blocks + 1
        block = block.next()
    assert longest <= LONG_LINE + 1 and blocks > 2_000_000 // LONG_LINE
    page.text.selectAll()
    assert page.text.createMimeDataFromSelection().text() == text


def test_a_cut_diff_line_keeps_its_colour_on_every_piece(page: LazyTextPage, qtbot: Any) -> None:
    highlighter = DiffHighlighter(page.text.document())
    diff = "--- a\n+++ b\n@@ -1 +1 @@\n-short\n+" + "z" * (3 * LONG_LINE - 1) + "\n context"
    page.set_text(diff)
    qtbot.waitUntil(lambda: not page.filling, timeout=10_000)
    highlighter.rehighlight()
    backgrounds = []
    block = page.text.document().findBlockByNumber(4)  # the "+zzz..." line's first piece
    while block.isValid():
        ranges = block.layout().formats()
        backgrounds.append(ranges[0].format.background().color() if ranges else None)
        block = block.next()
    added = QColor("#c8e6c9")
    assert backgrounds[:3] == [added, added, added]  # the line's three pieces
    assert backgrounds[3] is None  # the context line after it
    assert page.text.document().findBlockByNumber(4).text().endswith(CONTINUED)
