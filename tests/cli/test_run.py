"""The headless pipeline end to end: pouchdb-server -> eventdesk run -> mosquitto -> subscriber."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.harness import RunProcess, bulk_insert, eventdesk, home_args, ok, put_doc, setup_pipeline
from tests.peers.servers import CouchServer, MqttBroker, Received


def covers(expected: set[str]) -> Callable[[list[Received]], bool]:
    """A predicate: every expected key (the topic's last level) arrived, duplicates aside."""
    seen: set[str] = set()
    read = [0]

    def check(messages: list[Received]) -> bool:
        for m in messages[read[0] :]:
            seen.add(m.topic.rsplit("/", 1)[1])
        read[0] = len(messages)
        return seen >= expected

    return check


def wait_running(run: RunProcess) -> None:
    run.wait_line("model 'accounts': running", 30)
    run.wait_line("route 'out': running", 30)


def test_seed_demo(tmp_path: Path, couch: CouchServer, mqtt_broker: MqttBroker, subscriber) -> None:  # type: ignore[no-untyped-def]
    db = couch.create_database("accounts")
    home = tmp_path / "home"
    setup_pipeline(home, couch.url, db, mqtt_broker, topic="/v1/subutest", fmt="seed")
    sub = subscriber("/v1/subutest")
    run = RunProcess(home_args(home))
    try:
        wait_running(run)
        rev = put_doc(couch, db, "acct-1", {"name": "Asha", "region": "Bangalore", "balance": 120})
        [msg] = sub.wait_for(1, 15)
    finally:
        assert run.stop() == 0, run.output()
    assert msg.topic == "/v1/subutest"
    assert json.loads(msg.payload) == {
        "model": "accounts",
        "message": {"_id": "acct-1", "_rev": rev, "name": "Asha", "region": "Bangalore", "balance": 120},
    }
    assert "stopped" in run.output()


def test_create_update_delete_ops(
    tmp_path: Path,
    couch: CouchServer,
    mqtt_broker: MqttBroker,
    subscriber,  # type: ignore[no-untyped-def]
    unique_topic: str,
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{model}/{op}")
    sub = subscriber(unique_topic + "/#")
    run = RunProcess(home_args(home))
    try:
        wait_running(run)
        rev1 = put_doc(couch, db, "k1", {"v": 1})
        sub.wait_for(1, 15)
        rev2 = put_doc(couch, db, "k1", {"_rev": rev1, "v": 2})
        sub.wait_for(2, 15)
        reply = json.loads(couch.request("DELETE", f"/{db}/k1?rev={rev2}"))
        msgs = sub.wait_for(3, 15)
    finally:
        assert run.stop() == 0
    envs = [json.loads(m.payload) for m in msgs]
    assert [e["op"] for e in envs] == ["created", "updated", "deleted"]
    assert [m.topic for m in msgs] == [
        f"{unique_topic}/accounts/{op}" for op in ("created", "updated", "deleted")
    ]
    assert [e["rev"] for e in envs] == [rev1, rev2, reply["rev"]]
    assert all(e["key"] == "k1" and e["seq"] is not None and e["datasource"] == "couch" for e in envs)
    assert envs[1]["payload"]["v"] == 2
    assert envs[2]["payload"]["_deleted"] is True
    events = [json.loads(line) for line in ok(*home_args(home), "events", "--json").splitlines()]
    assert [e["op"] for e in events] == ["created", "updated", "deleted"]


def run_thread_policies(run: RunProcess) -> set[int]:
    """The scheduling policy of every thread of ``run``'s process."""
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{run.proc.pid}/task")}


@pytest.mark.usefixtures("linux_scheduling")
@pytest.mark.parametrize(
    ("flag", "policy"), [((), "SCHED_BATCH"), (("--scheduling", "normal"), "SCHED_OTHER")]
)
def test_run_threads_yield_to_the_source_unless_told_otherwise(
    tmp_path: Path,
    couch: CouchServer,
    mqtt_broker: MqttBroker,
    subscriber,  # type: ignore[no-untyped-def]
    unique_topic: str,
    flag: tuple[str, ...],
    policy: str,
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{key}")
    sub = subscriber(unique_topic + "/#")
    run = RunProcess(home_args(home), run_args=flag)
    try:
        wait_running(run)
        put_doc(couch, db, "k1", {"v": 1})
        sub.wait_for(1, 15)  # every thread has started: feed reader, capture, route reader
        assert run_thread_policies(run) == {getattr(os, policy)}
        assert len(os.listdir(f"/proc/{run.proc.pid}/task")) >= 4
    finally:
        assert run.stop() == 0


@pytest.mark.slow
def test_ten_thousand_documents_all_arrive(
    tmp_path: Path,
    couch: CouchServer,
    mqtt_broker: MqttBroker,  # type: ignore[no-untyped-def]
    subscriber,
    unique_topic: str,
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{key}", fmt="payload")
    sub = subscriber(unique_topic + "/#")
    run = RunProcess(home_args(home))
    try:
        wait_running(run)
        bulk_insert(couch, db, ({"_id": f"doc-{i:05d}", "n": i} for i in range(10_000)))
        msgs = sub.wait_for(10_000, 120)
    finally:
        assert run.stop() == 0
    ids = {json.loads(m.payload)["_id"] for m in msgs}
    assert ids == {f"doc-{i:05d}" for i in range(10_000)}


@pytest.mark.slow
def test_broker_outage_loses_nothing_and_status_shows_backlog(
    tmp_path: Path,
    couch: CouchServer,  # type: ignore[no-untyped-def]
    mqtt_broker: MqttBroker,
    subscriber,
    unique_topic: str,
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{key}", fmt="payload", qos=1)
    sub = subscriber(unique_topic + "/#")
    run = RunProcess(home_args(home))
    try:
        wait_running(run)
        bulk_insert(couch, db, ({"_id": f"a-{i:04d}"} for i in range(500)))
        sub.wait_for(500, 30)
        mqtt_broker.stop()
        run.wait_line("broker 'mosq': retrying", 15)
        bulk_insert(couch, db, ({"_id": f"b-{i:04d}"} for i in range(1000)), chunk=100)
        deadline = time.monotonic() + 15
        backlog = 0
        while time.monotonic() < deadline:
            status = json.loads(ok(*home_args(home), "status", "--json"))
            backlog = status["routes"]["out"]["backlog"]
            if backlog == 1000:
                break
            time.sleep(0.2)
        assert backlog == 1000, status
        assert status["routes"]["out"]["state"] == "retrying"
        assert status["models"]["accounts"]["state"] == "running"
        time.sleep(max(0.0, 10 - (time.monotonic() - (deadline - 15))))  # the broker stays down 10 s in all
        mqtt_broker.start()
        expected = {f"a-{i:04d}" for i in range(500)} | {f"b-{i:04d}" for i in range(1000)}
        msgs = sub.wait_until(covers(expected), 60)
    finally:
        assert run.stop() == 0
    ids = Counter(json.loads(m.payload)["_id"] for m in msgs)
    assert set(ids) == {f"a-{i:04d}" for i in range(500)} | {f"b-{i:04d}" for i in range(1000)}
    after = json.loads(ok(*home_args(home), "status", "--json"))
    assert after["routes"]["out"]["backlog"] == 0


@pytest.mark.slow
def test_sigkill_and_restart_delivers_everything(
    tmp_path: Path,
    couch: CouchServer,
    mqtt_broker: MqttBroker,  # type: ignore[no-untyped-def]
    subscriber,
    unique_topic: str,
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic + "/{key}", fmt="payload", qos=1)
    sub = subscriber(unique_topic + "/#")
    run = RunProcess(home_args(home))
    total = 4000
    try:
        wait_running(run)
        bulk_insert(couch, db, ({"_id": f"d-{i:05d}"} for i in range(2000)), chunk=200)
        sub.wait_for(300, 30)
    finally:
        run.kill()
    bulk_insert(couch, db, ({"_id": f"d-{i:05d}"} for i in range(2000, total)), chunk=200)
    run2 = RunProcess(home_args(home))
    try:
        wait_running(run2)
        expected = {f"d-{i:05d}" for i in range(total)}
        msgs = sub.wait_until(covers(expected), 90)
        time.sleep(1)  # let any straggling duplicates arrive before counting them
    finally:
        assert run2.stop() == 0
    ids = Counter(json.loads(m.payload)["_id"] for m in sub.messages)
    assert set(ids) == {f"d-{i:05d}" for i in range(total)}
    duplicates = sum(c - 1 for c in ids.values())
    assert duplicates <= 1000, f"{duplicates} duplicates: more than one route batch"
    assert len(msgs) >= total
    con = sqlite3.connect(home / "capture.sqlite3")
    rows = con.execute("SELECT COUNT(*), COUNT(DISTINCT key || '/' || rev) FROM events").fetchone()
    con.close()
    assert rows == (total, total)


def test_bad_input_messages(tmp_path: Path, couch: CouchServer, mqtt_broker: MqttBroker) -> None:
    h = home_args(tmp_path / "home")
    r = eventdesk(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", "htp:/nowhere")
    assert r.returncode == 2
    assert "datasource 'couch': field 'url'" in r.stderr
    ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", couch.url)
    ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", mqtt_broker.url)
    r = eventdesk(*h, "model", "add", "m", "--datasource", "nope")
    assert r.returncode == 3
    assert "model 'm': field 'datasource'" in r.stderr
    ok(*h, "model", "add", "m", "--datasource", "couch", "--database", "no-such-db")
    for topic in ("a/#", "a/+/b", "", "x/{unknown}"):
        r = eventdesk(*h, "route", "add", "r", "--model", "m", "--broker", "mosq", "--topic", topic)
        assert r.returncode == 2, topic
        assert "route 'r': field 'topic'" in r.stderr
    # missing database: run stops with a terminal error naming the model's database field
    run = RunProcess(h)
    rc = run.proc.wait(30)
    run.stop()
    assert rc == 5, run.output()
    assert "model 'm': field 'database'" in run.output()


def test_unreachable_broker_is_reported_and_capture_continues(
    tmp_path: Path,
    couch: CouchServer,  # type: ignore[no-untyped-def]
    mqtt_broker: MqttBroker,
    unique_topic: str,
) -> None:
    db = couch.create_database()
    home = tmp_path / "home"
    setup_pipeline(home, couch.url, db, mqtt_broker, topic=unique_topic)
    mqtt_broker.stop()
    run = RunProcess(home_args(home))
    try:
        run.wait_line("model 'accounts': running", 30)
        line = run.lines[run.wait_line("broker 'mosq': retrying", 30)]
        assert "127.0.0.1" in line or "refused" in line.lower()
        put_doc(couch, db, "x1", {"a": 1})
        deadline = time.monotonic() + 15
        while json.loads(ok(*home_args(home), "status", "--json"))["routes"]["out"]["backlog"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        assert run.stop() == 0
    assert len(ok(*home_args(home), "events", "--json").splitlines()) == 1


def test_wrong_password_and_canary_secret_never_leaks(tmp_path: Path, mqtt_broker: MqttBroker) -> None:
    from tests.peers.servers import start_couch, stop_process

    server = start_couch(tmp_path / "secured")
    try:
        server.request("PUT", "/_config/admins/admin", json.dumps("right-password").encode())
        db = "accounts"
        server.request("PUT", f"/{db}", auth=("admin", "right-password"))
        home = tmp_path / "home"
        h = home_args(home)
        canary = "Canary-Secret-7f3a9"
        ok(
            *h,
            "datasource",
            "add",
            "couch",
            "--kind",
            "couchdb",
            "--url",
            server.url,
            "--auth",
            "basic",
            "--username",
            "admin",
            "--secret-stdin",
            stdin=canary + "\n",
        )
        ok(*h, "model", "add", "accounts", "--datasource", "couch")
        ok(
            *h,
            "broker",
            "add",
            "mosq",
            "--kind",
            "mqtt",
            "--url",
            mqtt_broker.url,
            "--username",
            "u",
            "--secret-env",
            "MQTT_PW",
        )
        ok(*h, "route", "add", "out", "--model", "accounts", "--broker", "mosq")
        run = RunProcess(("-vv", *h), env={"MQTT_PW": canary})
        rc = run.proc.wait(30)
        run.stop()
        out = run.output()
        assert rc == 5, out
        assert "datasource 'couch': field 'secret'" in out
        for text in (out, ok(*h, "status"), ok(*h, "list", "--json")):
            assert canary not in text
        for path in home.rglob("*"):
            if path.is_file():
                assert canary.encode() not in path.read_bytes(), path
    finally:
        stop_process(server.proc)


@pytest.mark.slow
def test_source_cut_for_ten_seconds_mid_stream_loses_nothing(
    tmp_path: Path,
    couch: CouchServer,  # type: ignore[no-untyped-def]
    mqtt_broker: MqttBroker,
    subscriber,
    unique_topic: str,
) -> None:
    from tests.peers.fault_proxy import FaultProxy

    proxy = FaultProxy(couch.port)
    db = couch.create_database()
    home = tmp_path / "home"
    setup_pipeline(home, proxy.url, db, mqtt_broker, topic=unique_topic + "/{key}", fmt="payload")
    h = home_args(home)
    sub = subscriber(unique_topic + "/#")
    run = RunProcess(h)
    try:
        wait_running(run)
        stop = threading.Event()
        written: list[str] = []

        def stream() -> None:  # a steady stream of writes, straight to the server
            i = 0
            while not stop.is_set():
                put_doc(couch, db, f"s-{i:05d}", {"n": i})
                written.append(f"s-{i:05d}")
                i += 1
                stop.wait(0.02)

        writer = threading.Thread(target=stream)
        writer.start()
        sub.wait_for(20, 30)
        mark = len(run.lines)
        proxy.cut()
        run.wait_line("model 'accounts': retrying", 20, start=mark)
        time.sleep(10)  # the outage the issue asks for; writes go on meanwhile
        assert "datasource 'couch': field 'url'" in run.output()
        proxy.heal()
        run.wait_line("model 'accounts': running", 30, start=mark)
        time.sleep(1)
        stop.set()
        writer.join()
        sub.wait_until(covers(set(written)), 60)
    finally:
        assert run.stop() == 0
        proxy.close()
    assert len(written) > 300
