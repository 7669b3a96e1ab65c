"""Benchmark: time from launching ``python -m eventdesk`` to a visible main window (target <= 1.5 s).

Each run starts a fresh interpreter that creates the QApplication, installs an event filter that
notes the first paint of the main window (CLOCK_MONOTONIC, shared with this process), then runs
the ``eventdesk`` module exactly as ``python -m eventdesk`` does; the filter quits the app once the
window has painted. Also prints the import-time breakdown (``python -X importtime``) of what the
launch imports, by top-level package.

Run: .venv/bin/python -m tests.bench.app_launch [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from tests.bench.private_settings import private_settings

CHILD = """
import runpy, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow

app = QApplication(sys.argv[:1])

class FirstPaint(QObject):
    seen = False

    def eventFilter(self, obj, event):
        if not self.seen and event.type() == QEvent.Type.Paint and isinstance(obj, QMainWindow):
            self.seen = True
            print("PAINTED", time.monotonic(), flush=True)
            QTimer.singleShot(0, QApplication.quit)
        return False

spy = FirstPaint()
app.installEventFilter(spy)
sys.argv = ["eventdesk", "--home", sys.argv[1]]
runpy.run_module("eventdesk", run_name="__main__", alter_sys=True)
"""

IMPORTS = "import eventdesk.cli.main, eventdesk.ui.app, eventdesk.ui.main_window"


def launch_once(home: Path) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(home)], capture_output=True, text=True, env=env, timeout=120
    )
    painted = [line for line in proc.stdout.splitlines() if line.startswith("PAINTED ")]
    if proc.returncode != 0 or not painted:
        raise SystemExit(f"launch failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return float(painted[0].split()[1]) - start


def import_breakdown() -> tuple[float, list[tuple[str, float]]]:
    """(total s, [(top-level package, own import time s)]) of the launch's imports, largest first.

    A package's own time is the sum of its modules' self times, wherever they were imported from.
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORTS], capture_output=True, text=True, timeout=120
    )
    by_top: dict[str, float] = defaultdict(float)
    total = 0.0
    pattern = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
    for line in proc.stderr.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        own, name = int(m.group(1)) / 1e6, m.group(4)
        total += own
        by_top[name.split(".")[0]] += own
    return total, sorted(by_top.items(), key=lambda kv: -kv[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        launch_once(Path(tmp) / "warm")  # the first run after a change also compiles .pyc files
        times = [launch_once(Path(tmp) / f"home{i}") for i in range(args.runs)]
    med = statistics.median(times)
    print(
        f"launch   python -m eventdesk -> main window painted: median {med:.2f} s over {args.runs} runs "
        f"(min {min(times):.2f}, max {max(times):.2f}; target <= 1.5 s, {med / 1.5:.2f} x); "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    total, parts = import_breakdown()
    shown = ", ".join(f"{name} {secs * 1000:.0f}" for name, secs in parts[:12] if secs >= 0.005)
    print(f"imports  {total:.2f} s in all (-X importtime, ms by package): {shown}", flush=True)


if __name__ == "__main__":
    with private_settings():  # the window's saved layout: not the user's settings
        main()
