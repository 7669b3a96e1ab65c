"""Start-up time of the bundle against ``python -m eventdesk``: prints figures, asserts nothing.

    python packaging/startup_time.py [dist/eventdesk/eventdesk] [--runs 5]

Two measures, each the median of N runs from process start: ``--version`` (interpreter and
CLI import), and "window visible" (offscreen; the app grabs its first frame on the first turn
of the event loop after ``show()``, via ``EVENTDESK_SCREENSHOT`` with a 0 ms delay).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str], until: str | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    elapsed = None
    for line in proc.stdout:  # read to the end: the app keeps printing after the mark
        if elapsed is None and (until is None or until in line):
            elapsed = time.perf_counter() - started
    proc.stdout.close()
    proc.wait(60)
    if elapsed is None:
        raise SystemExit(f"{' '.join(cmd)}: no line with {until!r} (exit {proc.returncode})")
    return elapsed


def median_ms(cmd: list[str], env: dict[str, str], runs: int, until: str | None = None) -> float:
    timed(cmd, env, until)  # warm the page cache
    return 1000 * statistics.median(timed(cmd, env, until) for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", nargs="?", default=str(ROOT / "dist" / "eventdesk" / "eventdesk"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not Path(args.bundle).is_file():
        raise SystemExit(f"no bundle at {args.bundle}: run `make bundle` first")
    with tempfile.TemporaryDirectory(prefix="eventdesk-startup-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
        env.update(EVENTDESK_HOME=str(Path(tmp) / "home"), XDG_CONFIG_HOME=str(Path(tmp) / "config"))
        gui_env = dict(env, QT_QPA_PLATFORM="offscreen", EVENTDESK_SCREENSHOT=str(Path(tmp) / "shot.png"))
        gui_env["EVENTDESK_SCREENSHOT_AFTER_MS"] = "0"
        rows = []
        for label, cmd in (
            ("bundle", [args.bundle]),
            ("python -m eventdesk", [sys.executable, "-m", "eventdesk"]),
        ):
            version = median_ms([*cmd, "--version"], env, args.runs)
            window = median_ms(cmd, gui_env, args.runs, until="screenshot saved")
            rows.append((label, version, window))
    print(f"median of {args.runs} runs        --version   window visible")
    for label, version, window in rows:
        print(f"{label:<26}{version:>8.0f} ms{window:>13.0f} ms")
    (_, bv, bw), (_, pv, pw) = rows
    print(f"bundle / python            {bv / pv:>8.2f}   {bw / pw:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
