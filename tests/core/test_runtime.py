"""Runtime against a real mosquitto: routes publish captured events and stop cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventdesk.core.contracts import State
from eventdesk.core.envelope import Event
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
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
