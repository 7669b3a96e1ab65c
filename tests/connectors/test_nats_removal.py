"""The nats source's durable consumer is kept on the server like a PostgreSQL slot: ``eventdesk
test model`` names it, ``eventdesk remove model`` names what stays on the server, and
``--drop-slot`` (or its alias ``--drop-server-objects``) deletes it; a core NATS model holds
nothing. Against a real nats-server (fixture on a free port)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import nats.js.errors
import pytest

from eventdesk.connectors.nats import NatsConnector
from eventdesk.connectors.nats.settings import consumer_name
from eventdesk.core import json_codec
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from tests.cli.harness import home_args, ok
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture


async def consumers(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        return sorted(c.name for c in await nc.jetstream().consumers_info("ORDERS"))
    finally:
        await nc.close()


async def run_until_running(home: Home, *models: str) -> None:
    runtime = Runtime(home.workspace, home.capture)
    try:
        for m in models:
            await runtime.start_model(m)
        for _ in range(200):
            if all(runtime.state_of(f"model/{m}").state is State.RUNNING for m in models):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not running: {[runtime.state_of(f'model/{m}') for m in models]}")
    finally:
        await runtime.aclose()


@pytest.mark.asyncio
async def test_remove_names_the_consumer_it_keeps_and_drops_it_with_drop_slot(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(name="ORDERS", subjects=["orders.>"])
    for i in range(5):
        await nc.publish("orders.new", json_codec.dumps({"n": i}))
    await nc.close()
    home = Home.open(str(tmp_path / "home"))
    home.add_datasource("nd", "nats", {"url": nats_server.url})
    for m in ("a", "b", "c"):
        home.add_model(m, "nd", {"stream": "ORDERS", "since": "0"})
    home.add_model("live", "nd", {"core_subject": "orders.>"})
    ws = home.workspace
    name = {m: consumer_name(ws.workspace_id, "nd", m) for m in ("a", "b", "c")}
    h = home_args(tmp_path / "home")
    before = ok(*h, "test", "model", "a")
    assert f"consumer {name['a']} (not made yet" in before
    await run_until_running(home, "a", "b", "c", "live")
    home.close()
    assert await consumers(nats_server.url) == sorted(name.values())
    tested = ok(*h, "test", "model", "a")
    assert f"consumer {name['a']} (0 messages not captured yet)" in tested
    assert NatsConnector.held_on_server(ws.datasource("nd"), ws.model("live")) is None

    kept = ok(*h, "remove", "model", "a")
    assert f"kept on the server for model 'a': JetStream consumer {name['a']} on stream 'ORDERS'" in kept
    assert await consumers(nats_server.url) == sorted(name.values())  # named, not deleted
    dropped = ok(*h, "remove", "model", "b", "--drop-slot")
    assert f"model 'b': deleted JetStream consumer {name['b']} of stream 'ORDERS'" in dropped
    assert "kept on the server" not in dropped
    dropped = ok(*h, "remove", "model", "c", "--drop-server-objects")
    assert f"model 'c': deleted JetStream consumer {name['c']}" in dropped
    assert await consumers(nats_server.url) == [name["a"]]
    live = ok(*h, "remove", "model", "live", "--drop-slot")
    assert "kept on the server" not in live and "deleted" not in live


@pytest.mark.asyncio
async def test_release_of_a_consumer_already_gone_says_so(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    home = Home.open(str(tmp_path / "home"))
    try:
        home.add_datasource("nd", "nats", {"url": nats_server.url})
        home.add_model("m", "nd", {"stream": "ORDERS"})
        ds, model = home.workspace.datasource("nd"), home.workspace.model("m")
        summary = await NatsConnector.release_model(ds, None, model)
        assert summary.endswith("was not there: nothing to drop")
        await js.delete_stream("ORDERS")
        summary = await NatsConnector.release_model(ds, None, model)
        assert "stream 'ORDERS' is gone" in summary
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info("ORDERS")
    finally:
        home.close()
        await nc.close()
