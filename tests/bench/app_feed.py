"""Benchmark: feed the running desktop app 10,000 events/s for 60 s (issue: Desktop app, Performance).

First measures what pouchdb-server sustains (bulk inserts of 1,000 docs while a client follows the
continuous feed). When that is below the target rate, the app is fed by a generator connector
defined here: a :class:`Connector` that builds Event batches at a fixed rate on a worker thread and
hands them to the real ``host.deliver`` (capture thread, live feed, table model, shown window).

Prints, beside their targets:
  loop     the largest gap of a 10 ms QTimer on the GUI thread (target: stall <= 50 ms)
  capture  events captured vs events generated (target: all), and how far the generator fell behind
  memory   peak RSS of the process (target < 400 MB), CPU % of one core

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.bench.app_feed [--seconds 60] [--rate 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from eventdesk.core import model_runner, registry, workspace
from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.envelope import Event
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.core.workspace import DatasourceConfig, ModelConfig
from tests.bench.private_settings import private_settings
from tests.cli.harness import bulk_insert
from tests.peers.servers import start_couch, stop_process

PAD = "x" * 160


async def until(condition: Callable[[], object], interval: float = 0.001) -> None:
    """Let the loop turn until ``condition()`` holds (Qt state has no asyncio.Event to wait on)."""
    while not condition():  # noqa: ASYNC110 - polling widgets' state, not an asyncio condition
        await asyncio.sleep(interval)


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- what pouchdb-server sustains ------------------------------------------------------------------
def probe_pouchdb(count: int) -> float:
    """Docs/s of bulk inserts (1,000 per request) while curl follows the continuous feed to the end."""
    with tempfile.TemporaryDirectory() as tmp:
        couch = start_couch(Path(tmp))
        try:
            db = couch.create_database("probe")
            url = f"{couch.url}/{db}/_changes?feed=continuous&include_docs=true&since=now&heartbeat=60000"
            follower = subprocess.Popen(
                ["sh", "-c", f"curl -sN -H 'Accept-Encoding: identity' '{url}' | head -n {count} > /dev/null"]
            )
            time.sleep(0.5)  # let curl connect before the first insert
            start = time.monotonic()
            docs = ({"_id": f"p-{i:07d}", "n": i, "region": "Bangalore", "pad": PAD} for i in range(count))
            bulk_insert(couch, db, docs)
            follower.wait(600)
            return count / (time.monotonic() - start)
        finally:
            stop_process(couch.proc)


# -- the generator connector (bench only) ----------------------------------------------------------
GENERATOR_SCHEMA = Schema(kind="generator", title="Generator", fields=())
GENERATOR_MODEL_SCHEMA = Schema(
    kind="generator-model",
    title="Generated stream",
    fields=(Field("since", "choice", default="now", choices=("now", "0")),),
)


class GeneratorConnector(Connector):
    """Produces ``rate`` events/s for ``seconds`` (batches of at most ``max_batch``), then idles.

    Events are built on a worker thread, as a real connector parses on its reader thread; only
    ``host.deliver`` runs on the loop. When delivery falls behind, the next batch is larger, so the
    average rate holds as long as the pipeline can keep up (``max_lag`` says how far it fell behind).
    """

    kind: ClassVar[str] = "generator"
    datasource_schema: ClassVar[Schema] = GENERATOR_SCHEMA
    model_schema: ClassVar[Schema] = GENERATOR_MODEL_SCHEMA
    rate: ClassVar[float] = 10_000
    seconds: ClassVar[float] = 60
    max_batch: ClassVar[int] = 1000
    tick: ClassVar[float] = 0.01
    sent: ClassVar[int] = 0
    max_lag: ClassVar[int] = 0
    started_at: ClassVar[float] = 0.0
    finished_at: ClassVar[float] = 0.0

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        return "generator"

    def _make(self, first: int, count: int) -> list[Event]:
        ds, model = self.datasource.name, self.model.name
        return [
            Event(
                datasource=ds,
                model=model,
                op="created" if n % 3 else "updated",
                key=f"doc-{n % 50_000:05d}",
                rev=f"{n}-a",
                seq=f"{n}-g",
                payload={
                    "_id": f"doc-{n % 50_000:05d}",
                    "n": n,
                    "region": "Bangalore" if n % 2 else "Pune",
                    "pad": PAD,
                },
                source={"connector": "generator"},
            )
            for n in range(first, first + count)
        ]

    async def run(self, since: Any) -> None:
        cls = type(self)
        loop = asyncio.get_running_loop()
        total = int(cls.rate * cls.seconds)
        with ThreadPoolExecutor(1, thread_name_prefix="generator") as pool:
            self.host.set_state(StateChange(State.RUNNING))
            start = cls.started_at = time.monotonic()
            while cls.sent < total:
                due = min(total, int((time.monotonic() - start) * cls.rate))
                cls.max_lag = max(cls.max_lag, due - cls.sent)
                count = min(due - cls.sent, cls.max_batch)
                if count <= 0:
                    await asyncio.sleep(cls.tick)
                    continue
                events = await loop.run_in_executor(pool, self._make, cls.sent, count)
                await self.host.deliver(events, events[-1].seq)
                cls.sent += count
            cls.finished_at = time.monotonic()
        await asyncio.Event().wait()  # a quiet feed: follow until stopped


def register_generator() -> None:
    """Make kind ``generator`` known to the runtime and the workspace, in this process only."""
    original = registry.connector_class

    def connector_class(kind: str) -> type[Connector]:
        return GeneratorConnector if kind == "generator" else original(kind)

    # Every module that looked the name up at import (the model runner starts connectors).
    for module in (registry, model_runner, workspace):
        module.connector_class = connector_class  # type: ignore[attr-defined]


# -- the app under load ----------------------------------------------------------------------------
class LoopMonitor:
    """A 10 ms precise QTimer on the GUI thread; records every gap between its timeouts."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.gaps: list[float] = []
        self.own: list[float] = []  # each gap minus the time the GUI thread waited for a CPU
        self.worst: tuple[float, float, float] = (0.0, 0.0, 0.0)  # gap, of it waiting for a CPU, on-CPU
        self.worst_at = 0.0
        self.peak_rss = 0.0
        self._last = time.monotonic()
        self._t0 = self._last
        self._n = 0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = self._t0 = time.monotonic()
        self._sched = self._schedstat()
        self.timer.start()

    @staticmethod
    def _schedstat() -> tuple[float, float]:
        """(on-CPU ms, waiting-for-a-CPU ms) of the calling thread so far (Linux schedstat)."""
        run, wait, _ = Path("/proc/thread-self/schedstat").read_text().split()
        return int(run) / 1e6, int(wait) / 1e6

    def _tick(self) -> None:
        now = time.monotonic()
        sched = self._schedstat()
        gap = (now - self._last) * 1000
        on_cpu, waited = sched[0] - self._sched[0], sched[1] - self._sched[1]
        if not self.gaps or gap > max(self.gaps):
            self.worst_at = now - self._t0
            self.worst = (gap, waited, on_cpu)
        self.gaps.append(gap)
        self.own.append(gap - waited)
        self._sched = sched
        self._last = now
        self._n += 1
        if self._n % 50 == 0:
            self.peak_rss = max(self.peak_rss, rss_mb())

    def stop(self) -> None:
        self.timer.stop()
        self.watching = False

    def watch(self, threshold_ms: float = 40) -> None:
        """Diagnose: a thread samples the GUI thread's stack while a tick is overdue."""
        import sys
        import threading
        import traceback
        from collections import Counter

        self.samples: Counter[str] = Counter()
        self.watching = True
        main_id = threading.get_ident()

        def sample() -> None:
            while self.watching:
                time.sleep(0.005)
                if (time.monotonic() - self._last) * 1000 > threshold_ms:
                    frame = sys._current_frames().get(main_id)
                    if frame is not None:
                        stack = traceback.extract_stack(frame)[-12:]
                        self.samples[
                            "\n".join(
                                f"  {f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}"
                                for f in stack
                            )
                        ] += 1

        threading.Thread(target=sample, daemon=True).start()


async def feed_app(root: Path, rate: float, seconds: float, diagnose: bool = False) -> dict[str, Any]:
    from eventdesk.core.gc_policy import tune_for_streaming
    from eventdesk.core.home import Home
    from eventdesk.ui.main_window import MainWindow

    GeneratorConnector.rate, GeneratorConnector.seconds = rate, seconds
    home = Home.open(str(root / "home"))
    home.add_datasource("gen", "generator", {})
    home.add_model("stream", "gen", {})
    window = MainWindow(home)
    window.show()
    tune_for_streaming()  # as the app does right after showing its window
    shown = {"events": 0, "batches": 0}

    def on_batch(events: list[Any]) -> None:
        shown["events"] += len(events)
        shown["batches"] += 1

    window.feed.batch.connect(on_batch)
    monitor = LoopMonitor()
    rss_start = rss_mb()
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    monitor.start()
    # The rate chart imports pyqtgraph once the window is on screen: a one-time pause at launch,
    # reported apart from the feed (a user starts models after the window is up).
    await until(lambda: window.rate_chart._plot is not None)
    await asyncio.sleep(0.05)
    chart_pause = max(monitor.gaps, default=0.0)
    monitor.gaps.clear()
    monitor.own.clear()
    if diagnose:
        monitor.watch()
    window.start_model("stream")
    total = int(rate * seconds)
    await until(lambda: GeneratorConnector.sent >= total, 0.2)
    deadline = time.monotonic() + 60
    await until(
        lambda: (
            time.monotonic() > deadline
            or (
                window.table.model.rowCount() >= total  # the whole capture is in the table
                and shown["events"] >= total
            )
        ),
        0.05,
    )
    cpu1, wall1 = cpu_seconds(), time.monotonic()
    stop_start = time.monotonic()
    window.stop_model("stream")
    await until(lambda: window.runtime.state_of("model/stream").state is State.STOPPED, 0.005)
    stop_ms = (time.monotonic() - stop_start) * 1000
    monitor.stop()
    captured = await window.runtime.db(home.capture.count, "stream")
    rows = window.table.model.rowCount()
    await window.shutdown()
    window.close()
    home.close()
    gaps = sorted(monitor.gaps)
    if diagnose:
        for stack, n in monitor.samples.most_common(12):
            print(f"--- {n} samples (5 ms each) while the loop was stalled:\n{stack}")
    return {
        "total": total,
        "captured": captured,
        "shown": shown["events"],
        "batches": shown["batches"],
        "rows": rows,
        "gen_seconds": GeneratorConnector.finished_at - GeneratorConnector.started_at,
        "max_lag": GeneratorConnector.max_lag,
        "max_gap": gaps[-1],
        "worst_at": monitor.worst_at,
        "p99_gap": gaps[int(len(gaps) * 0.99)],
        "median_gap": statistics.median(gaps),
        "over_50": sum(1 for g in gaps if g - 10 > 50),
        "worst": monitor.worst,
        "max_own": max(monitor.own),
        "own_over_50": sum(1 for g in monitor.own if g - 10 > 50),
        "load": os.getloadavg()[0],
        "ticks": len(gaps),
        "rss_start": rss_start,
        "rss_peak_sampled": monitor.peak_rss,
        "rss_hwm": rss_mb("VmHWM"),
        "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "stop_ms": stop_ms,
        "chart_pause": chart_pause,
    }


def run_app_bench(rate: float, seconds: float, diagnose: bool = False) -> dict[str, Any]:
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert app is not None
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        return runner.run(feed_app(Path(tmp), rate, seconds, diagnose))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=10_000, help="events/s to feed (default 10,000)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to feed (default 60)")
    parser.add_argument(
        "--probe", type=int, default=50_000, help="docs for the pouchdb-server probe (0: skip)"
    )
    parser.add_argument("--diagnose", action="store_true", help="print the GUI thread's stacks during stalls")
    args = parser.parse_args()

    if args.probe:
        sustained = probe_pouchdb(args.probe)
        verdict = "enough" if sustained >= args.rate else "not enough"
        print(
            f"pouchdb-server: {sustained:,.0f} docs/s bulk-inserted while followed ({args.probe:,} docs; "
            f"{sustained / args.rate:.2f} x the {args.rate:,.0f}/s target: {verdict})",
            flush=True,
        )
    print(
        f"feeding the app through a local generator connector (real host.deliver -> capture -> live feed "
        f"-> table): {args.rate:,.0f} events/s for {args.seconds:g} s",
        flush=True,
    )
    register_generator()
    r = run_app_bench(args.rate, args.seconds, args.diagnose)
    print(
        f"capture  {r['captured']:,} of {r['total']:,} events captured "
        f"({'all' if r['captured'] == r['total'] else 'MISSING ' + str(r['total'] - r['captured'])}); "
        f"generated in {r['gen_seconds']:.1f} s ({r['total'] / r['gen_seconds']:,.0f}/s, "
        f"largest lag {r['max_lag']:,} events); live feed passed {r['shown']:,} in {r['batches']:,} batches; "
        f"table holds {r['rows']:,} rows",
        flush=True,
    )
    print(
        f"loop     largest gap of a 10 ms timer {r['max_gap']:.1f} ms (stall {r['max_gap'] - 10:.1f} ms, "
        f"target <= 50; at t={r['worst_at']:.1f} s); p99 {r['p99_gap']:.1f} ms, median {r['median_gap']:.1f} ms; "
        f"{r['over_50']} stalls > 50 ms in {r['ticks']:,} ticks",
        flush=True,
    )
    _, waited, on_cpu = r["worst"]
    print(
        f"         the largest gap: {waited:.1f} ms of it the GUI thread waited for a CPU (machine load "
        f"{r['load']:.1f} on {os.cpu_count()} CPUs), {on_cpu:.1f} ms it ran; without run-queue waits the "
        f"largest gap is {r['max_own']:.1f} ms (stall {r['max_own'] - 10:.1f} ms), {r['own_over_50']} stalls > 50 ms",
        flush=True,
    )
    print(
        f"memory   peak RSS {r['rss_hwm']:.0f} MB (target < 400; {r['rss_hwm'] / 400:.2f} x), "
        f"at start {r['rss_start']:.0f} MB; CPU {r['cpu_pct']:.0f} % of one core; "
        f"stop took {r['stop_ms']:.0f} ms; before feeding, the deferred chart build paused the loop once "
        f"for {r['chart_pause']:.0f} ms",
        flush=True,
    )


if __name__ == "__main__":
    with private_settings():  # the window's saved layout: not the user's settings
        main()
