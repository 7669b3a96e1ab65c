"""Soak: the real window left running, idle and then with a trickle (USERS.md: "100 % CPU when idle,
blank screen after a night running", MQTT Explorer #673, #715).

The main window (offscreen) runs a workspace whose model follows a real pouchdb-server database
and republishes to a real mosquitto. After a warm-up it stays idle for ``--minutes``, then one
document a second is written for ``--minutes``. Printed per phase:
  CPU       the app process's CPU % of one core (and the peers', for scale)
  memory    RSS and the number of Python objects the collector tracks, at start and end (drift)
  wake-ups  Qt timer events and asyncio callbacks per second, by source; while idle anything
            firing more than once a second is flagged (the 1 Hz status/chart tick is expected)
and at the end whether the window still renders (a grab() to PNG that is not blank) and whether
every document was captured and republished.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.bench.app_soak --minutes 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.bench.app_feed import cpu_seconds, rss_mb, until
from tests.bench.private_settings import private_settings
from tests.peers.servers import CouchServer, MqttBroker, Subscriber, free_port, start_couch, stop_process

WARM_UP_S = 15.0
# More wake-ups a second than this from one source while idle is a busy loop. A 1 Hz job that
# awaits once (the status tick's backlog query: started, resumed) shows as 2/s, so the line is 2.5.
BUSY_PER_S = 2.5
CARRIER = "_SimpleTimer"  # qasync's one QObject whose timer events run the asyncio callbacks listed
SOAK_TASK = "soak-driver"  # the benchmark's own coroutine, left out of the counts


def peer_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects()) + gc.get_freeze_count()


class WakeUps:
    """Counts Qt timer events (by receiver) and asyncio callbacks (by what they run)."""

    def __init__(self) -> None:
        import asyncio.events

        from PySide6.QtCore import QEvent, QObject
        from PySide6.QtWidgets import QApplication

        self.qt: Counter[str] = Counter()
        self.aio: Counter[str] = Counter()
        counter = self

        class TimerFilter(QObject):
            def eventFilter(self, obj: QObject, event: QEvent) -> bool:
                if event.type() == QEvent.Type.Timer:
                    counter.qt[counter.describe_qobject(obj)] += 1
                return False

        self._filter = TimerFilter()
        app = QApplication.instance()
        assert app is not None
        app.installEventFilter(self._filter)
        original = asyncio.events.Handle._run

        def run(handle: asyncio.events.Handle) -> None:
            counter.aio[counter.describe_callback(handle)] += 1
            original(handle)

        asyncio.events.Handle._run = run  # type: ignore[method-assign,assignment]

    @staticmethod
    def describe_qobject(obj: Any) -> str:
        name = type(obj).__name__
        if obj.objectName():
            name += f" {obj.objectName()!r}"
        parent = obj.parent()
        if parent is not None:
            name += f" in {type(parent).__name__}"
            if parent.objectName():
                name += f" {parent.objectName()!r}"
        return name

    @staticmethod
    def describe_callback(handle: Any) -> str:
        callback = handle._callback
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            coro = owner.get_coro()
            return f"task {owner.get_name()} ({getattr(coro, '__qualname__', coro)})"
        return str(getattr(callback, "__qualname__", None) or repr(callback))

    def reset(self) -> None:
        self.qt.clear()
        self.aio.clear()

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        qt, aio = Counter(self.qt), Counter(self.aio)
        for key in [k for k in aio if SOAK_TASK in k]:
            del aio[key]
        return qt, aio


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    cpu_pct: float = 0.0
    peers_cpu_pct: dict[str, float] = field(default_factory=dict)
    rss: tuple[float, float] = (0.0, 0.0)
    objects: tuple[int, int] = (0, 0)
    qt: Counter[str] = field(default_factory=Counter)
    aio: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)


async def run_phase(
    name: str, minutes: float, wake: WakeUps, peers: dict[str, int], step: Any = None
) -> Phase:
    """Measure ``minutes`` of the app; ``step()`` (a coroutine function) runs once a second if given."""
    phase = Phase(name)
    objects0, rss0 = tracked_objects(), rss_mb()
    peers0 = {n: peer_cpu_seconds(pid) for n, pid in peers.items()}
    wake.reset()
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    end = wall0 + minutes * 60
    next_report = wall0 + 30
    while (now := time.monotonic()) < end:
        if step is not None:
            await step()
        await asyncio.sleep(max(0.0, min(1.0, end - time.monotonic())))
        if now >= next_report:
            next_report += 30
            line = (
                f"  {name} t={now - wall0:4.0f} s  CPU {100 * (cpu_seconds() - cpu0) / (now - wall0):5.1f} %  "
                f"RSS {rss_mb():6.1f} MB"
            )
            phase.samples.append(line)
            print(line, flush=True)
    cpu1, wall1 = cpu_seconds(), time.monotonic()
    phase.qt, phase.aio = wake.snapshot()
    phase.seconds = wall1 - wall0
    phase.cpu_pct = 100 * (cpu1 - cpu0) / phase.seconds
    phase.peers_cpu_pct = {
        n: 100 * (peer_cpu_seconds(pid) - peers0[n]) / phase.seconds for n, pid in peers.items()
    }
    phase.rss = (rss0, rss_mb())
    phase.objects = (objects0, tracked_objects())
    return phase


def image_is_blank(path: Path) -> tuple[bool, int]:
    """(blank?, distinct colours in a 64x64 thumbnail) of a PNG."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    if image.isNull():
        return True, 0
    small = image.scaled(
        64, 64, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation
    )
    colours = {small.pixel(x, y) for x in range(small.width()) for y in range(small.height())}
    return len(colours) < 8, len(colours)


async def soak(
    root: Path, couch: CouchServer, broker: MqttBroker, minutes: float, png: Path
) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    from eventdesk.core.contracts import State
    from eventdesk.core.gc_policy import tune_for_streaming
    from eventdesk.core.home import Home
    from eventdesk.ui.main_window import MainWindow

    asyncio.current_task().set_name(SOAK_TASK)  # type: ignore[union-attr]
    db = couch.create_database("soak")
    topic = f"soak/{db}"
    subscriber = Subscriber(port=broker.port, topic=f"{topic}/#", qos=1)
    home = Home.open(str(root / "home"))
    home.add_datasource("couch", "couchdb", {"url": couch.url})
    home.add_model("docs", "couch", {"database": db})
    home.add_broker("mosquitto", "mqtt", {"url": broker.url})
    home.add_route("docs-out", "docs", "mosquitto", {"topic": topic + "/{key}", "enabled": True})
    window = MainWindow(home)
    window.show()
    tune_for_streaming()
    wake = WakeUps()
    try:
        window.start_model("docs")
        await until(lambda: window.runtime.state_of("model/docs").state is State.RUNNING, 0.05)
        await until(lambda: window.runtime.state_of("broker/mosquitto").state is State.RUNNING, 0.05)
        # one document through the whole path before measuring: the route and the table are live
        couch.request("PUT", f"/{db}/warm-up", json.dumps({"n": -1}).encode())
        await until(lambda: len(subscriber.messages) >= 1, 0.05)
        print(f"warm-up {WARM_UP_S:.0f} s (model running, route publishing, window shown)", flush=True)
        await asyncio.sleep(WARM_UP_S)
        peers = {"pouchdb-server": couch.proc.pid, "mosquitto": broker.proc.pid}  # type: ignore[union-attr]

        idle = await run_phase("idle", minutes, wake, peers)
        written = 0

        async def write_one() -> None:
            nonlocal written
            body = json.dumps({"n": written, "region": "Bangalore", "at": time.time()}).encode()
            await asyncio.to_thread(couch.request, "PUT", f"/{db}/doc-{written:06d}", body)
            written += 1

        trickle = await run_phase("trickle", minutes, wake, peers, write_one)
        deadline = time.monotonic() + 30
        await until(lambda: len(subscriber.messages) >= written + 1 or time.monotonic() > deadline, 0.1)
        captured = await window.runtime.db(home.capture.count, "docs")
        published = len(subscriber.messages)

        window.repaint()
        QApplication.processEvents()
        window.grab().save(str(png))
        blank, colours = image_is_blank(png)
        rows = window.table.model.rowCount()
    finally:
        await window.shutdown()
        window.close()
        home.close()
        subscriber.close()
    return {
        "idle": idle,
        "trickle": trickle,
        "written": written,
        "captured": captured,
        "published": published,
        "rows": rows,
        "blank": blank,
        "colours": colours,
    }


def report(phase: Phase, *, idle: bool) -> None:
    peers = ", ".join(f"{n} {pct:.1f} %" for n, pct in phase.peers_cpu_pct.items())
    print(
        f"{phase.name:8s} {phase.seconds / 60:.1f} min: app CPU {phase.cpu_pct:.2f} % of one core "
        f"(peers: {peers}); RSS {phase.rss[0]:.1f} -> {phase.rss[1]:.1f} MB "
        f"({phase.rss[1] - phase.rss[0]:+.1f}); Python objects {phase.objects[0]:,} -> {phase.objects[1]:,} "
        f"({phase.objects[1] - phase.objects[0]:+,})",
        flush=True,
    )
    total_qt = sum(phase.qt.values()) / phase.seconds
    total_aio = sum(phase.aio.values()) / phase.seconds
    print(
        f"         wake-ups: {total_qt:.2f} Qt timer events/s, {total_aio:.2f} asyncio callbacks/s",
        flush=True,
    )
    for kind, counts in (("Qt timer", phase.qt), ("asyncio", phase.aio)):
        for source, n in counts.most_common(8):
            rate = n / phase.seconds
            if CARRIER in source:
                flag = "  (qasync: carries the asyncio callbacks below)"
            else:
                flag = "  <-- BUSY while idle" if idle and rate > BUSY_PER_S else ""
            print(f"           {rate:7.2f}/s  {kind:8s} {source}{flag}", flush=True)


def main() -> None:
    import qasync
    from PySide6.QtWidgets import QApplication

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10, help="minutes idle, then as many trickling")
    parser.add_argument("--png", default="", help="where to keep the final grab (default: a temporary file)")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication([])
    assert app is not None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        couch = start_couch(root)
        broker = MqttBroker(port=free_port(), workdir=root / "mosquitto")
        broker.start()
        png = Path(args.png) if args.png else root / "soak.png"
        try:
            with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
                r = runner.run(soak(root, couch, broker, args.minutes, png))
        finally:
            broker.stop()
            stop_process(couch.proc)
        report(r["idle"], idle=True)
        report(r["trickle"], idle=False)
        print(
            f"delivery {r['written']} docs written at 1/s (+1 warm-up): {r['captured']} captured, "
            f"{r['published']} republished; the table shows {r['rows']} rows",
            flush=True,
        )
        print(
            f"window   grab() after {2 * args.minutes:g} min: "
            f"{'BLANK' if r['blank'] else 'renders'} ({r['colours']} colours in a 64x64 thumbnail)"
            + (f", kept at {png}" if args.png else ""),
            flush=True,
        )


if __name__ == "__main__":
    with private_settings():  # the window's saved layout: not the user's settings
        main()
