"""Benchmark of export: 1,000,000 captured events to JSON Lines and CSV, against the sqlite3 CLI.

Each export runs in a child process (`--child`), so its peak memory (ru_maxrss from wait4) is
the export's own. The reference is the `sqlite3` command-line tool dumping the same rows
(`select envelope from events`) to /dev/null, timed in the same run.

Targets (issue #5): JSON Lines at >= 0.5 x the sqlite3 dump rate; peak RSS <= 150 MB.

Run: .venv/bin/python -m tests.bench.export [--events N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 10_000
TARGET_RATIO = 0.5
TARGET_MB = 150


def fill(path: Path, n: int) -> float:
    from eventdesk.core.capture import Capture
    from eventdesk.core.envelope import Event

    cap = Capture(path)
    t0 = time.perf_counter()
    regions = ("Bangalore", "Pune", "Zürich", 'Quote "City", North')
    for start in range(0, n, BATCH):
        events = [
            Event(
                datasource="bench",
                model=f"m{i % 4}",
                op="created" if i % 3 else "updated",
                key=f"doc-{i:08d}",
                rev=f"1-{i:032x}",
                seq=f"{i}-g1AAAAB4eJzLYWBgYMpgTmHgz8tPSTV0MDQy0TMAQsMcoARTIkOS_P___7MSGUAqjdEV",
                payload={
                    "_id": f"doc-{i:08d}",
                    "_rev": f"1-{i:032x}",
                    "name": f"Customer {i}",
                    "region": regions[i % len(regions)],
                    "balance": i * 1.25,
                    "active": bool(i % 2),
                    "tags": ["a", "b"],
                },
                source={"connector": "couchdb", "db": "accounts"},
            )
            for i in range(start, min(n, start + BATCH))
        ]
        cap.append("bench", events, None)
    elapsed = time.perf_counter() - t0
    cap.close()
    return elapsed


def child(fmt: str, capture: str, out: str) -> None:
    from eventdesk.core.capture import Capture
    from eventdesk.core.export import export_events

    cap = Capture(capture, readonly=True)
    result = export_events(cap, out, fmt)
    cap.close()
    print(json.dumps({"exported": result.exported, "elapsed": result.elapsed}))


def run_child(fmt: str, capture: Path, out: Path) -> tuple[dict[str, float], float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.export", "--child", fmt, str(capture), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"export child failed ({proc.returncode})")
    return json.loads(output), usage.ru_maxrss / 1024  # KiB on Linux


def sqlite_dump(capture: Path, sink: Path | None = None) -> float:
    """Seconds for the sqlite3 CLI to print every envelope to /dev/null (or to ``sink``, a file)."""
    exe = shutil.which("sqlite3")
    if exe is None:
        raise SystemExit("the sqlite3 command-line tool is missing: apt-get install sqlite3")
    t0 = time.perf_counter()
    with open(sink or os.devnull, "wb") as out:
        subprocess.run([exe, str(capture), "select envelope from events"], stdout=out, check=True)
    took = time.perf_counter() - t0
    if sink is not None:
        sink.unlink()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "CAPTURE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="eventdesk-bench-export-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        capture = root / "capture.sqlite3"
        if not capture.exists():
            took = fill(capture, args.events)
            print(f"fill     {args.events:,} events in {took:.1f} s ({args.events / took:,.0f} events/s)")
        size = capture.stat().st_size / 1e6
        sqlite_dump(capture)  # warm the page cache for everyone
        ref = min(sqlite_dump(capture) for _ in range(2))
        ref_rate = args.events / ref
        print(
            f"sqlite3  select envelope > /dev/null: {ref:.2f} s, {ref_rate:,.0f} rows/s  (capture {size:,.0f} MB)"
        )
        to_file = min(sqlite_dump(capture, root / "sqlite3-dump.txt") for _ in range(2))
        file_rate = args.events / to_file
        print(
            f"sqlite3  select envelope > file:      {to_file:.2f} s, {file_rate:,.0f} rows/s (same bytes as JSON Lines)"
        )
        ok = True
        for fmt in ("jsonl", "csv"):
            out = root / f"export.{fmt}"
            stats, peak = run_child(fmt, capture, out)
            rate = stats["exported"] / stats["elapsed"]
            ratio = rate / ref_rate
            line = (
                f"{fmt:<8} {int(stats['exported']):,} events in {stats['elapsed']:.2f} s: {rate:,.0f} events/s,"
                f" {ratio:.2f} x sqlite3 (> /dev/null), {rate / file_rate:.2f} x sqlite3 (> file),"
                f" peak RSS {peak:.0f} MB, file {out.stat().st_size / 1e6:,.0f} MB"
            )
            if fmt == "jsonl":
                met = ratio >= TARGET_RATIO and peak <= TARGET_MB
                line += f"  [target >= {TARGET_RATIO} x, <= {TARGET_MB} MB: {'met' if met else 'MISSED'}]"
                ok = ok and met
            else:
                met = peak <= TARGET_MB
                line += f"  [target <= {TARGET_MB} MB: {'met' if met else 'MISSED'}]"
                ok = ok and met
            print(line, flush=True)
            out.unlink()
        print("all targets met" if ok else "some targets missed")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
