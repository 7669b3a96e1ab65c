"""``eventdesk demo``: the demo workspace headless, run for real, fed over HTTP, read over MQTT."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from eventdesk.core import demo
from tests.cli.harness import RunProcess, eventdesk, home_args, ok
from tests.peers.servers import free_port, missing_peer


def test_sample_stream_updates_and_deletes_only_accounts_it_created() -> None:
    docs = list(demo.sample_documents(300, seed=7))
    assert len(docs) == 300
    live: set[str] = set()
    ops = {"created": 0, "updated": 0, "deleted": 0}
    for doc in docs:
        ops[doc["op"]] += 1
        if doc["op"] == "created":
            assert doc["id"] not in live and {"name", "email", "region", "balance"} <= doc.keys()
            live.add(doc["id"])
        else:
            assert doc["id"] in live
            if doc["op"] == "deleted":
                live.remove(doc["id"])
    assert all(n > 10 for n in ops.values()), ops
    assert docs == list(demo.sample_documents(300, seed=7))  # a seed repeats the stream


def test_demo_sets_up_the_workspace_once(tmp_path: Path) -> None:
    home = home_args(tmp_path / "home")
    port, broker_port = free_port(), free_port()
    out = ok(*home, "demo", "--webhook-port", str(port), "--broker-port", str(broker_port))
    assert "demo workspace created" in out
    assert f"http://127.0.0.1:{port}/hooks/accounts" in out
    assert f"mosquitto_sub -h 127.0.0.1 -p {broker_port} -t '/v1/subutest'" in out
    assert "curl -sS -X POST" in out
    listed = json.loads(ok(*home, "list", "--json"))
    assert listed["datasources"]["demo-webhook"]["kind"] == "webhook"
    assert listed["models"]["accounts"]["datasource"] == "demo-webhook"
    assert listed["brokers"]["builtin"] == {
        "kind": "local",
        "settings": {"port": broker_port, "host": "127.0.0.1"},
    }
    route = listed["routes"]["accounts-to-subutest"]
    assert (route["model"], route["broker"]) == ("accounts", "builtin")
    assert route["settings"]["topic"] == "/v1/subutest" and route["settings"]["format"] == "model-message"
    assert "already set up" in ok(*home, "demo")


def test_send_without_a_running_receiver_names_the_port(tmp_path: Path) -> None:
    home = home_args(tmp_path / "home")
    result = eventdesk(*home, "demo", "--send", "3")
    assert result.returncode == 2 and "run `eventdesk demo` first" in result.stderr
    ok(*home, "demo", "--webhook-port", str(free_port()), "--broker-port", str(free_port()))
    result = eventdesk(*home, "demo", "--send", "3")
    assert result.returncode == 5
    assert "datasource 'demo-webhook': field 'port': nothing listens on http://127.0.0.1:" in result.stderr


@pytest.mark.slow
def test_demo_run_send_and_subscribe_end_to_end(tmp_path: Path) -> None:
    if shutil.which("mosquitto_sub") is None:
        missing_peer("mosquitto_sub", "apt-get install mosquitto-clients")
    home = home_args(tmp_path / "home")
    broker_port = free_port()
    ok(*home, "demo", "--webhook-port", str(free_port()), "--broker-port", str(broker_port))
    run = RunProcess(args=home)
    sub: subprocess.Popen[str] | None = None
    try:
        run.wait_line("route 'accounts-to-subutest': running")
        run.wait_line("model 'accounts': running (listening on")
        sub = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-d", "-p", str(broker_port), "-t", "/v1/subutest", "-C", "25", "-W", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        assert sub.stdout is not None
        for line in sub.stdout:
            if "SUBACK" in line:
                break
        out = ok(*home, "demo", "--send", "25", "--seed", "3")
        assert "sent 25 sample events" in out and "25 captured" in out
        rest, _ = sub.communicate(timeout=30)
        messages = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
        assert len(messages) == 25
        assert all(m["model"] == "accounts" and "id" in m["message"] for m in messages)
        sent = list(demo.sample_documents(25, seed=3))
        assert sorted(m["message"]["id"] for m in messages) == sorted(d["id"] for d in sent)
    finally:
        if sub is not None and sub.poll() is None:
            sub.kill()
            sub.wait()
        assert run.stop() == 0
    events = [json.loads(line) for line in ok(*home, "events", "--json", "--limit", "100").splitlines()]
    assert len(events) == 25
    assert {e["op"] for e in events} <= {"created", "updated", "deleted"}
