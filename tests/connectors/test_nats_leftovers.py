"""``eventdesk datasource leftovers`` on the nats kind, against a real nats-server: the durable
consumer of a model removed without ``--drop-slot`` is listed as followed by nobody with the
messages it has not delivered, and ``--drop`` deletes it; a followed consumer and another
workspace's are refused; a core NATS model leaves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import nats
import pytest

from eventdesk.connectors.nats.settings import consumer_name
from eventdesk.core import json_codec
from eventdesk.core.home import Home
from tests.cli.harness import eventdesk, home_args, ok
from tests.connectors.test_nats_removal import consumers, run_until_running
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)


async def publish(url: str, count: int, *, stream: bool = False) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    if stream:
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
    for i in range(count):
        await js.publish("orders.new", json_codec.dumps({"n": i}))
    await nc.close()


@pytest.mark.asyncio
async def test_a_removed_models_consumer_is_listed_and_dropped_a_followed_or_foreign_one_is_not(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    await publish(nats_server.url, 5, stream=True)
    home = Home.open(str(tmp_path / "home"))
    home.add_datasource("nd", "nats", {"url": nats_server.url})
    for m in ("a", "b"):
        home.add_model(m, "nd", {"stream": "ORDERS", "since": "0"})
    home.add_model("live", "nd", {"core_subject": "orders.>"})
    ws_id = home.workspace.workspace_id
    await run_until_running(home, "a", "b", "live")
    home.close()
    other = Home.open(str(tmp_path / "other"))
    other.add_datasource("nd", "nats", {"url": nats_server.url})
    other.add_model("a", "nd", {"stream": "ORDERS"})
    await run_until_running(other, "a")
    theirs = consumer_name(other.workspace.workspace_id, "nd", "a")
    other.close()
    a, b = consumer_name(ws_id, "nd", "a"), consumer_name(ws_id, "nd", "b")
    assert await consumers(nats_server.url) == sorted([a, b, theirs])

    h = home_args(tmp_path / "home")
    ok(*h, "remove", "model", "a")
    await publish(nats_server.url, 3)
    entries = {e["name"]: e for e in json.loads(ok(*h, "datasource", "leftovers", "nd", "--json"))}
    assert set(entries) == {a, b, theirs}
    assert entries[a]["followed_by"] is None and entries[a]["held"] == 3 and entries[a]["unit"] == "messages"
    assert entries[a]["what"] == "durable consumer on stream 'ORDERS'" and not entries[a]["other_workspace"]
    assert entries[b]["followed_by"] == "b"
    assert entries[theirs]["other_workspace"] and entries[theirs]["followed_by"] is None
    table = ok(*h, "datasource", "leftovers", "nd")
    assert next(line for line in table.splitlines() if line.startswith(a)).endswith("nobody")
    assert "3 messages" in table
    tested = eventdesk(*h, "test", "datasource", "nd")
    assert (
        f"{a} (durable consumer on stream 'ORDERS'), followed by no model, holds 3 messages" in tested.stderr
    )

    refused = eventdesk(*h, "datasource", "leftovers", "nd", "--drop", b)
    assert refused.returncode == 2 and f"model 'b' follows {b}" in refused.stderr
    refused = eventdesk(*h, "datasource", "leftovers", "nd", "--drop", theirs)
    assert refused.returncode == 2 and "another workspace's" in refused.stderr
    dropped = ok(*h, "datasource", "leftovers", "nd", "--drop", a)
    assert dropped.strip() == f"deleted JetStream consumer {a} of stream 'ORDERS'"
    assert await consumers(nats_server.url) == sorted([b, theirs])
