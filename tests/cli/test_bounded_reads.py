"""``eventdesk run`` against a server (a proxy) whose page of changes never ends: memory stays
bounded, the change in the way is skipped by name, and everything after it arrives."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from eventdesk.core.capture import Capture
from tests.cli.harness import RunProcess, home_args, ok, put_doc
from tests.peers.fault_proxy import FaultProxy
from tests.peers.servers import CouchServer, MqttBroker

RSS_BOUND = 300 << 20  # a generous bound: a cut page is 64 MB


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


class RssWatch:
    """Follows a process's peak RSS; kills it past ``bound`` (so a failing run cannot take the
    machine's memory with it)."""

    def __init__(self, run: RunProcess, bound: int) -> None:
        self.run = run
        self.bound = bound
        self.peak = 0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, peak_rss(self.run.proc.pid))
            except (OSError, AssertionError):
                return  # the process ended
            if self.peak > self.bound:
                self.killed = True
                self.run.proc.kill()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def captured_keys(home: Path) -> list[str]:
    capture = Capture(home / "capture.sqlite3", readonly=True)
    try:
        return [json.loads(raw)["key"] for _pos, raw in capture.iter_raw()]
    finally:
        capture.close()


def wait_captured(home: Path, key: str, run: RunProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while key not in captured_keys(home):
        assert time.monotonic() < deadline and run.proc.poll() is None, run.output()
        time.sleep(0.1)


def test_run_against_a_page_that_never_ends_keeps_memory_bounded_and_skips_the_change_by_name(
    tmp_path: Path, couch: CouchServer, mqtt_broker: MqttBroker
) -> None:
    db = couch.create_database("accounts")
    for i in range(5):
        put_doc(couch, db, f"doc-{i}", {"n": i})
    rows = json.loads(couch.request("GET", f"/{db}/_changes"))["results"]
    seq = rows[1]["seq"]
    head = (
        b'{"results":[\n'
        + json.dumps(rows[0]).encode()
        + b',\n{"seq":%s,"id":"doc-1","changes":[{"rev":"1-x"}],"doc":{"_id":"doc-1","pad":"'
        % json.dumps(seq).encode()
    )
    proxy = FaultProxy(couch.port)
    proxy.endless_pages(head)
    home = tmp_path / "home"
    h = home_args(home)
    try:
        ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", proxy.url)
        ok(*h, "model", "add", "accounts", "--datasource", "couch", "--database", db, "--since", "0")
        ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", mqtt_broker.url)
        ok(*h, "route", "add", "out", "--model", "accounts", "--broker", "mosq")
        run = RunProcess(h)
        watch = RssWatch(run, RSS_BOUND)
        try:
            line = run.wait_line("skipped change 'doc-1'", 120)
            wait_captured(home, "doc-4", run)
        finally:
            watch.stop()
            rc = run.stop()
        assert not watch.killed, f"peak RSS {watch.peak >> 20} MB; streamed {proxy.streamed >> 20} MB"
        assert rc == 0, run.output()
        assert (
            f"skipped change 'doc-1' (seq {json.dumps(seq)}): its row is longer than 64 MB" in run.lines[line]
        )
        assert proxy.streamed >= 64 << 20  # the page was read up to its cut...
        assert watch.peak < RSS_BOUND  # ...with memory bounded
    finally:
        proxy.close()
    assert captured_keys(home) == ["doc-0", "doc-2", "doc-3", "doc-4"]
