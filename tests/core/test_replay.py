"""Replay to a real mosquitto: every event, in order, at the requested pacing (within 10 %)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventdesk.core.capture import Capture
from eventdesk.core.envelope import Event
from eventdesk.core.errors import BrokerError, ConfigError, JobCancelledError
from eventdesk.core.replay import Pace, ReplayProgress, ReplayTarget, replay
from eventdesk.core.scope import EventScope
from eventdesk.core.workspace import BrokerConfig, RouteConfig, Workspace
from tests.peers.servers import MqttBroker, Subscriber, free_port

TOLERANCE = 0.10


def event(i: int, millis: int, model: str = "accounts") -> Event:
    seconds, ms = divmod(millis, 1000)
    minutes, seconds = divmod(seconds, 60)
    return Event(
        datasource="ds",
        model=model,
        op="created",
        key=f"k{i}",
        rev=f"1-{i}",
        seq=i,
        payload={"n": i, "text": 'Zürich, "quoted"\nline'},
        received_at=f"2026-11-29T10:{minutes:02d}:{seconds:02d}.{ms:03d}Z",
    )


def workspace(url: str) -> Workspace:
    ws = Workspace()
    ws.put_broker(BrokerConfig("mosq", "mqtt", {"url": url}))
    return ws


@pytest.fixture
def capture(tmp_path: Path) -> Capture:
    cap = Capture(tmp_path / "c.sqlite3")
    yield cap
    cap.close()


def span(sub: Subscriber, n: int) -> float:
    messages = sub.wait_for(n)
    return messages[-1].at - messages[0].at


@pytest.mark.asyncio
async def test_fixed_rate_delivers_every_event_in_order_at_the_rate(
    capture: Capture, mqtt_broker: MqttBroker, subscriber: Callable[..., Subscriber], unique_topic: str
) -> None:
    n, rate = 60, 40.0
    capture.import_events([event(i, i) for i in range(n)])
    sub = subscriber(f"{unique_topic}/#")
    target = ReplayTarget.for_broker(
        workspace(mqtt_broker.url), "mosq", topic=unique_topic + "/{model}/{key}"
    )
    seen: list[ReplayProgress] = []
    result = await replay(capture, target, pace=Pace.parse("40/s"), progress=seen.append)
    assert result.published == n
    messages = await asyncio.to_thread(sub.wait_for, n)
    assert len(messages) == n
    assert [m.topic for m in messages] == [f"{unique_topic}/accounts/k{i}" for i in range(n)]
    assert [orjson.loads(m.payload)["key"] for m in messages] == [f"k{i}" for i in range(n)]
    expected = (n - 1) / rate
    assert abs(span(sub, n) - expected) <= TOLERANCE * expected
    assert seen[-1].published == n and seen[-1].total == n


@pytest.mark.asyncio
async def test_original_pacing_follows_received_at_gaps(
    capture: Capture, mqtt_broker: MqttBroker, subscriber: Callable[..., Subscriber], unique_topic: str
) -> None:
    # uneven gaps: 10 events 20 ms apart, a 600 ms pause, 10 more 50 ms apart (1.25 s in all)
    times = [i * 20 for i in range(10)] + [180 + 600 + i * 50 for i in range(10)]
    capture.import_events([event(i, t) for i, t in enumerate(times)])
    sub = subscriber(f"{unique_topic}/#")
    target = ReplayTarget.for_broker(
        workspace(mqtt_broker.url), "mosq", topic=unique_topic + "/{key}", fmt="payload"
    )
    await replay(capture, target, pace=Pace.parse("original"))
    messages = await asyncio.to_thread(sub.wait_for, len(times))
    assert [orjson.loads(m.payload)["n"] for m in messages] == list(range(len(times)))
    total = (times[-1] - times[0]) / 1000
    assert abs((messages[-1].at - messages[0].at) - total) <= TOLERANCE * total
    gap = messages[10].at - messages[9].at  # the pause
    assert abs(gap - 0.65) <= TOLERANCE * 0.65 + 0.02


@pytest.mark.asyncio
async def test_fast_replay_of_a_range_with_a_route_format(
    capture: Capture, mqtt_broker: MqttBroker, subscriber: Callable[..., Subscriber], unique_topic: str
) -> None:
    capture.import_events([event(i, i * 1000, ("accounts", "orders")[i % 2]) for i in range(40)])
    ws = workspace(mqtt_broker.url)
    ws.routes["r"] = RouteConfig(
        "r", "orders", "mosq", {"topic": unique_topic + "/{op}/{key}", "format": "seed", "qos": 1}
    )
    sub = subscriber(f"{unique_topic}/#")
    scope = EventScope(
        models=frozenset({"orders"}), since="2026-11-29T10:00:10.000Z", until="2026-11-29T10:00:20.000Z"
    )
    result = await replay(capture, ReplayTarget.for_route(ws, "r"), scope, Pace.parse("fast"))
    expected = [f"k{i}" for i in range(11, 20, 2)]
    assert result.published == len(expected)
    messages = await asyncio.to_thread(sub.wait_for, len(expected))
    assert [m.topic.rsplit("/", 1)[-1] for m in messages] == expected
    assert orjson.loads(messages[0].payload) == {"model": "orders", "message": event(11, 0).payload}


@pytest.mark.asyncio
async def test_cancel_stops_a_replay(capture: Capture, mqtt_broker: MqttBroker, unique_topic: str) -> None:
    capture.import_events([event(i, i * 10) for i in range(200)])
    target = ReplayTarget.for_broker(workspace(mqtt_broker.url), "mosq", topic=unique_topic)
    cancel = threading.Event()

    def progress(p: ReplayProgress) -> None:
        cancel.set()

    with pytest.raises(JobCancelledError):
        await replay(capture, target, pace=Pace.parse("100"), cancel=cancel, progress=progress)


@pytest.mark.asyncio
async def test_an_unreachable_broker_is_a_broker_error(capture: Capture, unique_topic: str) -> None:
    capture.import_events([event(0, 0)])
    target = ReplayTarget.for_broker(workspace(f"mqtt://127.0.0.1:{free_port()}"), "mosq", topic=unique_topic)
    with pytest.raises(BrokerError) as info:
        await replay(capture, target, connect_timeout=0.5)
    assert info.value.obj == "broker 'mosq'"


def test_bad_pace_topic_format_and_qos_name_the_field() -> None:
    ws = workspace("mqtt://127.0.0.1:1883")
    for text, field in (("slow", "pace"), ("0", "pace"), ("-3x", "pace")):
        with pytest.raises(ConfigError) as info:
            Pace.parse(text)
        assert info.value.field == field
    assert Pace.parse("2.5x") == Pace("original", 2.5)
    assert Pace.parse("50/s") == Pace("rate", 50.0)
    for kwargs, field in (
        ({"topic": "a/#"}, "topic"),
        ({"topic": "a/{nope}"}, "topic"),
        ({"topic": "a", "fmt": "xml"}, "format"),
        ({"topic": "a", "qos": 3}, "qos"),
    ):
        with pytest.raises(ConfigError) as info:
            ReplayTarget.for_broker(ws, "mosq", **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
