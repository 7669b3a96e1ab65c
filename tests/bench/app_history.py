"""Benchmark: start the desktop app over 1,000,000 captured events (issue: Desktop app, Performance).

Fills a capture with 1,000,000 events (``Capture.append``, 10,000 per transaction), then starts
the app in a child process (offscreen) and prints:
  start    time to a shown window with the latest events loaded, and RSS then (target < 400 MB)
  filters  time from a filter leaving the bar to the table refilled, for a model, a JMESPath
           expression and a text that matches one event in 10,000 (the worst case: a long scan)
  scroll   time to scroll the table to the top of its window and repaint
  loop     the largest gap of a 10 ms timer meanwhile
  memory   peak RSS of the child (target < 400 MB; never everything in memory)

Run: .venv/bin/python -m tests.bench.app_history [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event
from eventdesk.core.home import Home

MODELS = ("orders", "accounts")
BATCH = 10_000
RARE = 10_000  # one event in RARE carries the rare word
PAD = "x" * 120


def fill(home_dir: Path, count: int) -> float:
    """Capture ``count`` events of two models; return events/s."""
    home = Home.open(str(home_dir))
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    for model in MODELS:
        home.add_model(model, "couch", {"database": model})
    capture: Capture = home.capture
    start = time.monotonic()
    for first in range(0, count, BATCH):
        model = MODELS[(first // BATCH) % len(MODELS)]
        events = [
            Event(
                datasource="couch",
                model=model,
                op="created" if n % 4 else "updated",
                key=f"doc-{n % 100_000:06d}",
                rev=f"{n}-h",
                seq=f"{n}-s",
                payload={
                    "n": n,
                    "region": "Bangalore" if n % 2 else "Pune",
                    "note": "needle" if n % RARE == 0 else "hay",
                    "pad": PAD,
                },
            )
            for n in range(first, min(count, first + BATCH))
        ]
        capture.append(model, events, events[-1].seq)
    rate = count / (time.monotonic() - start)
    home.close()
    return rate


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the child: the app over the big capture -------------------------------------------------------
async def measure(home_dir: str, started: float) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    from eventdesk.core.filters import EventFilter
    from eventdesk.core.gc_policy import tune_for_streaming
    from eventdesk.ui.main_window import MainWindow
    from tests.bench.app_feed import LoopMonitor, until

    out: dict[str, Any] = {"imported": time.monotonic() - started}
    monitor = LoopMonitor()
    monitor.start()
    t0 = time.monotonic()
    home = Home.open(home_dir)
    window = MainWindow(home)
    window.show()
    tune_for_streaming()
    out["constructed"] = time.monotonic() - t0
    model = window.table.model
    await until(lambda: not model.loading)
    QApplication.processEvents()  # the first paint with the rows
    out["loaded"] = time.monotonic() - t0
    out["loaded_since_launch"] = time.monotonic() - started
    out["rows"] = model.rowCount()
    out["newest_shown"] = model.event_at(model.rowCount() - 1).pos
    out["newest_captured"] = home.capture.last_pos()
    out["rss_started"] = rss_mb()
    out["gap_start"] = max(monitor.gaps, default=0.0)

    async def timed_filter(apply: Any) -> tuple[float, int, float]:
        monitor.gaps.clear()
        start = time.monotonic()
        apply()
        await until(lambda: not model.loading)
        QApplication.processEvents()
        return time.monotonic() - start, model.rowCount(), max(monitor.gaps, default=0.0)

    bar = window.filter_bar
    out["filter_model"] = await timed_filter(lambda: bar.set_model("accounts"))
    out["filter_jmespath"] = await timed_filter(lambda: bar.set_expression("payload.region == 'Pune'"))
    bar.set_model(None)
    bar.set_expression("")
    await until(lambda: not model.loading)
    out["filter_rare_text"] = await timed_filter(
        lambda: window._on_filter(EventFilter(text="needle"))  # what the bar emits after its debounce
    )
    bar.set_expression("")
    window._on_filter(EventFilter())
    await until(lambda: not model.loading)

    view = window.table.table
    start = time.monotonic()
    view.scrollToTop()
    view.viewport().repaint()
    out["scroll_top"] = time.monotonic() - start
    out["top_row_visible"] = view.rowAt(0)
    start = time.monotonic()
    view.scrollToBottom()
    view.viewport().repaint()
    out["scroll_bottom"] = time.monotonic() - start
    out["rss_end"] = rss_mb()
    out["rss_peak"] = rss_mb("VmHWM")
    monitor.stop()
    await window.shutdown()
    window.close()
    home.close()
    return out


def child(home_dir: str, started: float) -> None:
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert app is not None
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        result = runner.run(measure(home_dir, started))
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.started)
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        rate = fill(home, args.events)
        size = sum(p.stat().st_size for p in home.rglob("capture*")) / 1e6
        print(
            f"fill     {args.events:,} events captured at {rate:,.0f}/s ({size:,.0f} MB on disk)", flush=True
        )
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        started = time.monotonic()  # CLOCK_MONOTONIC is system-wide: the child reads the same clock
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.bench.app_history",
                "--child",
                str(home),
                "--started",
                str(started),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"child failed ({proc.returncode})")
    r = json.loads(lines[0].removeprefix("RESULT "))
    print(
        f"start    window shown with the latest {r['rows']:,} events in {r['loaded_since_launch']:.2f} s from "
        f"launch ({r['imported']:.2f} s interpreter and imports, {r['constructed'] * 1000:.0f} ms window, "
        f"{(r['loaded'] - r['constructed']) * 1000:.0f} ms history); newest shown #{r['newest_shown']:,} of "
        f"#{r['newest_captured']:,}; RSS {r['rss_started']:.0f} MB (target < 400; {r['rss_started'] / 400:.2f} x); "
        f"largest loop gap {r['gap_start']:.0f} ms",
        flush=True,
    )
    for name, label in (
        ("filter_model", "model = accounts"),
        ("filter_jmespath", "+ payload.region == 'Pune'"),
        ("filter_rare_text", "text 'needle' (1 in 10,000)"),
    ):
        secs, rows, gap = r[name]
        print(
            f"filter   {label:30s} table refilled in {secs * 1000:6.0f} ms, {rows:,} rows; "
            f"largest loop gap {gap:.0f} ms",
            flush=True,
        )
    print(
        f"scroll   to the top of the window {r['scroll_top'] * 1000:.1f} ms (row {r['top_row_visible']} at the "
        f"top), back to the bottom {r['scroll_bottom'] * 1000:.1f} ms",
        flush=True,
    )
    print(
        f"memory   RSS at the end {r['rss_end']:.0f} MB, peak {r['rss_peak']:.0f} MB "
        f"(target < 400; {r['rss_peak'] / 400:.2f} x)",
        flush=True,
    )


if __name__ == "__main__":
    main()
