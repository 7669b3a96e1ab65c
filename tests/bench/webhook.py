"""Benchmark of the out-of-the-box parts: the webhook receiver and the built-in MQTT broker.

Prints each figure beside a reference measured in the same run (issue #6):
  webhook  events/s accepted into capture (2xx = committed) with 8 concurrent senders posting one
           event per request from a separate process (aiohttp client), beside the same load
           against a bare aiohttp server that answers 200 without capturing (the ceiling)
  broker   messages/s delivered to one paho subscriber at QoS 0 and 1, published through
           EventDesk's MqttPublisher (as a route does), built-in (amqtt) vs a mosquitto
           started by the bench

Run: .venv/bin/python -m tests.bench.webhook [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from eventdesk.brokers.local import LocalBrokerPublisher
from eventdesk.brokers.mqtt import SCHEMA as MQTT_SCHEMA
from eventdesk.brokers.mqtt import MqttPublisher
from eventdesk.core.contracts import Publisher, State, StateChange
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.core.workspace import BrokerConfig
from tests.peers.servers import MqttBroker, free_port

SENDERS = 8


# -- load generator (runs in its own process) -----------------------------------------------


async def _load(url: str, total: int, concurrency: int) -> dict[str, float]:
    counter = iter(range(total))
    statuses: dict[int, int] = {}

    async def sender(session: aiohttp.ClientSession) -> None:
        for i in counter:
            body = json.dumps({"id": f"acc-{i}", "op": "updated", "balance": i, "region": "Pune"}).encode()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "ok": statuses.get(200, 0),
        "other": sum(n for s, n in statuses.items() if s != 200),
        "s": elapsed,
    }


def run_load(url: str, total: int, concurrency: int = SENDERS) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.webhook", "--load", url, str(total), str(concurrency)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


# -- webhook ------------------------------------------------------------------------------------


async def bench_webhook(root: Path, total: int) -> tuple[float, float, int]:
    home = Home.open(str(root / "home"))
    port = free_port()
    home.add_datasource("hooks", "webhook", {"port": port})
    home.add_model("accounts", "hooks", {})
    runtime = Runtime(home.workspace, home.capture)
    listening = asyncio.Event()
    runtime.on_state(lambda key, c: listening.set() if c.state is State.RUNNING else None)
    await runtime.start()
    await asyncio.wait_for(listening.wait(), 10)
    url = f"http://127.0.0.1:{port}/hooks/accounts"
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, run_load, url, total)
    await runtime.aclose()
    captured = home.capture.count("accounts")
    home.close()
    assert result["other"] == 0, result
    webhook_rate = result["ok"] / result["s"]

    async def ok_handler(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(status=200, text='{"accepted":1}', content_type="application/json")

    runner = web.ServerRunner(web.Server(ok_handler))
    await runner.setup()
    bare_port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", bare_port)
    await site.start()
    bare = await loop.run_in_executor(None, run_load, f"http://127.0.0.1:{bare_port}/x", total)
    await runner.cleanup()
    return webhook_rate, bare["ok"] / bare["s"], captured


# -- brokers --------------------------------------------------------------------------------------


class CountingSubscriber:
    """A paho subscriber counting messages (no per-message bookkeeping beyond a counter)."""

    def __init__(self, port: int, topic: str, qos: int, expected: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.expected = expected
        self.count = 0
        self.done = threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{time.time_ns()}")
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos)
        if not subscribed.wait(10):
            raise TimeoutError("subscriber could not subscribe")

    def _on_message(self, client: object, userdata: object, msg: object) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def publish_rate(publisher: Publisher, port: int, qos: int, total: int) -> float:
    """Messages/s from the first publish until the subscriber has them all."""
    await asyncio.wait_for(publisher.wait_connected(), 15)
    topic = f"bench/{qos}/{time.time_ns()}"
    loop = asyncio.get_running_loop()
    sub = await loop.run_in_executor(None, CountingSubscriber, port, topic, qos, total)
    payload = json.dumps({"model": "accounts", "message": {"id": "acc-1", "balance": 1532.4}}).encode()
    window: set[asyncio.Future[None]] = set()
    start = time.perf_counter()
    for _ in range(total):
        fut = publisher.publish(topic, payload, qos, False)
        window.add(fut)
        if len(window) >= 1000:
            done, window = await asyncio.wait(window, return_when=asyncio.FIRST_COMPLETED)
            for f in done:
                f.result()
    if window:
        await asyncio.gather(*window)
    received = await loop.run_in_executor(None, sub.done.wait, 120)
    elapsed = time.perf_counter() - start
    await loop.run_in_executor(None, sub.close)
    if not received:
        raise RuntimeError(f"subscriber got {sub.count} of {total} at QoS {qos}")
    return total / elapsed


async def bench_brokers(root: Path, total: int) -> dict[tuple[str, int], float]:
    results: dict[tuple[str, int], float] = {}
    states: list[StateChange] = []
    port = free_port()
    local = LocalBrokerPublisher(
        config=BrokerConfig("builtin", "local", {"port": port}), secret=None, on_state=states.append
    )
    await local.start()
    try:
        for qos in (0, 1):
            results[("built-in (amqtt)", qos)] = await publish_rate(local, port, qos, total)
    finally:
        await local.close()
    mosq = MqttBroker(port=free_port(), workdir=root / "mosq")
    mosq.workdir.mkdir()
    mosq.start()
    try:
        cfg = BrokerConfig("mosq", "mqtt", MQTT_SCHEMA.validate({"url": mosq.url}, "bench"))
        pub = MqttPublisher(config=cfg, secret=None, on_state=states.append)
        await pub.start()
        try:
            for qos in (0, 1):
                results[("mosquitto", qos)] = await publish_rate(pub, mosq.port, qos, total)
        finally:
            await pub.close()
    finally:
        mosq.stop()
    return results


async def main(quick: bool) -> None:
    events = 5_000 if quick else 20_000
    messages = 5_000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="eventdesk-bench-") as tmp:
        root = Path(tmp)
        rate, bare, captured = await bench_webhook(root, events)
        print(f"webhook: {events} POSTs (1 event each), {SENDERS} concurrent senders in another process")
        print(f"  EventDesk receiver, 2xx after capture: {rate:9,.0f} events/s  ({captured} in capture)")
        print(f"  bare aiohttp answering 200, no capture: {bare:8,.0f} requests/s")
        print(f"  ratio receiver / bare:                 {rate / bare:9.2f}")
        results = await bench_brokers(root, messages)
        print(f"broker: {messages} messages of 70 bytes through MqttPublisher to one paho subscriber")
        for qos in (0, 1):
            built_in = results[("built-in (amqtt)", qos)]
            mosquitto = results[("mosquitto", qos)]
            print(
                f"  QoS {qos}: built-in (amqtt) {built_in:8,.0f} msg/s   mosquitto {mosquitto:8,.0f} msg/s"
                f"   ratio {built_in / mosquitto:5.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--load", nargs=3, metavar=("URL", "N", "CONCURRENCY"))
    args = parser.parse_args()
    if args.load:
        url, n, c = args.load
        print(json.dumps(asyncio.run(_load(url, int(n), int(c)))))
    else:
        asyncio.run(main(args.quick))
