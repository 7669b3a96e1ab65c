"""Runtime against a real mosquitto: routes publish captured events and stop cleanly."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventdesk.core.capture import CapturedEvent
from eventdesk.core.contracts import State
from eventdesk.core.envelope import Event
from eventdesk.core.errors import ConnectorError
from eventdesk.core.home import Home
from eventdesk.core.runtime import ModelRunner, Runtime
from tests.peers.servers import MqttBroker, Subscriber, free_port


def captured_events(count: int) -> list[Event]:
    return [
        Event(
            datasource="hooks", model="accounts", op="created", key=f"k{i}", rev=None, seq=i, payload={"i": i}
        )
        for i in range(count)
    ]


@pytest.mark.asyncio
async def test_stopping_a_route_waits_for_in_flight_acks_and_records_them(
    isolated_home: Path,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
) -> None:
    home = Home.open(str(isolated_home))
    home.add_datasource("hooks", "webhook", {"port": free_port()})  # never started here
    home.add_model("accounts", "hooks", {})
    home.add_broker("mosq", "mqtt", {"url": f"mqtt://127.0.0.1:{mqtt_broker.port}"})
    home.add_route(
        "out", "accounts", "mosq", {"topic": unique_topic + "/{key}", "format": "payload", "qos": 1}
    )
    sub = await asyncio.to_thread(subscriber, unique_topic + "/#")
    rows = home.capture.append("accounts", captured_events(500), checkpoint=None)
    runtime = Runtime(home.workspace, home.capture)
    await runtime.start_route("out")
    worker = runtime.routes["out"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    # Poll each loop turn: stop while the first batch still awaits its PUBACKs.
    while not worker.inflight and loop.time() < deadline:  # noqa: ASYNC110 - no event marks "sent"
        await asyncio.sleep(0)
    assert worker.inflight, "the route never published"
    await runtime.stop_route("out")
    assert runtime.state_of("route/out").state is State.STOPPED
    assert home.capture.route_position("out") == rows[-1].pos  # every ack was recorded, nothing to resend
    msgs = await asyncio.to_thread(sub.wait_for, 500, 15)
    assert [orjson.loads(m.payload)["i"] for m in msgs] == list(range(500))
    await runtime.aclose()
    home.close()


@pytest.mark.asyncio
async def test_after_a_failed_batch_later_deliveries_fail_and_the_checkpoint_stays(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home.open(str(isolated_home))
    home.add_datasource("hooks", "webhook", {"port": free_port()})  # never started here
    home.add_model("accounts", "hooks", {})
    runtime = Runtime(home.workspace, home.capture)
    runner = ModelRunner(runtime, "accounts")
    real_append = home.capture.append
    calls: list[Any] = []

    def append_failing_once(model: str, events: list[Event], checkpoint: Any) -> list[CapturedEvent]:
        calls.append(checkpoint)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real_append(model, events, checkpoint)

    monkeypatch.setattr(home.capture, "append", append_failing_once)
    events = captured_events(4)
    # Two deliveries pending at once, as a connector makes them: the second queues behind the first.
    first = asyncio.ensure_future(runner.deliver(events[:2], 2))
    second = asyncio.ensure_future(runner.deliver(events[2:], 4))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], sqlite3.OperationalError)
    assert isinstance(results[1], ConnectorError) and "an earlier batch failed" in str(results[1])
    assert calls == [2]  # the second batch never reached capture
    assert home.capture.checkpoint("accounts") is None and home.capture.count() == 0
    await runtime.aclose()
    home.close()
