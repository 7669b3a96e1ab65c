"""The nats broker kind through the command line: ``broker add --kind nats --create-stream``, a
route with a subject template, ``eventdesk run`` on a CouchDB source, a JetStream reader; the
seed's payloads through nats-server's MQTT listener; SIGKILL of ``run`` mid-stream; named
misconfigurations."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import nats

from tests.cli.harness import RunProcess, bulk_insert, eventdesk, home_args, ok, put_doc
from tests.peers.nats_server import (  # noqa: F401 - fixtures
    NatsServer,
    NkeyUser,
    nats_mqtt_server,
    nats_nkey_server,
    nats_server,
    nkey_stranger,
    nkey_user,
)
from tests.peers.servers import CouchServer, Subscriber


def stream_messages(url: str, stream: str) -> list[Any]:
    """Every message the stream holds, read by a JetStream consumer of its own."""

    async def read() -> list[Any]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            total = info.state.messages
            sub = await js.pull_subscribe(">", stream=stream)
            out: list[Any] = []
            while len(out) < total:
                batch = await sub.fetch(min(1000, total - len(out)), timeout=5)
                for m in batch:
                    await m.ack()
                out.extend(batch)
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def wait_stream_count(url: str, stream: str, count: int, timeout: float = 60) -> int:
    async def messages() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = asyncio.run(messages())
        if n >= count:
            return n
        time.sleep(0.2)
    raise AssertionError(f"stream {stream} holds {n} messages, not {count}, after {timeout} s")


def setup(
    home: Path, couch: CouchServer, db: str, nats_url: str, *, topic: str, fmt: str = "envelope"
) -> None:
    h = home_args(home)
    ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", couch.url)
    ok(*h, "model", "add", "accounts", "--datasource", "couch", "--database", db, "--since", "now")
    ok(*h, "broker", "add", "js", "--kind", "nats", "--url", nats_url, "--stream", "ED", "--create-stream",
       "--subjects", "ed.>", "--duplicate-window", "300")  # fmt: skip
    ok(*h, "route", "add", "out", "--model", "accounts", "--broker", "js", "--topic", topic, "--format", fmt)


def wait_running(run: RunProcess) -> None:
    run.wait_line("model 'accounts': running", 30)
    run.wait_line("route 'out': running", 30)


def test_run_publishes_every_change_with_headers(
    tmp_path: Path,
    couch: CouchServer,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    db = couch.create_database("accounts")
    home = tmp_path / "home"
    setup(home, couch, db, nats_server.url, topic="ed.{model}.{op}.{key}")
    assert "stream 'ED' created" in ok(*home_args(home), "test", "broker", "js")
    run = RunProcess(home_args(home))
    keys = ["acct-1", "a.b", "x y", "*", ">", "tab\tkey"]
    try:
        wait_running(run)
        revs = {
            key: put_doc(couch, db, urllib.parse.quote(key, safe=""), {"n": i}) for i, key in enumerate(keys)
        }
        wait_stream_count(nats_server.url, "ED", len(keys), 30)
    finally:
        assert run.stop() == 0, run.output()
    stored = stream_messages(nats_server.url, "ED")
    assert len(stored) == len(keys)
    by_key = {m.headers["EventDesk-Key"]: m for m in stored}
    assert set(by_key) == {"acct-1", "a.b", "x%20y", "*", ">", "tab%09key"}
    plain = by_key["acct-1"]
    assert plain.subject == "ed.accounts.created.acct-1"
    assert plain.headers["EventDesk-Model"] == "accounts"
    assert plain.headers["EventDesk-Op"] == "created"
    assert plain.headers["EventDesk-Rev"] == revs["acct-1"]
    assert len(plain.headers["Nats-Msg-Id"]) == 32
    assert json.loads(plain.data)["key"] == "acct-1"
    # Hostile keys stayed one token each: four tokens, no wildcard, no whitespace.
    for m in stored:
        assert (
            m.subject.count(".") == 3
            and "*" not in m.subject
            and ">" not in m.subject
            and " " not in m.subject
        )
    assert by_key["a.b"].subject == "ed.accounts.created.a%2Eb"


def test_seed_payload_reaches_an_mqtt_subscriber_of_nats_server(
    tmp_path: Path,
    couch: CouchServer,
    nats_mqtt_server: NatsServer,  # noqa: F811
) -> None:
    db = couch.create_database("accounts")
    home = tmp_path / "home"
    setup(home, couch, db, nats_mqtt_server.url, topic="ed.v1.subutest", fmt="model-message")
    sub = Subscriber(port=nats_mqtt_server.mqtt_port, topic="ed/v1/subutest")  # NATS '.' is MQTT '/'
    run = RunProcess(home_args(home))
    try:
        wait_running(run)
        rev = put_doc(couch, db, "acct-1", {"name": "Asha", "region": "Bangalore", "balance": 120})
        [msg] = sub.wait_for(1, 20)
    finally:
        sub.close()
        assert run.stop() == 0, run.output()
    assert msg.topic == "ed/v1/subutest"
    assert json.loads(msg.payload) == {
        "model": "accounts",
        "message": {"_id": "acct-1", "_rev": rev, "name": "Asha", "region": "Bangalore", "balance": 120},
    }
    assert wait_stream_count(nats_mqtt_server.url, "ED", 1) == 1


def test_outage_and_sigkill_leave_every_change_once_in_the_stream(
    tmp_path: Path,
    couch: CouchServer,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    setup(home, couch, db, nats_server.url, topic="ed.{model}.{key}", fmt="payload")
    total = 3000
    run = RunProcess(home_args(home))
    try:
        wait_running(run)
        bulk_insert(couch, db, ({"_id": f"d-{i:05d}"} for i in range(1000)), chunk=200)
        wait_stream_count(nats_server.url, "ED", 200, 30)
        nats_server.stop()  # the broker goes away mid-stream ...
        run.wait_line("broker 'js': retrying", 15)
        bulk_insert(couch, db, ({"_id": f"d-{i:05d}"} for i in range(1000, 2000)), chunk=200)
        nats_server.start()  # ... and comes back on the same store
        wait_stream_count(nats_server.url, "ED", 1500, 60)
    finally:
        run.kill()  # and run is SIGKILLed mid-stream: what was in flight is sent again
    bulk_insert(couch, db, ({"_id": f"d-{i:05d}"} for i in range(2000, total)), chunk=200)
    run2 = RunProcess(home_args(home))
    try:
        wait_running(run2)
        wait_stream_count(nats_server.url, "ED", total, 90)
    finally:
        assert run2.stop() == 0, run2.output()
    # A crash that lost the route's position altogether: everything is sent again, and the
    # stream's duplicate window drops all of it.
    con = sqlite3.connect(home / "capture.sqlite3")
    with con:
        con.execute("UPDATE route_positions SET pos = 0")
    con.close()
    run3 = RunProcess(home_args(home))
    try:
        wait_running(run3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            con = sqlite3.connect(home / "capture.sqlite3")
            (pos,) = con.execute("SELECT pos FROM route_positions").fetchone()
            (last,) = con.execute("SELECT MAX(pos) FROM events").fetchone()
            con.close()
            if pos >= last:
                break
            time.sleep(0.2)
        assert pos >= last, "run3 did not re-send everything"
    finally:
        assert run3.stop() == 0, run3.output()
    stored = stream_messages(nats_server.url, "ED")
    ids = Counter(json.loads(m.data)["_id"] for m in stored)
    assert set(ids) == {f"d-{i:05d}" for i in range(total)}  # none missing
    assert max(ids.values()) == 1  # none twice
    by_rev = Counter((m.headers["EventDesk-Key"], m.headers["EventDesk-Rev"]) for m in stored)
    assert len(by_rev) == total and max(by_rev.values()) == 1
    assert len({m.headers["Nats-Msg-Id"] for m in stored}) == total


def test_misconfigurations_are_named(tmp_path: Path, nats_server: NatsServer) -> None:  # noqa: F811
    h = home_args(tmp_path / "home")
    ok(*h, "broker", "add", "nostream", "--kind", "nats", "--url", nats_server.url, "--stream", "MISSING")
    result = eventdesk(*h, "test", "broker", "nostream")
    assert result.returncode != 0
    assert "'MISSING' does not exist" in result.stderr and "stream" in result.stderr
    result = eventdesk(
        *h, "broker", "add", "half", "--kind", "nats", "--url", nats_server.url, "--create-stream"
    )
    assert result.returncode != 0 and "stream" in result.stderr
    result = eventdesk(*h, "broker", "add", "http", "--kind", "nats", "--url", "http://127.0.0.1:1")
    assert result.returncode != 0 and "url" in result.stderr


def test_wrong_password_named_never_echoed(tmp_path: Path) -> None:
    canary = "n4ts-canary-7c2"
    server = NatsServer(tmp_path / "auth", extra_conf='authorization {\n  user: ed\n  password: "right"\n}\n')
    server.start()
    try:
        h = home_args(tmp_path / "home")
        ok(*h, "broker", "add", "js", "--kind", "nats", "--url", server.url, "--username", "ed",
           "--secret-env", "ED_NATS_PW", env={"ED_NATS_PW": canary})  # fmt: skip
        result = eventdesk(*h, "test", "broker", "js", env={"ED_NATS_PW": canary})
        assert result.returncode != 0
        assert "authorization" in result.stderr and "secret" in result.stderr
        assert canary not in result.stderr + result.stdout
        assert canary not in "".join(
            p.read_text(errors="replace") for p in (tmp_path / "home").rglob("*") if p.is_file()
        )
    finally:
        server.stop()


def test_broker_add_with_an_nkey_seed_file(
    tmp_path: Path,
    nats_nkey_server: NatsServer,  # noqa: F811
    nkey_user: NkeyUser,  # noqa: F811
    nkey_stranger: NkeyUser,  # noqa: F811
) -> None:
    h = home_args(tmp_path / "home")
    for name, user in (("right", nkey_user), ("wrong", nkey_stranger)):
        ok(
            *h,
            "broker",
            "add",
            name,
            "--kind",
            "nats",
            "--url",
            nats_nkey_server.url,
            "--nkey",
            str(user.seed_file),
        )
    assert "connected to nats://127.0.0.1" in ok(*h, "test", "broker", "right")
    result = eventdesk(*h, "test", "broker", "wrong")
    assert result.returncode != 0
    assert "broker 'wrong': field 'nkey'" in result.stderr and "authorization violation" in result.stderr
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").rglob("*") if p.is_file())
    for user in (nkey_user, nkey_stranger):
        assert user.seed not in result.stderr + result.stdout and user.seed not in written
        assert str(user.seed_file) in written  # the home keeps the file's path, never the seed
