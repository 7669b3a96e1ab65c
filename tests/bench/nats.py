"""Benchmark of the nats broker kind and of a fleet.

1. Messages/s into a JetStream stream, R1 (one nats-server) and R3 (a three-node cluster on
   loopback), at the default delivery (each batch settles on the stream's PubAcks), through
   EventDesk's NatsPublisher as a route drives it (batches of ROUTE_SEND_BATCH, at most
   ROUTE_BATCH messages outstanding, a Nats-Msg-Id and the envelope headers on each), beside
   nats-py's own ``publish_async`` loop publishing the same subjects, payloads and headers with
   acks, in the same run against the same servers (started by the bench on free ports, stores
   in a temp dir). Issue 15 aims at >= 0.8x.
2. Failover time of a fleet (docs/fleet.md): three ``eventdesk run --fleet`` agents over twelve
   CouchDB models (pouchdb-server) on the R3 cluster; one agent is SIGKILLed and the bench
   times, from the kill, until its models run under other agents' leases, and until a document
   written to each of them right after the kill is in the stream; beside the lease TTL and the
   target (TTL + 2 s).

Run: .venv/bin/python -m tests.bench.nats [--count N] [--rounds R] [--failovers F]
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
import nats.errors
import nats.js.errors
from nats.js.api import StreamConfig

from eventdesk.brokers.nats import SCHEMA, NatsPublisher
from eventdesk.brokers.nats.connection import headers_for
from eventdesk.core.contracts import MessageFields
from eventdesk.core.route_worker import ROUTE_BATCH, ROUTE_SEND_BATCH
from eventdesk.core.workspace import BrokerConfig
from tests.peers.nats_server import NatsCluster, NatsServer

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


async def fresh_stream(url: str, name: str, replicas: int) -> None:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await js.add_stream(
            StreamConfig(name=name, subjects=["ed.>"], num_replicas=replicas, duplicate_window=120)
        )
    finally:
        await nc.close()


async def eventdesk_rate(url: str, count: int, run: int, replicas: int) -> float:
    await fresh_stream(url, "BENCH", replicas)
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


async def nats_py_rate(url: str, count: int, run: int, replicas: int) -> float:
    await fresh_stream(url, "BENCH", replicas)
    messages, fields = workload(count, run)
    nc = await nats.connect(url.split(","))
    js = nc.jetstream(publish_async_max_pending=ROUTE_BATCH)
    try:
        start = time.perf_counter()
        futures = []
        for (subject, payload), f in zip(messages, fields, strict=True):
            futures.append(await js.publish_async(subject, payload, headers=headers_for(f, "BENCH", subject)))
        await js.publish_async_completed()
        for fut in futures:
            fut.result()  # every PubAck, as the route needs
        return count / (time.perf_counter() - start)
    finally:
        await nc.close()


async def rates(url: str, count: int, rounds: int, replicas: int) -> tuple[float, float]:
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(rounds):  # interleaved, so both see the same machine load
        theirs.append(await nats_py_rate(url, count, 2 * r, replicas))
        ours.append(await eventdesk_rate(url, count, 2 * r + 1, replicas))
    nc = await nats.connect(url.split(","))
    try:
        await nc.jetstream().delete_stream("BENCH")  # its subjects are the fleet's next
    finally:
        await nc.close()
    return statistics.median(ours), statistics.median(theirs)


def print_rates(label: str, count: int, rounds: int, ours: float, theirs: float) -> None:
    print(
        f"JetStream {label}, {count} messages of {len(PAYLOAD)} bytes with Nats-Msg-Id and headers, "
        f"median of {rounds}:"
    )
    print(f"  NatsPublisher (PubAck per batch, as a route)   {ours:10.0f} msg/s")
    print(f"  nats-py js.publish_async loop (acks awaited)   {theirs:10.0f} msg/s")
    print(f"  ratio {ours / theirs:.2f}x (target >= 0.8x)")


def failover_times(tmp: Path, cluster: NatsCluster, failovers: int) -> list[tuple[float, float]]:
    """(seconds until the victim's models run elsewhere, seconds until a change written to each
    right after the kill is in the stream), one per SIGKILLed agent."""
    from tests.fleet.harness import STREAM, TTL, Fleet, Writer
    from tests.peers.servers import start_couch, stop_process

    couch = start_couch(tmp)
    fleet = Fleet(cluster, couch, tmp / "fleet")
    (tmp / "fleet").mkdir()
    out: list[tuple[float, float]] = []
    try:
        fleet.setup(12)
        agents = ["a1", "a2", "a3"]
        for agent in agents:
            fleet.start_agent(agent)
        fleet.wait_held(30, balanced=True)
        for i in range(failovers):
            victim = agents[i % len(agents)]
            theirs = sorted(fleet.held_by(victim))
            fleet.kill(victim)
            killed = time.monotonic()
            writer = Writer(couch, {m: fleet.dbs[m] for m in theirs}, per_round=1, prefix=f"f{i}-")
            writer.write_round()  # one new document per model, just after the kill
            fleet.wait_held(TTL + 30, by=set(agents) - {victim})
            held = time.monotonic() - killed
            asyncio.run(wait_published(fleet.read_url, STREAM, {(m, k) for m, k, _ in writer.written}))
            out.append((held, time.monotonic() - killed))
            fleet.start_agent(victim)  # it comes back (same home) and takes its share again
            fleet.wait_held(TTL * 6, balanced=True)
            # A new agent calls a lease expired only a TTL after it first saw its revision:
            # kill the next one once every agent has watched the leases for that long.
            time.sleep(TTL)
    finally:
        for run in fleet.agents.values():
            if run.proc.poll() is None:
                run.stop(20)
        stop_process(couch.proc)
    return out


async def wait_published(url: str, stream: str, changes: set[tuple[str, str]]) -> None:
    """Until the last message on each model's subject is the change written to it."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=5)
    try:
        waiting = set(changes)
        while waiting:
            for model, key in list(waiting):
                with contextlib.suppress(nats.js.errors.NotFoundError, nats.errors.TimeoutError):
                    msg = await js.get_last_msg(stream, f"ed.{model}.created")
                    if (msg.headers or {}).get("EventDesk-Key") == key:
                        waiting.discard((model, key))
            await asyncio.sleep(0.02)
    finally:
        await nc.close()


def main(count: int, rounds: int, failovers: int) -> None:
    from tests.fleet.harness import TTL

    with tempfile.TemporaryDirectory(prefix="eventdesk-bench-nats-") as tmp:
        server = NatsServer(Path(tmp) / "single")
        server.start()
        try:
            r1 = asyncio.run(rates(server.url, count, rounds, 1))
        finally:
            server.stop()
        cluster = NatsCluster(Path(tmp) / "cluster")
        cluster.start()
        try:
            r3 = asyncio.run(rates(cluster.url, count, rounds, 3))
            times = failover_times(Path(tmp), cluster, failovers) if failovers else []
        finally:
            cluster.stop()
    print_rates("R1 (one nats-server)", count, rounds, *r1)
    print_rates("R3 (three-node cluster on loopback)", count, rounds, *r3)
    if times:
        held = statistics.median(t for t, _ in times)
        published = statistics.median(t for _, t in times)
        print(f"Fleet failover after an agent's SIGKILL (3 agents, 12 models, R3), median of {len(times)}:")
        print(
            f"  its models running under other agents' leases   {held:6.2f} s  (each: "
            + ", ".join(f"{t:.2f}" for t, _ in times)
            + ")"
        )
        print(
            f"  a change written at the kill is in the stream   {published:6.2f} s  (each: "
            + ", ".join(f"{t:.2f}" for _, t in times)
            + ")"
        )
        print(f"  lease TTL {TTL:g} s; target <= TTL + 2 s = {TTL + 2:g} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--failovers", type=int, default=3)
    args = parser.parse_args()
    main(args.count, args.rounds, args.failovers)
