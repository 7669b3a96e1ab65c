"""Benchmark of the nats broker kind: messages/s into a JetStream stream (R1) at the default
delivery (each batch settles on the stream's PubAcks), through EventDesk's NatsPublisher as a
route drives it (batches of ROUTE_SEND_BATCH, at most ROUTE_BATCH messages outstanding, a
Nats-Msg-Id and the envelope headers on each), beside nats-py's own ``publish_async`` loop
publishing the same subjects, payloads and headers with acks, in the same run against the same
nats-server (started by the bench on a free port, store in a temp dir). Issue 15 aims at >= 0.8x.

R3 streams (a three-node cluster) are not measured yet: that comes with the fleet increment.

Run: .venv/bin/python -m tests.bench.nats [--count N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StreamConfig

from eventdesk.brokers.nats import SCHEMA, NatsPublisher
from eventdesk.brokers.nats.connection import headers_for
from eventdesk.core.contracts import MessageFields
from eventdesk.core.route_worker import ROUTE_BATCH, ROUTE_SEND_BATCH
from eventdesk.core.workspace import BrokerConfig
from tests.peers.nats_server import NatsServer

PAYLOAD = (
    b'{"id":"01J0000000000000000000000","datasource":"couch","model":"accounts","op":"updated",'
    b'"key":"acct-000000","rev":"2-9f8e7d6c5b4a","payload":{"name":"Asha","region":"Bangalore",'
    b'"balance":120,"tags":["a","b","c"]}}'
)


def workload(count: int, run: int) -> tuple[list[tuple[str, bytes]], list[MessageFields]]:
    messages = [(f"ed.accounts.updated.k{i}", PAYLOAD) for i in range(count)]
    fields = [
        MessageFields("couch", "accounts", "updated", f"k{i}", f"{run}-rev", f"id{i}") for i in range(count)
    ]
    return messages, fields


async def fresh_stream(url: str, name: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await js.add_stream(StreamConfig(name=name, subjects=["ed.>"], num_replicas=1, duplicate_window=120))
    finally:
        await nc.close()


async def eventdesk_rate(url: str, count: int, run: int) -> float:
    await fresh_stream(url, "BENCH")
    settings = SCHEMA.validate({"url": url, "stream": "BENCH"}, "broker 'bench'")
    publisher = NatsPublisher(
        config=BrokerConfig(name="bench", kind="nats", settings=settings, secret=None),
        secret=None,
        on_state=lambda c: None,
    )
    await publisher.start()
    await publisher.wait_connected()
    messages, fields = workload(count, run)
    window = ROUTE_BATCH // ROUTE_SEND_BATCH
    try:
        start = time.perf_counter()
        inflight: list[asyncio.Future[None]] = []
        for i in range(0, count, ROUTE_SEND_BATCH):
            if len(inflight) >= window:
                await inflight.pop(0)
            end = i + ROUTE_SEND_BATCH
            inflight.append(publisher.publish_with_fields(messages[i:end], fields[i:end], 1, False))
        for fut in inflight:
            await fut
        return count / (time.perf_counter() - start)
    finally:
        await publisher.close()


async def nats_py_rate(url: str, count: int, run: int) -> float:
    await fresh_stream(url, "BENCH")
    messages, fields = workload(count, run)
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=ROUTE_BATCH)
    try:
        start = time.perf_counter()
        futures = []
        for (subject, payload), f in zip(messages, fields, strict=True):
            futures.append(await js.publish_async(subject, payload, headers=headers_for(f, "BENCH")))
        await js.publish_async_completed()
        for fut in futures:
            fut.result()  # every PubAck, as the route needs
        return count / (time.perf_counter() - start)
    finally:
        await nc.close()


async def main(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="eventdesk-bench-nats-") as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        try:
            ours: list[float] = []
            theirs: list[float] = []
            for r in range(rounds):  # interleaved, so both see the same machine load
                theirs.append(await nats_py_rate(server.url, count, 2 * r))
                ours.append(await eventdesk_rate(server.url, count, 2 * r + 1))
        finally:
            server.stop()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"JetStream R1, {count} messages of {len(PAYLOAD)} bytes with Nats-Msg-Id and headers, median of {rounds}:"
    )
    print(f"  NatsPublisher (PubAck per batch, as a route)   {a:10.0f} msg/s")
    print(f"  nats-py js.publish_async loop (acks awaited)   {b:10.0f} msg/s")
    print(f"  ratio {a / b:.2f}x (target >= 0.8x)")
    print("JetStream R3: not measured (needs a three-node cluster; the fleet increment)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.rounds))
