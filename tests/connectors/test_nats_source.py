"""The nats source kind against a real nats-server (fixture on a free port): a stream's messages
captured through the real Runtime with headers, non-JSON payloads and JMESPath rules; resuming
after a stop with nothing twice and the consumer's ack floor at the checkpoint; a core NATS
subject live; named errors (missing stream, bad password never echoed, no permission)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
import pytest_asyncio

from eventdesk.connectors.nats.errors import stream_error
from eventdesk.connectors.nats.settings import consumer_name
from eventdesk.core import json_codec
from eventdesk.core.contracts import State
from eventdesk.core.errors import ConfigError
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture


class Source:
    """A home with a ``nats`` datasource and one model, run by the real :class:`Runtime`."""

    def __init__(
        self,
        home_dir: Path,
        url: str,
        secret: str | None = None,
        login: dict[str, Any] | None = None,
        **model: Any,
    ) -> None:
        self.home = Home.open(str(home_dir))
        ds = {"url": url} | ({"username": "ed"} if secret else {}) | (login or {})
        self.home.add_datasource("nd", "nats", ds, secret=secret)
        self.home.add_model("m", "nd", model)
        self.runtime = Runtime(self.home.workspace, self.home.capture)

    async def wait_state(self, state: State, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            change = self.runtime.state_of("model/m")
            if change.state is state:
                return change.detail or ""
            if change.state is State.ERROR:
                raise AssertionError(f"model failed: {change.detail}")
            await asyncio.sleep(0.02)
        raise AssertionError(f"model not {state} after {timeout} s: {self.runtime.state_of('model/m')}")

    async def wait_error(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            change = self.runtime.state_of("model/m")
            if change.state is State.ERROR:
                return change.detail or ""
            await asyncio.sleep(0.02)
        raise AssertionError(f"no error after {timeout} s: {self.runtime.state_of('model/m')}")

    async def first_error(self) -> str:
        """Start the model; the detail of the error it stops with (the source closed either way)."""
        try:
            await self.runtime.start_model("m")
            return await self.wait_error()
        finally:
            await self.close()

    def events(self) -> list[dict[str, Any]]:
        return [json_codec.loads(raw) for _, raw in self.home.capture.read_after("m", 0, 10**9)]

    async def wait_events(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while self.home.capture.count("m") < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.home.capture.count('m')} of {count} events after {timeout} s")
            await asyncio.sleep(0.02)
        return self.events()

    @property
    def consumer(self) -> str:
        return consumer_name(self.home.workspace.workspace_id, "nd", "m")

    async def close(self) -> None:
        await self.runtime.aclose()
        self.home.close()


@pytest_asyncio.fixture
async def js_stream(nats_server: NatsServer) -> AsyncIterator[Any]:  # noqa: F811
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    yield js
    await nc.close()


@pytest.mark.asyncio
async def test_messages_become_events(tmp_path: Path, nats_server: NatsServer, js_stream: Any) -> None:  # noqa: F811
    await js_stream.publish("orders.new", b'{"id": "o-1", "total": 12.50, "kind": "u"}')
    await js_stream.publish(
        "orders.new",
        b'{"x": 1}',
        headers={"EventDesk-Key": "a%20b.c", "EventDesk-Op": "deleted", "EventDesk-Rev": "3-x"},
    )
    await js_stream.publish("orders.text", b"plain text, not JSON")
    await js_stream.publish("orders.bin", b"\xff\x00\xfe")
    await js_stream.publish("orders.new", b'{"kind": "weird"}')
    await js_stream.publish("orders.x.y", b'{"id": "skip"}')  # not on the filter subject
    await js_stream.publish("orders.text", b"")
    src = Source(tmp_path / "home", nats_server.url, stream="ORDERS", subject="orders.*", since="0",
                 key_path="id", op_path="kind")  # fmt: skip
    try:
        await src.runtime.start_model("m")
        detail = await src.wait_state(State.RUNNING)
        assert f"consumer {src.consumer}" in detail and "stream ORDERS (orders.*)" in detail
        events = await src.wait_events(6)
    finally:
        await src.close()
    first, headed, text, binary, weird, other = events[:6]
    assert first["payload"] == {"id": "o-1", "total": 12.50, "kind": "u"}
    assert (first["key"], first["op"], first["rev"], first["seq"]) == ("o-1", "updated", "1", 1)
    assert first["source"] == {"connector": "nats", "subject": "orders.new", "encoding": "json",
                               "stream": "ORDERS", "stream_seq": 1}  # fmt: skip
    assert (headed["key"], headed["op"], headed["rev"], headed["source"]["rev"]) == (
        "a b.c",
        "deleted",
        "2",
        "3-x",
    )
    assert (text["payload"], text["key"], text["source"]["encoding"]) == (
        "plain text, not JSON",
        "orders.text",
        "text",
    )
    assert binary["payload"] == {"base64": "/wD+"} and binary["source"]["encoding"] == "base64"
    assert (weird["op"], weird["key"], weird["source"]["op"]) == ("created", "orders.new", "weird")
    assert other["payload"] == "" and other["seq"] == 7 and len(events) == 6


@pytest.mark.asyncio
async def test_resume_captures_once_and_acks_to_the_checkpoint(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    js_stream: Any,
) -> None:
    for i in range(300):
        await js_stream.publish("orders.new", json_codec.dumps({"n": i}))
    src = Source(tmp_path / "home", nats_server.url, stream="ORDERS", since="0", batch_size=50)
    try:
        await src.runtime.start_model("m")
        await src.wait_events(300)
        await src.runtime.stop_model("m")
        for i in range(300, 500):
            await js_stream.publish("orders.new", json_codec.dumps({"n": i}))
        await src.runtime.start_model("m")
        events = await src.wait_events(500)
        await asyncio.sleep(0.3)
        info = await js_stream.consumer_info("ORDERS", src.consumer)
        checkpoint = src.home.capture.checkpoint("m")
    finally:
        await src.close()
    assert [e["payload"]["n"] for e in events] == list(range(500))
    assert checkpoint == 500 and info.ack_floor.stream_seq == 500 and not info.num_ack_pending


@pytest.mark.asyncio
async def test_distinct_messages_with_the_same_key_and_rev_headers_are_all_captured(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    js_stream: Any,
) -> None:
    # The same change published three times (as EventDesk's nats broker does beyond the stream's
    # duplicate window, or two routes of one model into one stream): three stream messages.
    headers = {"EventDesk-Key": "doc-1", "EventDesk-Op": "updated", "EventDesk-Rev": "2-b"}
    for fmt in ("envelope", "payload", "envelope"):
        await js_stream.publish("orders.new", json_codec.dumps({"format": fmt}), headers=headers)
    await js_stream.publish("orders.new", b'{"last": true}')
    src = Source(tmp_path / "home", nats_server.url, stream="ORDERS", since="0")
    try:
        await src.runtime.start_model("m")
        events = await src.wait_events(4)
        await src.runtime.stop_model("m")
        await src.runtime.start_model("m")  # resumed: nothing read twice
        await src.wait_state(State.RUNNING)
        await asyncio.sleep(0.3)
        events = src.events()
    finally:
        await src.close()
    assert [(e["key"], e["rev"], e["source"].get("rev"), e["seq"]) for e in events] == [
        ("doc-1", "1", "2-b", 1),
        ("doc-1", "2", "2-b", 2),
        ("doc-1", "3", "2-b", 3),
        ("orders.new", "4", None, 4),
    ]


@pytest.mark.asyncio
async def test_a_consumer_behind_the_checkpoint_is_made_again(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    js_stream: Any,
) -> None:
    """A run killed after a commit and before its ack: the consumer's ack floor is behind the
    capture; the next run starts after the checkpoint, not at the ack floor."""
    for i in range(20):
        await js_stream.publish("orders.new", json_codec.dumps({"n": i}))
    src = Source(tmp_path / "home", nats_server.url, stream="ORDERS", since="0")
    try:
        await src.runtime.start_model("m")
        await src.wait_events(20)
        await src.runtime.stop_model("m")
        src.home.capture.append_rows("m", [], 25)  # as if 21-25 were captured and never acked
        for i in range(20, 30):
            await js_stream.publish("orders.new", json_codec.dumps({"n": i}))
        await src.runtime.start_model("m")
        events = await src.wait_events(25)
        await asyncio.sleep(0.3)
        info = await js_stream.consumer_info("ORDERS", src.consumer)
    finally:
        await src.close()
    assert [e["payload"]["n"] for e in events] == [*range(20), *range(25, 30)]
    assert info.ack_floor.stream_seq == 30


@pytest.mark.asyncio
async def test_a_server_restart_mid_stream_is_retried_without_loss(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    for i in range(3000):
        await nc.publish("orders.new", json_codec.dumps({"n": i}))
    await nc.flush()
    await nc.close()
    src = Source(tmp_path / "home", nats_server.url, stream="ORDERS", since="0", batch_size=100)
    seen: list[State] = []
    src.runtime.on_state(lambda key, change: seen.append(change.state))
    try:
        await src.runtime.start_model("m")
        await src.wait_events(300)
        await asyncio.to_thread(nats_server.restart)  # same port, same store
        events = await src.wait_events(3000, timeout=30)
    finally:
        await src.close()
    assert [e["seq"] for e in events] == list(range(1, 3001))  # none lost, none twice, in order
    assert State.RETRYING in seen and seen.count(State.RUNNING) >= 2  # it did lose the server


@pytest.mark.asyncio
async def test_core_subject_live(tmp_path: Path, nats_server: NatsServer) -> None:  # noqa: F811
    src = Source(tmp_path / "home", nats_server.url, core_subject="live.>")
    nc = await nats.connect(nats_server.url)
    try:
        await src.runtime.start_model("m")
        assert "live only" in await src.wait_state(State.RUNNING)
        for i in range(5):
            await nc.publish(f"live.{i}", json_codec.dumps({"i": i}), headers={"EventDesk-Key": f"k{i}"})
        events = await src.wait_events(5)
    finally:
        await nc.close()
        await src.close()
    assert [(e["key"], e["payload"], e["seq"], e["rev"]) for e in events] == [
        (f"k{i}", {"i": i}, None, None) for i in range(5)
    ]


@pytest.mark.asyncio
async def test_an_ephemeral_consumer_follows_the_stream_live_and_leaves_nothing(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    js_stream: Any,
) -> None:
    for i in range(5):  # before the run: not shown (live from its start)
        await js_stream.publish("orders.old", json_codec.dumps({"n": i}))
    src = Source(tmp_path / "home", nats_server.url, stream="ORDERS", subject="orders.*", durable=False)
    assert src.home.removal("model", "m").held == ()  # nothing for remove --drop-slot
    try:
        await src.runtime.start_model("m")
        assert "ephemeral ordered consumer" in await src.wait_state(State.RUNNING)
        for i in range(3):
            await js_stream.publish(
                "orders.new", json_codec.dumps({"n": i}), headers={"Nats-Msg-Id": f"m{i}"}
            )
        # Sent again (a fleet's failover): the stream drops it, so the desk never sees it twice.
        await js_stream.publish("orders.new", json_codec.dumps({"n": 2}), headers={"Nats-Msg-Id": "m2"})
        await js_stream.publish("orders.x.y", b"{}")  # not on the filter subject
        events = await src.wait_events(3)
        assert (await js_stream.stream_info("ORDERS")).state.consumer_count == 1
        await asyncio.to_thread(nats_server.restart)  # same port, same store
        for i in range(3, 6):
            await js_stream.publish("orders.new", json_codec.dumps({"n": i}))
        events = await src.wait_events(6, timeout=30)
        checkpoint = src.home.capture.checkpoint("m")
        await src.runtime.stop_model("m")
        deadline = time.monotonic() + 20
        while (await js_stream.stream_info("ORDERS")).state.consumer_count:
            assert time.monotonic() < deadline, "the ephemeral consumer stayed on the server"
            await asyncio.sleep(0.25)
    finally:
        await src.close()
    # None twice, none missing, in stream order; the rev is the stream sequence.
    assert [e["payload"]["n"] for e in events] == list(range(6))
    assert [e["seq"] for e in events] == [6, 7, 8, 10, 11, 12]  # 9: orders.x.y; the duplicate took none
    assert checkpoint is None  # nothing to resume from once the consumer is gone


@pytest.mark.asyncio
async def test_missing_stream_is_named(tmp_path: Path, nats_server: NatsServer) -> None:  # noqa: F811
    src = Source(tmp_path / "home", nats_server.url, stream="NOPE")
    try:
        await src.runtime.start_model("m")
        detail = await src.wait_error()
        with pytest.raises(Exception, match="stream 'NOPE' does not exist"):
            await src.runtime.test_connection("model", "m")
    finally:
        await src.close()
    assert "model 'm': field 'stream': the JetStream stream 'NOPE' does not exist" in detail
    none = Source(tmp_path / "home2", nats_server.url)  # neither a stream nor a core subject
    try:
        await none.runtime.start_model("m")
        detail = await none.wait_error()
    finally:
        await none.close()
    assert (
        detail
        == "model 'm': field 'stream': a stream to consume is required (or a core NATS subject, live only)"
    )


@pytest.mark.asyncio
async def test_bad_password_and_missing_permission_are_named(tmp_path: Path) -> None:
    canary = "src-canary-91f"
    server = NatsServer(
        tmp_path / "auth",
        extra_conf='authorization {\n  users: [\n    {user: ed, password: "right", '
        'permissions: {publish: {deny: ["$JS.API.>"]}}}\n  ]\n}\n',
    )
    server.start()
    try:
        wrong = Source(tmp_path / "home1", server.url, secret=canary, stream="ORDERS")
        detail = await wrong.first_error()
        assert "datasource 'nd': field 'secret'" in detail and "authorization" in detail
        assert canary not in detail
        denied = Source(tmp_path / "home2", server.url, secret="right", stream="ORDERS")
        detail = await denied.first_error()
        assert "model 'm': field 'stream': permission denied" in detail and "JetStream's API" in detail
    finally:
        server.stop()


def test_model_settings_are_checked(tmp_path: Path) -> None:
    home = Home.open(str(tmp_path / "home"))
    try:
        home.add_datasource("nd", "nats", {"url": "nats://127.0.0.1:1"})
        with pytest.raises(ConfigError, match="field 'key_path': not a JMESPath expression"):
            home.add_model("m", "nd", {"stream": "S", "key_path": "a[["})
        with pytest.raises(ConfigError, match="field 'subject': one subject filter only"):
            home.add_model("m", "nd", {"stream": "S", "subject": "a.>,b.>"})
        with pytest.raises(ConfigError, match="field 'core_subject': either a stream"):
            home.add_model("m", "nd", {"stream": "S", "core_subject": "a.>"})
    finally:
        home.close()


def test_a_cluster_electing_its_leader_is_retried_and_jetstream_off_is_not() -> None:
    # 503 / 10008 "JetStream system temporarily unavailable": a cluster electing its meta leader.
    electing = nats.js.errors.ServiceUnavailableError(
        code=503, err_code=10008, description="JetStream system temporarily unavailable"
    )
    error = stream_error(electing, "m", "ED", "nats://127.0.0.1:4222")
    assert not error.terminal and "electing" in str(error)
    off = nats.js.errors.ServiceUnavailableError(
        code=503, err_code=10076, description="JetStream not enabled"
    )
    assert stream_error(off, "m", "ED", "nats://127.0.0.1:4222").terminal
