"""Runtime against a real mosquitto: routes publish captured events and stop cleanly."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventdesk.core import route_poison, route_worker
from eventdesk.core.broker_link import BrokerLink
from eventdesk.core.capture import Appended
from eventdesk.core.contracts import Publisher, State
from eventdesk.core.envelope import Event
from eventdesk.core.errors import (
    BrokerDisconnectedError,
    BrokerError,
    BrokerNoAckError,
    ConnectorError,
    PoisonError,
)
from eventdesk.core.home import Home
from eventdesk.core.model_runner import ModelRunner
from eventdesk.core.route_worker import RouteWorker
from eventdesk.core.runtime_hub import RuntimeHub
from eventdesk.core.supervisor import Supervisor
from eventdesk.core.workspace import ROUTE_SCHEMA, BrokerConfig
from tests.peers.servers import MqttBroker, Subscriber, free_port


def captured_events(count: int) -> list[Event]:
    return [
        Event(
            datasource="hooks", model="accounts", op="created", key=f"k{i}", rev=None, seq=i, payload={"i": i}
        )
        for i in range(count)
    ]


def spy_on(
    monkeypatch: pytest.MonkeyPatch, obj: object, name: str, note: Callable[[tuple[Any, ...], Any], Any]
) -> list[Any]:
    """Wrap ``obj.name``; the list returned gets ``note(args, result)`` for each call."""
    notes: list[Any] = []
    real = getattr(obj, name)

    def wrapper(*args: Any) -> Any:
        result = real(*args)
        notes.append(note(args, result))
        return result

    monkeypatch.setattr(obj, name, wrapper)
    return notes


def fake_link(hub: RuntimeHub, publisher: Publisher) -> BrokerLink:
    """A broker link whose publisher is ``publisher``, already started (a route acquires it)."""
    link = BrokerLink(hub, "mosq", {})
    link.publisher = publisher
    link.started = True
    return link


def routed_home(path: Path, broker: MqttBroker, topic: str) -> Home:
    """Model ``accounts`` (of a webhook datasource never started) routed as ``out`` to ``broker``
    under ``topic``/{key}, payload format, QoS 1."""
    home = Home.open(str(path))
    home.add_datasource("hooks", "webhook", {"port": free_port()})
    home.add_model("accounts", "hooks", {})
    home.add_broker("mosq", "mqtt", {"url": f"mqtt://127.0.0.1:{broker.port}"})
    home.add_route("out", "accounts", "mosq", {"topic": topic + "/{key}", "format": "payload", "qos": 1})
    return home


@pytest.mark.asyncio
async def test_stopping_a_route_waits_for_in_flight_acks_and_records_them(
    isolated_home: Path,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
) -> None:
    home = routed_home(isolated_home, mqtt_broker, unique_topic)
    sub = await asyncio.to_thread(subscriber, unique_topic + "/#")
    rows = home.capture.append("accounts", captured_events(500), checkpoint=None)
    runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
    await runtime.start_route("out")
    worker = runtime.routes["out"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    # Poll each loop turn: stop while the first batch still awaits its PUBACKs.
    while not worker.inflight and loop.time() < deadline:  # noqa: ASYNC110 - no event marks "sent"
        await asyncio.sleep(0)
    assert worker.inflight, "the route never published"
    await runtime.stop_route("out")
    assert runtime.hub.state_of("route/out").state is State.STOPPED
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
    runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
    runner = ModelRunner(runtime.hub, "accounts", runtime.appended)
    real_append = home.capture.append_rows
    calls: list[Any] = []

    def append_failing_once(model: str, events: list[Event], checkpoint: Any) -> Appended:
        calls.append(checkpoint)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real_append(model, events, checkpoint)

    monkeypatch.setattr(home.capture, "append_rows", append_failing_once)
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


@pytest.mark.asyncio
async def test_a_route_that_keeps_up_publishes_new_batches_without_reading_capture(
    isolated_home: Path,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = routed_home(isolated_home, mqtt_broker, unique_topic)
    sub = await asyncio.to_thread(subscriber, unique_topic + "/#")
    reads = spy_on(monkeypatch, home.capture, "read_route_rows", lambda _args, rows: len(rows))
    runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
    runner = ModelRunner(runtime.hub, "accounts", runtime.appended)
    events = captured_events(40)
    await runtime.start_route("out")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not reads and loop.time() < deadline:  # noqa: ASYNC110 - its first read of capture (empty)
        await asyncio.sleep(0.01)
    assert reads == [0]
    for i in range(0, 20, 5):  # the live path: each batch goes from the commit to the broker
        await runner.deliver(events[i : i + 5], i + 4)
        await asyncio.to_thread(sub.wait_for, i + 5, 15)
    assert sum(reads) == 0, f"the route read capture for batches it was handed: {reads}"
    # A gap: events stored without the route hearing of them (another writer). The next batch
    # it hears of does not follow what it kept, so it reads capture and misses nothing.
    await asyncio.to_thread(home.capture.append, "accounts", events[20:30], 29)
    await runner.deliver(events[30:], 39)
    msgs = await asyncio.to_thread(sub.wait_for, 40, 15)
    assert [orjson.loads(m.payload)["i"] for m in msgs] == list(range(40))
    assert sum(reads) == 20
    await runtime.aclose()
    home.close()


@pytest.mark.asyncio
async def test_a_route_records_its_position_every_few_hundred_events_not_per_batch(
    isolated_home: Path,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = routed_home(isolated_home, mqtt_broker, unique_topic)
    sub = await asyncio.to_thread(subscriber, unique_topic + "/#")
    saves = spy_on(monkeypatch, home.capture, "set_route_position", lambda args, _: args[1])
    monkeypatch.setattr(route_worker, "ROUTE_SAVE_S", 60.0)  # only the count triggers a save
    runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
    runner = ModelRunner(runtime.hub, "accounts", runtime.appended)
    events = captured_events(600)
    await runtime.start_route("out")
    loop = asyncio.get_running_loop()
    route = runtime.routes["out"]
    for i in range(0, 600, 50):  # 12 batches, each acknowledged before the next is captured...
        await runner.deliver(events[i : i + 50], i + 49)
        deadline = loop.time() + 15
        while route.position < i + 50 and loop.time() < deadline:  # noqa: ASYNC110 - acks arrive on the loop
            await asyncio.sleep(0.005)
    await asyncio.to_thread(sub.wait_for, 600, 15)
    deadline = loop.time() + 15
    while len(saves) < 2 and loop.time() < deadline:  # noqa: ASYNC110 - saves run on the capture thread
        await asyncio.sleep(0.01)
    # ...recorded twice: each time 250 or more events were acknowledged since the last save.
    assert len(saves) == 2 and 250 <= saves[0] < 300 and 500 <= saves[1] < 550, saves
    assert route.position == 600
    await runtime.aclose()  # stopping records the rest
    assert saves[2:] == [600]
    assert home.capture.route_position("out") == 600
    home.close()


@pytest.mark.asyncio
async def test_a_route_records_a_lull_s_position_soon_after_its_acknowledgement(
    isolated_home: Path,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
) -> None:
    home = routed_home(isolated_home, mqtt_broker, unique_topic)
    sub = await asyncio.to_thread(subscriber, unique_topic + "/#")
    runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
    runner = ModelRunner(runtime.hub, "accounts", runtime.appended)
    await runtime.start_route("out")
    await runner.deliver(captured_events(5), 4)
    await asyncio.to_thread(sub.wait_for, 5, 15)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    # Fewer than ROUTE_SAVE_EVERY events: recorded ROUTE_SAVE_S after the acknowledgement,
    # while the route keeps running (so `status` in another process sees no backlog).
    while home.capture.route_position("out") != 5 and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert home.capture.route_position("out") == 5
    assert runtime.routes["out"].task is not None and not runtime.routes["out"].task.done()
    await runtime.aclose()
    home.close()


class RefusingPublisher(Publisher):
    """A broker stand-in (pure logic: the route's handling of refusals): it refuses the messages
    to ``forbidden`` for good and those to ``busy`` for now, and takes the rest."""

    kind = "refusing"
    schema = ROUTE_SCHEMA  # unused

    def __init__(self, forbidden: str, busy: str) -> None:
        super().__init__(config=BrokerConfig("fake", "mqtt", {}), secret=None, on_state=lambda change: None)
        self.forbidden, self.busy = forbidden, busy
        self.taken: list[str] = []
        self.refusals: list[str] = []

    @staticmethod
    def validate_topic(topic: str) -> str | None:
        return None

    async def start(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True

    async def wait_connected(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        return self.publish_many([(topic, payload)], qos, retain)

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for topic, _ in messages:
            if topic in (self.forbidden, self.busy):
                self.refusals.append(topic)
                refusal = "not authorized" if topic == self.forbidden else "quota exceeded"
                future.set_exception(
                    PoisonError(refusal, obj="broker 'fake'", field="topic")
                    if topic == self.forbidden
                    else BrokerError(refusal, obj="broker 'fake'")
                )
                return future
        self.taken += [topic for topic, _ in messages]
        future.set_result(None)
        return future

    async def close(self, timeout: float = 2.0) -> None:
        pass

    @classmethod
    async def test_connection(cls, config: BrokerConfig, secret: str | None) -> str:
        return "fake"


@pytest.mark.asyncio
async def test_a_refused_message_in_a_batch_is_found_and_quarantined_and_the_rest_goes_on(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(route_poison, "REFUSAL_PAUSE_S", 0.01)
    home = Home.open(str(isolated_home))
    home.add_datasource("hooks", "webhook", {"port": free_port()})  # never started here
    home.add_model("accounts", "hooks", {})
    home.add_broker("mosq", "mqtt", {"url": "mqtt://127.0.0.1:1"})  # never used: the route gets the fake
    home.add_route("out", "accounts", "mosq", {"topic": "t/{key}", "qos": 1})
    home.capture.append("accounts", captured_events(10), checkpoint=None)
    runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
    seen: list[tuple[str, int, str, str]] = []
    runtime.hub.quarantine_listeners.add(lambda *entry: seen.append(entry))
    fake = RefusingPublisher(forbidden="t/k3", busy="t/k6")
    worker = RouteWorker(runtime.hub, home.workspace.route("out"), lambda _name: fake_link(runtime.hub, fake))
    worker.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while worker.position < 10 and loop.time() < deadline:  # noqa: ASYNC110 - no event marks progress
        await asyncio.sleep(0.01)
    await worker.stop(drain=0)
    assert worker.position == 10
    # The batch was refused: sent again one at a time, the permanent refusal quarantined at
    # once, the other after POISON_REFUSALS tries; every other message went through once.
    assert fake.refusals == ["t/k3", "t/k3", "t/k6", "t/k6", "t/k6"]
    assert fake.taken == [f"t/k{i}" for i in range(10) if i not in (3, 6)]
    assert [(route, pos, field) for route, pos, field, _ in seen] == [
        ("out", 4, "topic"),
        ("out", 7, "message"),
    ]
    await asyncio.to_thread(runtime.hub.executor.submit(lambda: None).result)  # the entries are written
    entries = home.capture.quarantine_entries("out")
    assert [(e.key, e.field, e.state) for e in entries] == [
        ("k3", "topic", "held"),
        ("k6", "message", "held"),
    ]
    assert entries[0].reason == "field 'topic': not authorized"
    assert entries[1].reason == "field 'message': refused 3 times: quota exceeded"
    await runtime.aclose()
    home.close()


class DroppingPublisher(RefusingPublisher):
    """A broker stand-in (pure logic: the route's poison search) whose connection drops, failing
    everything in flight, each time a message to ``poison`` is sent, or each ``every``-th send."""

    def __init__(self, poison: str = "", every: int = 0) -> None:
        super().__init__(forbidden="", busy="")
        self.poison, self.every = poison, every
        self.sends = self.drops = 0
        self.pending: list[asyncio.Future[None]] = []
        self.up = asyncio.Event()
        self.up.set()

    @property
    def connected(self) -> bool:
        return self.up.is_set()

    async def wait_connected(self) -> None:
        await self.up.wait()

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.sends += 1
        topics = [topic for topic, _ in messages]
        self.pending.append(future)
        if self.poison in topics or (self.every and self.sends % self.every == 0):
            loop.call_soon(self._drop)
        else:
            loop.call_soon(self._ack, future, topics)
        return future

    def _ack(self, future: asyncio.Future[None], topics: list[str]) -> None:
        if not future.done():
            self.taken += topics
            future.set_result(None)

    def _drop(self) -> None:
        self.drops += 1
        self.up.clear()
        for future in self.pending:
            if not future.done():
                future.set_exception(BrokerDisconnectedError("the connection dropped"))
        self.pending.clear()
        asyncio.get_running_loop().call_later(0.005, self.up.set)


class UnansweredPublisher(DroppingPublisher):
    """A broker stand-in (pure logic: the route's handling of a broker that stays connected but
    does not acknowledge, as a JetStream stream electing its leader): its first ``silent``
    sends fail with BrokerNoAckError, the rest are acknowledged; it notes each send's size."""

    def __init__(self, silent: int) -> None:
        super().__init__()
        self.silent = silent
        self.sizes: list[int] = []

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
    ) -> asyncio.Future[None]:
        self.sizes.append(len(messages))
        if len(self.sizes) > self.silent:
            return super().publish_many(messages, qos, retain)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(BrokerNoAckError("no PubAck from the stream within 15 s"))
        return future


async def _publish_all(isolated_home: Path, publisher: Publisher, count: int) -> tuple[Home, RouteWorker]:
    """Route ``count`` captured events through ``publisher`` until the route is past them all."""
    home = Home.open(str(isolated_home))
    home.add_datasource("hooks", "webhook", {"port": free_port()})  # never started here
    home.add_model("accounts", "hooks", {})
    home.add_broker("mosq", "mqtt", {"url": "mqtt://127.0.0.1:1"})  # never used: the route gets the fake
    home.add_route("out", "accounts", "mosq", {"topic": "t/{key}", "qos": 1})
    home.capture.append("accounts", captured_events(count), checkpoint=None)
    runtime = Supervisor(RuntimeHub(home.workspace, home.capture))
    worker = RouteWorker(
        runtime.hub, home.workspace.route("out"), lambda _name: fake_link(runtime.hub, publisher)
    )
    worker.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while worker.position < count and loop.time() < deadline:  # noqa: ASYNC110 - no event marks progress
        await asyncio.sleep(0.01)
    await worker.stop(drain=0)
    await runtime.aclose()  # the capture thread wrote what the route submitted
    return home, worker


@pytest.mark.asyncio
async def test_a_message_the_connection_drops_on_each_time_is_singled_out_and_quarantined(
    isolated_home: Path,
) -> None:
    fake = DroppingPublisher(poison="t/k5")
    home, worker = await _publish_all(isolated_home, fake, 10)
    assert worker.position == 10
    # Two drops with the same first unacknowledged event, then one event at a time: the
    # poison dropped the connection three times in a row, alone.
    assert fake.drops == route_poison.ISOLATE_AFTER_DROPS + route_poison.POISON_DROPS
    assert sorted(set(fake.taken)) == sorted(f"t/k{i}" for i in range(10) if i != 5)
    entries = home.capture.quarantine_entries("out")
    assert [(e.key, e.field, e.attempts) for e in entries] == [("k5", "message", 1)]
    assert "closed the connection each time this message was sent (3 times in a row)" in entries[0].reason
    home.close()


@pytest.mark.asyncio
async def test_connection_drops_that_follow_no_message_quarantine_nothing(isolated_home: Path) -> None:
    fake = DroppingPublisher(every=3)  # drops whatever is being sent: a broker restarting often
    home, worker = await _publish_all(isolated_home, fake, 1500)
    assert worker.position == 1500
    assert fake.drops > 10
    assert set(fake.taken) == {f"t/k{i}" for i in range(1500)}
    assert home.capture.quarantine_entries("out") == []
    home.close()


@pytest.mark.asyncio
async def test_acknowledgements_that_do_not_come_resend_in_batches_never_one_by_one(
    isolated_home: Path,
) -> None:
    # Three rounds of unacknowledged batches at the same position (a long leader election):
    # each is sent again whole; none is taken for a drop, so the route never sends one event
    # at a time (which also holds back every other route of the broker).
    fake = UnansweredPublisher(silent=30)
    home, worker = await _publish_all(isolated_home, fake, 1500)
    assert worker.position == 1500
    assert set(fake.taken) == {f"t/k{i}" for i in range(1500)}
    assert min(fake.sizes) > 1, fake.sizes
    assert home.capture.quarantine_entries("out") == []
    home.close()
