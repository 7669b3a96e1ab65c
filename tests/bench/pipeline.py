"""Benchmark of the headless pipeline against local pouchdb-server and mosquitto.

Prints each figure beside a reference measured in the same run (issue: Event pipeline):
  live     20,000 docs bulk-inserted while `run` follows (QoS 1 and 0) vs curl on the continuous feed
           (live and backlog count distinct topics with mosquitto_sub; latency uses a paho subscriber);
           with --c-pipeline, live also measures C tools republishing the same feed at QoS 1
           (curl | grep | mosquitto_pub -l, no capture) as a second yardstick;
           with --source-apart, live is measured again with the source on core 0 and everything
           else on the other cores, as with a database on a host of its own (on 2 cores a
           follower's CPU is otherwise taken from the source)
  backlog  100,000 docs already stored, --since 0, QoS 1, vs curl reading feed=normal (counted
           from `run`'s start, and from the first message to the last)
  latency  write -> subscriber at a steady 200 docs/s for 20 s (p50, p99), beside write -> line on a
           raw feed socket (the source alone); writes go over one keep-alive connection
  memory   peak RSS of `run` during the backlog drain

Run: .venv/bin/python -m tests.bench.pipeline [--quick] [--rounds N] [--c-pipeline] [--source-apart]
(medians of N rounds, default 9)
Each live measurement (reference or EventDesk) gets a pouchdb-server of its own, warmed up alike.
`run` runs as users run it: with its default scheduling (SCHED_BATCH on Linux, see
eventdesk/core/cpu_policy.py).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.cli.harness import RunProcess, bulk_insert, home_args, setup_pipeline
from tests.peers.servers import MqttBroker, Subscriber, free_port, start_couch, stop_process

WARM_DOCS = 5000


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class TopicCounter:
    """Counts distinct topics with ``mosquitto_sub`` (C): a Python paho subscriber tops out at
    about 10,000 QoS 1 messages/s here, below what the pipeline is asked to reach."""

    def __init__(self, port: int, topic: str, qos: int) -> None:
        self.seen: set[str] = set()
        self.received = 0
        self.first_at: float | None = None  # monotonic time of the first message (not the probe)
        self._cond = threading.Condition()
        self._wanted = 1  # distinct topics a waiter waits for
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos), "-F", "%t"],
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        probe = topic.rstrip("#").rstrip("/") + "/__probe__"
        deadline = time.monotonic() + 10
        while probe not in self.seen:  # the subscription is live once a probe comes back
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
            subprocess.run(["mosquitto_pub", "-p", str(port), "-t", probe, "-m", "x"], check=True)
            with self._cond:
                self._cond.wait_for(lambda: probe in self.seen, 0.3)
        with self._cond:
            self.seen.discard(probe)
            self.first_at = None

    def _read(self) -> None:
        """Reads what mosquitto_sub printed in bulk (a lock and a Python loop turn per message
        cost CPU that the machine shares with what is measured) and wakes the waiter only once
        the count it waits for is reached."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        partial = b""
        while chunk := os.read(fd, 1 << 16):
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            if not lines:
                continue
            topics = [line.decode() for line in lines]
            with self._cond:
                if self.first_at is None:
                    self.first_at = time.monotonic()
                self.seen.update(topics)
                self.received += len(topics)
                if len(self.seen) >= self._wanted:
                    self._cond.notify_all()

    def wait_distinct(self, count: int, timeout: float) -> int:
        with self._cond:
            self._wanted = count
            try:
                if not self._cond.wait_for(lambda: len(self.seen) >= count, timeout):
                    raise TimeoutError(f"{len(self.seen)} of {count} distinct topics after {timeout} s")
                return len(self.seen)
            finally:
                self._wanted = 1

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.couch = start_couch(root / "couch")
        self.broker = MqttBroker(port=free_port(), workdir=root / "mosq")
        self.broker.workdir.mkdir()
        self.broker.start()
        self.n = 0
        self.pin_source = False

    def close(self) -> None:
        self.broker.stop()
        stop_process(self.couch.proc)

    def pipeline(self, db: str, *, qos: int, since: str, topic: str) -> Path:
        self.n += 1
        home = self.root / f"home{self.n}"
        setup_pipeline(home, self.couch.url, db, self.broker, topic=topic + "/{key}", qos=qos, since=since)
        return home

    @contextlib.contextmanager
    def source_apart(self) -> Iterator[None]:
        """Run what follows with the source (pouchdb-server, started by :meth:`fresh_source`) on
        core 0 and everything else (curl, EventDesk, mosquitto, the subscriber, this process)
        on the other cores: as if the database ran on a host of its own, so a follower's CPU
        is not taken from the source's."""
        cores = os.sched_getaffinity(0)
        others = cores - {0}
        assert 0 in cores and others, f"needs core 0 and another core, has {sorted(cores)}"
        assert self.broker.proc is not None
        self.pin_source = True
        os.sched_setaffinity(0, others)  # children started from now on inherit it
        os.sched_setaffinity(self.broker.proc.pid, others)
        try:
            yield
        finally:
            self.pin_source = False
            os.sched_setaffinity(0, cores)
            os.sched_setaffinity(self.broker.proc.pid, cores)

    @contextlib.contextmanager
    def fresh_source(self) -> Iterator[None]:
        """Give one live measurement a pouchdb-server of its own, warmed up the same way each
        time (WARM_DOCS followed on a continuous feed, so node's JIT has compiled the paths).

        On one long-lived server the rounds drifted: the same 20,000 documents took its node
        process 3.1 to 6.2 CPU-s from one measurement to the next (its heap and GC history), a
        spread that swamped the difference between the reference and EventDesk."""
        shared = self.couch
        self.couch = start_couch(self.root / "couch")
        if self.pin_source:
            for thread in os.listdir(f"/proc/{self.couch.proc.pid}/task"):  # threads made later inherit
                os.sched_setaffinity(int(thread), {0})
        try:
            self.curl_live(WARM_DOCS)
            yield
        finally:
            stop_process(self.couch.proc)
            self.couch = shared

    def drop(self, db: str) -> None:
        """Delete a database measured: the in-memory server would otherwise carry every earlier
        round's documents in its heap (and slow down) through the later rounds."""
        self.couch.request("DELETE", f"/{db}")

    def docs(self, prefix: str, count: int, size: int = 200) -> list[dict[str, object]]:
        pad = "x" * size
        return [{"_id": f"{prefix}-{i:06d}", "n": i, "region": "Bangalore", "pad": pad} for i in range(count)]

    # -- live -------------------------------------------------------------------------------
    def curl_live(self, count: int) -> float:
        db = self.couch.create_database("curl-live")
        url = f"{self.couch.url}/{db}/_changes?feed=continuous&include_docs=true&since=now&heartbeat=60000"
        proc = subprocess.Popen(
            ["curl", "-sN", "-H", "Accept-Encoding: identity", url], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        time.sleep(0.5)
        start = time.monotonic()
        writer = threading.Thread(target=bulk_insert, args=(self.couch, db, self.docs("c", count)))
        writer.start()
        seen, partial = 0, b""
        fd = proc.stdout.fileno()
        while seen < count and (chunk := os.read(fd, 1 << 16)):  # in bulk, as TopicCounter reads
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            seen += sum(1 for line in lines if line.strip())  # heartbeats are empty lines
        elapsed = time.monotonic() - start
        proc.kill()
        proc.wait()
        proc.stdout.close()
        writer.join()
        self.drop(db)
        return count / elapsed

    def c_pipeline_live(self, count: int) -> float:
        """A second yardstick: C tools republishing the feed, ``curl -sN | grep | mosquitto_pub -l``
        at QoS 1 (each change line one message, no capture), counted by ``mosquitto_sub -C``."""
        db = self.couch.create_database("c-live")
        url = f"{self.couch.url}/{db}/_changes?feed=continuous&include_docs=true&since=now&heartbeat=60000"
        topic = f"bench/c-live{self.n}-{time.monotonic_ns()}"
        port = str(self.broker.port)
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", port, "-t", topic, "-q", "1", "-C", str(count)], stdout=subprocess.DEVNULL
        )
        feed = subprocess.Popen(
            ["curl", "-sN", "-H", "Accept-Encoding: identity", url], stdout=subprocess.PIPE
        )
        lines = subprocess.Popen(
            ["grep", "--line-buffered", "-v", "^$"], stdin=feed.stdout, stdout=subprocess.PIPE
        )
        pub = subprocess.Popen(
            ["mosquitto_pub", "-p", port, "-t", topic, "-q", "1", "-l"], stdin=lines.stdout
        )
        assert feed.stdout is not None and lines.stdout is not None
        feed.stdout.close()  # the pipes stay open in the tools only
        lines.stdout.close()
        try:
            time.sleep(0.5)
            start = time.monotonic()
            bulk_insert(self.couch, db, self.docs("p", count))
            sub.wait(300)
            elapsed = time.monotonic() - start
        finally:
            for proc in (feed, lines, pub, sub):
                proc.kill()
                proc.wait()
        self.drop(db)
        return count / elapsed

    def eventdesk_live(self, count: int, qos: int) -> float:
        db = self.couch.create_database("ed-live")
        topic = f"bench/live{self.n}"
        home = self.pipeline(db, qos=qos, since="now", topic=topic)
        sub = TopicCounter(self.broker.port, topic + "/#", qos)
        run = RunProcess(home_args(home))
        try:
            run.wait_line("model 'accounts': running", 30)
            run.wait_line("route 'out': running", 30)
            start = time.monotonic()
            bulk_insert(self.couch, db, self.docs("l", count))
            sub.wait_distinct(count, 300)
            elapsed = time.monotonic() - start
        finally:
            run.stop()
            sub.close()
        self.drop(db)
        return count / elapsed

    # -- backlog ----------------------------------------------------------------------------
    def backlog_db(self, count: int) -> str:
        db = self.couch.create_database("backlog")
        bulk_insert(self.couch, db, self.docs("b", count))
        return db

    def curl_backlog(self, db: str, count: int) -> float:
        start = time.monotonic()
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", f"{self.couch.url}/{db}/_changes?include_docs=true&since=0"],
            check=True,
            timeout=600,
        )
        return count / (time.monotonic() - start)

    def backlog(self, db: str, count: int) -> tuple[float, float, float]:
        """(docs/s from `run`'s start, docs/s from the first message to the last, peak RSS MB)."""
        topic = f"bench/backlog{self.n}"
        home = self.pipeline(db, qos=1, since="0", topic=topic)
        sub = TopicCounter(self.broker.port, topic + "/#", 1)
        start = time.monotonic()
        run = RunProcess(home_args(home))
        try:
            sub.wait_distinct(count, 900)  # every document counted: a missing one times out
            end = time.monotonic()
            rss = peak_rss_mb(run.proc.pid)
        finally:
            run.stop()
            sub.close()
        assert sub.first_at is not None
        return count / (end - start), count / (end - sub.first_at), rss

    # -- latency ----------------------------------------------------------------------------
    def _paced_writes(self, db: str, rate: float, count: int) -> dict[str, float]:
        """PUT ``count`` documents at ``rate``/s over one keep-alive connection, as an application
        would; each write's time is taken just before its request is sent."""
        conn = http.client.HTTPConnection("127.0.0.1", self.couch.port, timeout=30)
        written: dict[str, float] = {}
        interval = 1 / rate
        start = time.monotonic()
        try:
            for i in range(count):
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                key = f"lat-{i:06d}"
                body = json.dumps({"n": i}).encode()
                written[key] = time.monotonic()
                conn.request("PUT", f"/{db}/{key}", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                assert response.status == 201, f"PUT {key}: {response.status}"
        finally:
            conn.close()
        return written

    def source_latency(self, rate: float, seconds: float) -> list[float]:
        """The reference: write -> the change's line on a raw continuous-feed socket (no parsing,
        no capture, no broker): what the source alone costs."""
        db = self.couch.create_database("srclat")
        sock = socket.create_connection(("127.0.0.1", self.couch.port))
        sock.sendall(
            f"GET /{db}/_changes?feed=continuous&include_docs=true&since=now&heartbeat=5000 HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n".encode()
        )
        arrived: dict[str, float] = {}

        def read() -> None:
            with contextlib.suppress(OSError):
                while data := sock.recv(1 << 16):
                    now = time.monotonic()
                    for part in data.split(b'"id":"')[1:]:
                        arrived.setdefault(part.split(b'"', 1)[0].decode(), now)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)
        count = int(rate * seconds)
        written = self._paced_writes(db, rate, count)
        deadline = time.monotonic() + 30
        while len(arrived) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        sock.close()
        reader.join(5)
        assert len(arrived) >= count, f"the raw feed saw {len(arrived)} of {count} changes"
        return [(arrived[key] - at) * 1000 for key, at in written.items()]

    def latency(self, rate: float, seconds: float) -> list[float]:
        db = self.couch.create_database("latency")
        topic = f"bench/lat{self.n}"
        home = self.pipeline(db, qos=1, since="now", topic=topic)
        sub = Subscriber(port=self.broker.port, topic=topic + "/#", qos=1)
        run = RunProcess(home_args(home))
        count = int(rate * seconds)
        try:
            run.wait_line("model 'accounts': running", 30)
            run.wait_line("route 'out': running", 30)
            written = self._paced_writes(db, rate, count)
            msgs = sub.wait_for(count, 60)
        finally:
            run.stop()
            sub.close()
        return [(m.at - written[m.topic.rsplit("/", 1)[1]]) * 1000 for m in msgs]


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) in the units given."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], ordered[-1]


def live(bench: Bench, rounds: int, count: int, where: str, c_pipeline: bool = False) -> None:
    """Measure the reference and EventDesk (QoS 1 and 0) ``rounds`` times and print the medians;
    with ``c_pipeline``, also the C tools' pipeline (:meth:`Bench.c_pipeline_live`)."""
    med = statistics.median
    # The machine is shared (2 cores, a single-threaded pouchdb-server): each round measures
    # the reference and EventDesk back to back, each on a fresh server warmed up alike; the
    # medians are compared.
    curl, q1, q0, tools = [], [], [], []
    for i in range(rounds):
        # The order alternates, so neither side always runs first.
        if i % 2 == 0:
            with bench.fresh_source():
                curl.append(bench.curl_live(count))
        with bench.fresh_source():
            q1.append(bench.eventdesk_live(count, 1))
        with bench.fresh_source():
            q0.append(bench.eventdesk_live(count, 0))
        if i % 2 == 1:
            with bench.fresh_source():
                curl.append(bench.curl_live(count))
        if c_pipeline:
            with bench.fresh_source():
                tools.append(bench.c_pipeline_live(count))
        print(
            f"  live round{where}: curl {curl[-1]:.0f}, QoS1 {q1[-1]:.0f} ({q1[-1] / curl[-1]:.2f} x), "
            f"QoS0 {q0[-1]:.0f} docs/s" + (f", C tools QoS1 {tools[-1]:.0f} docs/s" if tools else ""),
            flush=True,
        )
    print(
        f"live{where}    {count} docs, median of {rounds}: curl continuous {med(curl):8.0f} docs/s | "
        f"eventdesk QoS1 {med(q1):8.0f} docs/s ({med(q1) / med(curl):.2f} x, target >= 0.93) | "
        f"QoS0 {med(q0):8.0f} docs/s ({med(q0) / med(curl):.2f} x) | median of the rounds' QoS1 "
        f"ratios {med(a / b for a, b in zip(q1, curl, strict=True)):.2f} x"
        + (f" | C tools QoS1 {med(tools):8.0f} docs/s ({med(tools) / med(curl):.2f} x)" if tools else ""),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of live and backlog (medians)")
    parser.add_argument(
        "--c-pipeline",
        action="store_true",
        help="in live, also measure curl | grep | mosquitto_pub -l (QoS 1) as a yardstick",
    )
    parser.add_argument(
        "--source-apart",
        action="store_true",
        help="measure live again with the source on core 0 and everything else on the other cores",
    )
    args = parser.parse_args()
    live_n, backlog_n, lat_s = (2000, 5000, 3) if args.quick else (20_000, 100_000, 20)
    med = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            live(bench, args.rounds, live_n, "", c_pipeline=args.c_pipeline)
            if args.source_apart:
                with bench.source_apart():
                    live(bench, args.rounds, live_n, ", the source on a core of its own")
            src50, src99, _ = percentiles(bench.source_latency(200, lat_s))
            p50, p99, worst = percentiles(bench.latency(200, lat_s))
            print(
                f"latency 200 docs/s for {lat_s} s: p50 {p50:.2f} ms (target <= 5), p99 {p99:.2f} ms "
                f"(target <= 20), max {worst:.2f} ms | the source alone (write -> line on a raw feed): "
                f"p50 {src50:.2f} ms, p99 {src99:.2f} ms",
                flush=True,
            )
            db = bench.backlog_db(backlog_n)
            ref, whole, drain, rss = [], [], [], []
            for _ in range(args.rounds):
                ref.append(bench.curl_backlog(db, backlog_n))
                w, d, r = bench.backlog(db, backlog_n)
                whole.append(w)
                drain.append(d)
                rss.append(r)
                print(
                    f"  backlog round: curl {ref[-1]:.0f}, eventdesk {w:.0f} from start-up, "
                    f"{d:.0f} first to last message, peak RSS {r:.0f} MB",
                    flush=True,
                )
            print(
                f"backlog {backlog_n} docs since 0, median of {args.rounds}: curl feed=normal {med(ref):8.0f} "
                f"docs/s | eventdesk QoS1 {med(whole):8.0f} docs/s counted from `run`'s start "
                f"({med(whole) / med(ref):.2f} x, target >= 0.35), {med(drain):8.0f} docs/s from the first "
                f"message to the last ({med(drain) / med(ref):.2f} x) | peak RSS {max(rss):.0f} MB (target <= 120)",
                flush=True,
            )
        finally:
            bench.close()


if __name__ == "__main__":
    main()
