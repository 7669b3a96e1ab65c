"""Benchmark: the desktop app over 1,000,000 captured events (issues: Desktop app, Performance, 16).

Fills a capture with 1,000,000 events (tests/ui/big_capture.py: SQLite makes the rows), then
starts the app in a child process (offscreen) and prints:
  start    time to a shown window with the whole capture counted, and RSS then (target < 400 MB)
  filters  time from a filter leaving the bar to the exact count over the whole capture, for a
           model, a JMESPath expression and a text that matches one event in 10,000
  jumps    scrolling anywhere in the 1,000,000 rows (Go to row: read its page, repaint), per jump
           (target < 50 ms) with the GUI thread's time on a CPU and waiting for one, beside a
           plain SELECT of the same page on a connection of its own; and Go to time (a binary
           search over positions)
  loop     the largest gap of a 10 ms timer meanwhile (text and JMESPath counts run in a worker
           process; the JMESPath count once more in-process, the old way, as the reference)
  memory   peak RSS of the child (target < 400 MB; never everything in memory)
  load     the load average, and how many busy processes ran beside (--cpu-hogs)

Run: .venv/bin/python -m tests.bench.app_history [--events 1000000] [--cpu-hogs N] [--jumps-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from eventdesk.core import json_codec
from eventdesk.core.home import Home
from tests.bench.private_settings import private_settings
from tests.ui.big_capture import MODELS, fill_capture, received_at

JUMPS = 100


def fill(home_dir: Path, count: int) -> float:
    """Capture ``count`` events of two models; return events/s."""
    home = Home.open(str(home_dir))
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    for model in MODELS:
        home.add_model(model, "couch", {"database": model})
    path = home.capture.path
    home.close()
    start = time.monotonic()
    fill_capture(path, count)
    return count / (time.monotonic() - start)


def rss_mb(field: str = "VmRSS", pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the child: the app over the big capture -------------------------------------------------------
async def jumps(window: Any, path: Path) -> tuple[list[tuple[float, float, float]], list[float]]:
    """Per jump to a random row (page read + repaint): seconds, and of them the GUI thread's ms
    on a CPU and waiting for one; and seconds per plain SELECT of that page."""
    import random
    import sqlite3

    from tests.bench.app_feed import LoopMonitor

    table = window.table
    rows = table.model.rowCount()
    rng = random.Random(16)
    targets = [rng.randrange(rows) for _ in range(JUMPS)]
    times: list[tuple[float, float, float]] = []
    for row in targets:
        await asyncio.sleep(0.05)  # the loop's turn: the detail pane shows the last jump's event
        sched = LoopMonitor._schedstat()
        start = time.monotonic()
        table.go_to_row(row)
        table.table.viewport().repaint()
        wall = time.monotonic() - start
        after = LoopMonitor._schedstat()
        times.append((wall, after[0] - sched[0], after[1] - sched[1]))
        chosen = table.selected()
        if chosen is None or chosen.pos != table.model.position_at(row):
            raise SystemExit(f"the jump to row {row} did not land there")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    selects: list[float] = []
    try:
        for row in targets:
            first = row - row % 200
            start = time.monotonic()
            found = db.execute(
                "SELECT pos, envelope FROM events WHERE pos > ? ORDER BY pos LIMIT 200", (first,)
            ).fetchall()
            [json_codec.loads(e) for _, e in found]
            selects.append(time.monotonic() - start)
    finally:
        db.close()
    return times, selects


async def measure(home_dir: str, started: float, jumps_only: bool = False) -> dict[str, Any]:
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
    out["counted"] = model.total
    out["newest_shown"] = model.event_at(model.rowCount() - 1).pos
    out["newest_captured"] = home.capture.last_pos()
    out["rss_started"] = rss_mb()
    out["gap_start"] = max(monitor.gaps, default=0.0)

    async def timed_filter(apply: Any) -> tuple[float, int, float, float, float, float]:
        """Seconds to the exact count, rows, the largest loop gap (ms) with what of it the GUI
        thread waited for a CPU and ran on one, and the largest gap less its CPU wait (ms)."""
        monitor.gaps.clear()
        monitor.own.clear()
        start = time.monotonic()
        apply()
        await until(lambda: not model.loading)
        QApplication.processEvents()
        gap, waited, on_cpu = monitor.worst if monitor.gaps else (0.0, 0.0, 0.0)
        return time.monotonic() - start, model.rowCount(), gap, waited, on_cpu, max(monitor.own, default=0.0)

    bar = window.filter_bar
    if jumps_only:
        out["jumps"], out["selects"] = await jumps(window, home.capture.path)
        out["rss_end"], out["rss_peak"], out["rss_worker"] = rss_mb(), rss_mb("VmHWM"), float("nan")
        monitor.stop()
        await window.shutdown()
        window.close()
        home.close()
        return out
    out["filter_model"] = await timed_filter(lambda: bar.set_model("accounts"))
    out["filter_jmespath"] = await timed_filter(lambda: bar.set_expression("payload.region == 'Pune'"))
    worker = model.scan_worker_pid
    out["rss_worker"] = rss_mb("VmHWM", worker) if worker else float("nan")
    model.scan_in_process(True)  # the old way, in the same run: the scan on a thread of this process
    out["filter_jmespath_in_process"] = await timed_filter(
        lambda: bar.set_expression("payload.region == 'Bangalore'")
    )
    model.scan_in_process(False)
    out["filter_jmespath_again"] = await timed_filter(lambda: bar.set_expression("payload.region == 'Pune'"))
    bar.set_expression("")
    await until(lambda: not model.loading)
    bar.set_model(None)
    await until(lambda: not model.loading)
    out["filter_rare_text"] = await timed_filter(
        lambda: window._on_filter(EventFilter(text="needle"))  # what the bar emits after its debounce
    )
    bar.set_expression("")
    window._on_filter(EventFilter())
    await until(lambda: not model.loading)

    out["jumps"], out["selects"] = await jumps(window, home.capture.path)
    start = time.monotonic()
    row = window.table.go_to_time(received_at(654_321))
    window.table.table.viewport().repaint()
    out["go_to_time"] = (time.monotonic() - start, row)
    out["rss_end"] = rss_mb()
    out["rss_peak"] = rss_mb("VmHWM")
    monitor.stop()
    await window.shutdown()
    window.close()
    home.close()
    return out


def child(home_dir: str, started: float, jumps_only: bool) -> None:
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert app is not None
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        result = runner.run(measure(home_dir, started, jumps_only))
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--cpu-hogs",
        type=int,
        default=0,
        metavar="N",
        help="N busy processes beside the app while it runs (a loaded CI machine)",
    )
    parser.add_argument(
        "--jumps-only", action="store_true", help="measure only the start and the jumps (a minute less)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.started, args.jumps_only)
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        rate = fill(home, args.events)
        size = sum(p.stat().st_size for p in home.rglob("capture*")) / 1e6
        print(
            f"fill     {args.events:,} events captured at {rate:,.0f}/s ({size:,.0f} MB on disk)", flush=True
        )
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.cpu_hogs)]
        load = os.getloadavg()[0]
        started = time.monotonic()  # CLOCK_MONOTONIC is system-wide: the child reads the same clock
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.app_history",
                    "--child",
                    str(home),
                    "--started",
                    str(started),
                    *(["--jumps-only"] if args.jumps_only else []),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"child failed ({proc.returncode})")
    r = json.loads(lines[0].removeprefix("RESULT "))
    print(
        f"load     {args.cpu_hogs} CPU hogs beside the app; load average {load:.1f} at its start, "
        f"{os.getloadavg()[0]:.1f} at its end ({os.cpu_count()} CPUs)",
        flush=True,
    )
    print(
        f"start    window shown with all {r['rows']:,} events counted in {r['loaded_since_launch']:.2f} s from "
        f"launch ({r['imported']:.2f} s interpreter and imports, {r['constructed'] * 1000:.0f} ms window, "
        f"{(r['loaded'] - r['constructed']) * 1000:.0f} ms history); newest shown #{r['newest_shown']:,} of "
        f"#{r['newest_captured']:,}; RSS {r['rss_started']:.0f} MB (target < 400; {r['rss_started'] / 400:.2f} x); "
        f"largest loop gap {r['gap_start']:.0f} ms",
        flush=True,
    )
    for name, label in (
        ("filter_model", "model = accounts"),
        ("filter_jmespath", "+ payload.region == 'Pune'"),
        ("filter_jmespath_in_process", "+ ... 'Bangalore' (in-process)"),
        ("filter_jmespath_again", "+ ... 'Pune' (worker again)"),
        ("filter_rare_text", "text 'needle' (1 in 10,000)"),
    ):
        if name not in r:
            continue
        secs, rows, gap, waited, on_cpu, own = r[name]
        print(
            f"filter   {label:30s} table refilled in {secs * 1000:6.0f} ms, {rows:,} rows; "
            f"largest loop gap {gap:.0f} ms ({waited:.0f} waiting for a CPU, {on_cpu:.0f} on one; "
            f"largest gap less CPU wait {own:.0f} ms)",
            flush=True,
        )
    jumps_ms = sorted(t[0] * 1000 for t in r["jumps"])
    on_cpu = sorted(t[1] for t in r["jumps"])
    own = sorted(t[0] * 1000 - t[2] for t in r["jumps"])  # each jump less its wait for a CPU
    worst = max(r["jumps"], key=lambda t: t[0])
    selects_ms = sorted(t * 1000 for t in r["selects"])
    print(
        f"jumps    {len(jumps_ms)} jumps anywhere in {r['rows']:,} rows (page read + repaint): median "
        f"{statistics.median(jumps_ms):.1f} ms, p90 {jumps_ms[len(jumps_ms) * 9 // 10]:.1f}, worst "
        f"{jumps_ms[-1]:.1f} ms (target < 50; {jumps_ms[-1] / 50:.2f} x; of it {worst[2]:.0f} ms waiting "
        f"for a CPU); the GUI thread on a CPU per jump: median {statistics.median(on_cpu):.1f} ms, worst "
        f"{on_cpu[-1]:.1f}; jumps less their CPU wait: worst {own[-1]:.1f} ms; a plain SELECT of the "
        f"same page + JSON: median {statistics.median(selects_ms):.1f} ms, worst {selects_ms[-1]:.1f} ms",
        flush=True,
    )
    if "go_to_time" in r:
        secs, row = r["go_to_time"]
        print(f"goto     Go to time (binary search + repaint) {secs * 1000:.1f} ms, row {row:,}", flush=True)
    print(
        f"memory   RSS at the end {r['rss_end']:.0f} MB, peak {r['rss_peak']:.0f} MB "
        f"(target < 400; {r['rss_peak'] / 400:.2f} x); the scan's worker process peak {r['rss_worker']:.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    with private_settings():  # the window's saved layout: not the user's settings
        main()
