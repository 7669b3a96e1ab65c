"""Benchmark: one 5 MB document in the detail pane (issue: Desktop app, Performance).

Captures a small first revision and a 5 MB second revision of the same key, in two shapes (an
array of 30,000 objects; one 5 MB string), starts the main window (offscreen) and prints the GUI
thread's time for:
  select   selecting the row until the pane shows it (includes the previous-revision lookup)
  show     ``EventDetail.show_event`` itself (target <= 200 ms)
  tabs     switching to Text, to Diff and back to Tree (target <= 200 ms each; heavy parts wait)
  expand   expanding the top node of the JSON tree (lazy: rows are fetched in chunks)
  on click "Show full text" and "Show diff", which the user asks for (no target; reported): the
           click's own time, the time until the whole text is in (a large diff is computed on a
           worker thread first; the text goes in by pieces) and the largest loop gap meanwhile
and the size notice the pane shows.

Run: .venv/bin/python -m tests.bench.app_detail
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import orjson

from eventdesk.core.envelope import Event
from eventdesk.core.home import Home
from tests.bench.private_settings import private_settings

TARGET_BYTES = 5_000_000


def big_documents() -> dict[str, tuple[Any, Any]]:
    """(previous, current) payloads of about 5 MB each, by shape."""
    item: dict[str, Any] = {
        "sku": "SKU-000000",
        "qty": 1,
        "price": 12.5,
        "tags": ["a", "b"],
        "note": "x" * 100,
    }
    n = TARGET_BYTES // len(orjson.dumps(item)) + 1
    items = [dict(item, sku=f"SKU-{i:06d}", qty=i % 7) for i in range(n)]
    changed = [dict(it, qty=it["qty"] + 1) if i % 1000 == 0 else it for i, it in enumerate(items)]
    return {
        "array of objects": ({"_id": "big", "items": items[:10]}, {"_id": "big", "items": changed}),
        "one long string": ({"_id": "long", "text": "short"}, {"_id": "long", "text": "y" * TARGET_BYTES}),
    }


def ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def measure(home: Home, shape: str) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    from eventdesk.core.gc_policy import tune_for_streaming
    from eventdesk.ui.event_detail import TAB_DIFF, TAB_TEXT, TAB_TREE
    from eventdesk.ui.main_window import MainWindow
    from tests.bench.app_feed import LoopMonitor, until

    window = MainWindow(home)
    # paint() below processes Qt events inside this task to time a paint; the window's 1 Hz
    # status refresh is a task too, and qasync refuses to step one task inside another: the
    # ticks stop for the measurement (they read the capture, not the detail pane).
    window._tick.stop()
    window.show()
    tune_for_streaming()
    table, detail = window.table, window.detail
    window.main_split.setSizes([200, 300, 300])  # the offscreen screen is 800 px wide
    QApplication.processEvents()
    await until(lambda: detail.tree.isVisible() and detail.tree.viewport().height() > 50)  # laid out
    await until(lambda: not table.model.loading)
    QApplication.processEvents()
    out: dict[str, Any] = {}

    def paint() -> None:
        QApplication.processEvents()
        detail.repaint()

    monitor = LoopMonitor()
    monitor.start()
    detail.tabs.setCurrentIndex(TAB_TREE)
    last = table.model.rowCount() - 1
    start = time.perf_counter()
    table.table.selectRow(last)
    shown = table.model.event_at(last).pos
    await until(lambda: detail.current_event is not None and detail.current_event.pos == shown, 0)
    paint()
    out["select"] = ms(start)
    out["select_gap"] = max(monitor.gaps, default=0.0)
    monitor.stop()
    event, previous = detail.current_event, detail._previous

    start = time.perf_counter()
    detail.show_event(event, previous)
    out["show_event"] = ms(start)
    start = time.perf_counter()
    paint()
    out["show_paint"] = ms(start)
    for name, tab in (("tab_text", TAB_TEXT), ("tab_diff", TAB_DIFF), ("tab_tree", TAB_TREE)):
        start = time.perf_counter()
        detail.tabs.setCurrentIndex(tab)
        paint()
        out[name] = ms(start)
    out["notice_text"] = detail.text_page.notice.text()
    out["notice_diff"] = detail.diff_page.notice.text()
    start = time.perf_counter()
    detail.tree.expand(detail.tree_model.index(detail.tree_model.rowCount() - 1, 0))
    paint()
    out["expand"] = ms(start)
    out["tree_nodes"] = detail.tree_model.nodes_created

    async def on_request(page: Any, key: str) -> None:
        """Click the page's button: the GUI thread's time until the click is painted, then the
        time until the whole text is in and the largest loop gap meanwhile."""
        monitor = LoopMonitor()
        monitor.start()
        start = time.perf_counter()
        if not page.button.isHidden():
            page.button.click()
        await asyncio.sleep(0)  # a large diff's task takes its first step (qasync steps no task in paint())
        paint()
        out[key] = ms(start)
        await until(lambda: not page.filling and not detail.diff_computing, 0)
        out[key + "_done"] = ms(start)
        paint()
        ticks = len(monitor.gaps)
        await until(lambda: len(monitor.gaps) > ticks)  # a gap the last piece made is recorded too
        out[key + "_gap"] = max(monitor.gaps, default=0.0)
        monitor.stop()

    detail.tabs.setCurrentIndex(TAB_TEXT)
    assert not detail.text_page.button.isHidden()
    await on_request(detail.text_page, "full_text")
    out["text_chars"] = len(detail.text_shown())
    detail.tabs.setCurrentIndex(TAB_DIFF)
    await on_request(detail.diff_page, "full_diff")
    out["diff_lines"] = detail.diff_shown().count("\n")
    await window.shutdown()
    window.close()
    return out


def main() -> None:
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert app is not None
    for shape, (before, after) in big_documents().items():
        with tempfile.TemporaryDirectory() as tmp:
            home = Home.open(str(Path(tmp) / "home"))
            home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
            home.add_model("docs", "couch", {"database": "docs"})
            for rev, payload in (("1-a", before), ("2-b", after)):
                event = Event(
                    datasource="couch",
                    model="docs",
                    op="updated",
                    key=payload["_id"],
                    rev=rev,
                    seq=rev,
                    payload=payload,
                )
                home.capture.append("docs", [event], rev)
            size = len(event.to_json())
            with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
                r = runner.run(measure(home, shape))
            home.close()
        print(f"{shape}: envelope {size / 1e6:.1f} MB", flush=True)
        print(
            f"  select row -> shown {r['select']:.0f} ms (largest loop gap {r['select_gap']:.0f} ms); "
            f"show_event {r['show_event']:.0f} ms + paint {r['show_paint']:.0f} ms (target <= 200)",
            flush=True,
        )
        print(
            f"  tabs: Text {r['tab_text']:.0f} ms, Diff {r['tab_diff']:.0f} ms, Tree {r['tab_tree']:.0f} ms "
            f"(target <= 200 each); expand top node {r['expand']:.0f} ms ({r['tree_nodes']:,} tree rows made)",
            flush=True,
        )
        print(f"  notices: {r['notice_text']!r} / {r['notice_diff']!r}", flush=True)
        print(
            f"  on request: Show full text: click painted in {r['full_text']:.0f} ms, all "
            f"{r['text_chars']:,} chars in after {r['full_text_done']:.0f} ms, largest loop gap "
            f"{r['full_text_gap']:.0f} ms; Show diff: click painted in {r['full_diff']:.0f} ms, all "
            f"{r['diff_lines']:,} lines in after {r['full_diff_done']:.0f} ms, largest loop gap "
            f"{r['full_diff_gap']:.0f} ms",
            flush=True,
        )


if __name__ == "__main__":
    with private_settings():  # the window's saved layout: not the user's settings
        main()
