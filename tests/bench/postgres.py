"""Benchmark of the postgres source kind, each figure beside a reference from the same run:

  backlog  rows/s: a backlog of N changed rows (inserted while ``run`` was stopped) drained by
           ``eventdesk run`` through the capture to a mosquitto subscriber at QoS 1 (counted
           by ``mosquitto_sub``, from ``run``'s start to the last distinct key; the route
           sends the stored envelope as the Cloudant pipeline bench does, ``--format payload``
           makes it send the row alone, which parses each envelope), beside
           ``pg_recvlogical`` reading the same backlog with the same plugin (pgoutput, the same
           publication) into /dev/null (target: at least 0.5x), and beside the MQTT ceiling:
           pre-built QoS 1 packets of the same size through the same broker to the same
           subscriber (tests/bench/mqtt_ceiling.py), which no publisher can pass on this machine
  latency  from commit to subscriber at 200 rows/s, p50 and p99 (target: 5 ms and 20 ms)
  RSS      peak resident memory of ``run`` (VmHWM) over both (target: 120 MB at most)

Run: .venv/bin/python -m tests.bench.postgres [--quick] [--format envelope|payload]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bench.mqtt_ceiling import ceiling_rate
from tests.bench.pipeline import TopicCounter
from tests.cli.harness import RunProcess, home_args, ok
from tests.peers.postgres_server import PostgresServer, running_postgres
from tests.peers.servers import MqttBroker, Subscriber, free_port


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def insert_backlog(pg: PostgresServer, total: int, per_txn: int = 1000) -> None:
    conn = pg.connect()
    conn.autocommit = False
    with conn.cursor() as cur:
        for start in range(0, total, per_txn):
            cur.execute(
                "INSERT INTO bench SELECT g, md5(g::text), g * 1.5, now() FROM generate_series(%s, %s) g",
                (start, min(total, start + per_txn) - 1),
            )
            conn.commit()
    conn.close()


def recvlogical_rate(pg: PostgresServer, slot: str, publication: str, total: int, end_lsn: str) -> float:
    exe = pg.bindir / "pg_recvlogical"
    common = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "postgres", "--slot", slot]
    start = time.perf_counter()
    subprocess.run(
        [str(exe), *common, "--start", "-o", "proto_version=1", "-o", f"publication_names={publication}",
         "--endpos", end_lsn, "-f", "/dev/null", "--no-loop"],
        check=True, timeout=600,
    )  # fmt: skip
    return total / (time.perf_counter() - start)


def main(quick: bool, fmt: str) -> None:
    total = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="eventdesk-bench-pg-") as tmp, running_postgres() as pg:
        root = Path(tmp)
        broker = MqttBroker(port=free_port(), workdir=root / "mosquitto")
        (root / "mosquitto").mkdir()
        broker.start()
        try:
            pg.execute("CREATE TABLE bench (id int PRIMARY KEY, v text, amount numeric, at timestamptz)")
            home = root / "home"
            h = home_args(home)
            ok(*h, "datasource", "add", "pg", "--kind", "postgres", "--url", pg.url, "--sslmode", "disable")
            ok(*h, "model", "add", "bench", "--datasource", "pg")
            ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", broker.url)
            ok(*h, "route", "add", "out", "--model", "bench", "--broker", "mosq", "--topic", "bench/{key}",
               "--format", fmt, "--qos", "1")  # fmt: skip
            run = RunProcess(h)  # creates the slot and the publication
            run.wait_line("model 'bench': running", 60)
            run.stop()
            (publication,) = pg.execute("SELECT pubname FROM pg_publication")[0]  # EventDesk's own
            pg.execute("SELECT pg_create_logical_replication_slot('bench_reference', 'pgoutput')")
            insert_backlog(pg, total)
            (end_lsn,) = pg.execute("SELECT pg_current_wal_insert_lsn()::text")[0]

            # mosquitto_sub counts (a paho subscriber in Python tops out near 10,000 messages/s).
            counter = TopicCounter(broker.port, "bench/#", 1)
            sample = Subscriber(port=broker.port, topic="bench/0", qos=1)  # one envelope's size
            start = time.perf_counter()
            run = RunProcess(h)
            counter.wait_distinct(total, 600)
            drained = total / (time.perf_counter() - start)
            counter.close()
            size = len(sample.wait_for(1, 10)[0].payload)
            sample.close()
            reference = recvlogical_rate(pg, "bench_reference", publication, total, end_lsn)
            ceiling = ceiling_rate(broker.port, total, b"x" * size)
            print(f"backlog  {total} rows: eventdesk run -> mosquitto QoS 1 ({fmt})  {drained:9.0f} rows/s")
            print(f"         pg_recvlogical -> /dev/null         {reference:9.0f} rows/s")
            print(f"         ratio {drained / reference:.2f}x (target >= 0.5x)")
            print(
                f"         MQTT ceiling, {size}-byte QoS 1 packets pre-built, no source {ceiling:9.0f} msg/s"
            )
            print(
                f"         = {ceiling / reference:.2f}x of pg_recvlogical; eventdesk at {drained / ceiling:.2f}x of it"
            )

            # Latency from commit to subscriber at 200 rows/s (a paho subscriber: receive times).
            sub = Subscriber(port=broker.port, topic="bench/#", qos=1)
            conn = pg.connect()
            count = 400 if quick else 2000
            sent_at: dict[str, float] = {}
            with conn.cursor() as cur:
                next_at = time.perf_counter()
                for i in range(count):
                    key = total + i
                    cur.execute("INSERT INTO bench VALUES (%s, 'live', 1, now())", (key,))
                    sent_at[str(key)] = time.time()  # autocommit: the row is committed here
                    next_at += 1 / 200
                    time.sleep(max(0.0, next_at - time.perf_counter()))
            conn.close()
            messages = sub.wait_for(count, 120)
            latencies = sorted(
                (m.wall - sent_at[m.topic.rsplit("/", 1)[1]]) * 1000
                for m in messages
                if m.topic.rsplit("/", 1)[1] in sent_at
            )
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"latency  200 rows/s, {count} rows: p50 {p50:.1f} ms, p99 {p99:.1f} ms (targets 5 / 20 ms)"
            )
            rss = peak_rss_mb(run.proc.pid)
            print(f"RSS      peak of run: {rss:.0f} MB (target <= 120 MB)")
            sub.close()
            run.stop()
            print(json.dumps({"backlog_rows_s": round(drained), "recvlogical_rows_s": round(reference),
                              "ceiling_msg_s": round(ceiling),
                              "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "rss_mb": round(rss)}))  # fmt: skip
        finally:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 rows instead of 100,000")
    parser.add_argument(
        "--format", default="envelope", choices=("envelope", "payload"), help="the route's payload format"
    )
    args = parser.parse_args()
    main(args.quick, args.format)
