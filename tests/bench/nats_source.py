"""Benchmark of the nats source kind, its figure beside a reference from the same run:

  backlog  messages/s: a JetStream stream of N messages (JSON, ~200 bytes) drained with
           ``--since 0`` by ``eventdesk run`` into the capture (from the model's "running" line
           to the last message committed), beside a plain nats-py loop over a pull consumer of
           its own on the same stream, same batch size, acking each batch (ack policy all) and
           parsing each payload with orjson, storing nothing (target: at least 0.3x)

Run: .venv/bin/python -m tests.bench.nats_source [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import nats
import nats.js.api
import orjson

from tests.cli.harness import RunProcess, home_args, ok
from tests.peers.nats_server import running_nats

BATCH = 1000


async def fill(url: str, total: int) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="BENCH", subjects=["bench.>"])
        for i in range(total):
            body = orjson.dumps({"id": f"order-{i:08d}", "total": i * 1.5, "items": [1, 2, 3], "region": "eu-west",
                                 "note": "x" * 100})  # fmt: skip
            await nc.publish(f"bench.{i % 16}", body)
            if i % 5000 == 4999:
                await nc.flush()
        await nc.flush()
        for _ in range(600):  # the stream stores what was flushed within moments
            if (await js.stream_info("BENCH")).state.messages >= total:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def reference_rate(url: str, total: int) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = nats.js.api.ConsumerConfig(durable_name="reference", ack_policy=nats.js.api.AckPolicy.ALL)
        await js.add_consumer("BENCH", config)
        sub = await js.pull_subscribe_bind(durable="reference", stream="BENCH")
        seen = 0
        start = time.perf_counter()
        while seen < total:
            msgs = await sub.fetch(BATCH, timeout=5)
            for m in msgs:
                orjson.loads(m.data)
            await msgs[-1].ack()
            seen += len(msgs)
        return total / (time.perf_counter() - start)
    finally:
        await nc.close()


def captured(home: Path) -> int:
    con = sqlite3.connect(home / "capture.sqlite3")
    try:
        return int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        con.close()


def main(quick: bool) -> None:
    total = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="eventdesk-bench-nats-src-") as tmp:
        root = Path(tmp)
        for server in running_nats(root / "nats"):
            asyncio.run(fill(server.url, total))
            home = root / "home"
            h = home_args(home)
            ok(*h, "datasource", "add", "nd", "--kind", "nats", "--url", server.url)
            ok(*h, "model", "add", "bench", "--datasource", "nd", "--stream", "BENCH", "--since", "0",
               "--batch-size", str(BATCH))  # fmt: skip
            run = RunProcess(h)
            try:
                run.wait_line("model 'bench': running", 60)
                start = time.perf_counter()
                while captured(home) < total:
                    time.sleep(0.01)
                drained = total / (time.perf_counter() - start)
            finally:
                run.stop()
            reference = asyncio.run(reference_rate(server.url, total))
            print(f"backlog  {total} messages: eventdesk run -> capture      {drained:9.0f} messages/s")
            print(f"         nats-py pull loop (fetch, parse, ack)  {reference:9.0f} messages/s")
            print(f"         ratio {drained / reference:.2f}x (target >= 0.3x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 messages instead of 100,000")
    main(parser.parse_args().quick)
