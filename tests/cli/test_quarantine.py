"""``eventdesk quarantine``: list, retry (while ``run`` runs, and after the route is fixed), drop
and export quarantined events; ``--on-poison stop`` stops only its route."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.harness import RunProcess, eventdesk, home_args, ok
from tests.cli.poison import add_route, poll, post, quarantine, setup_webhook, status
from tests.peers.servers import MqttBroker, Subscriber

LONG_A = "A" * 70_000
LONG_B = "B" * 70_000


def test_quarantined_events_can_be_retried_dropped_and_exported(
    tmp_path: Path, mqtt_broker: MqttBroker
) -> None:
    home = tmp_path / "home"
    h = home_args(home)
    port = setup_webhook(home)
    add_route(home, "out", mqtt_broker, "{key}/v1")
    sub = Subscriber(port=mqtt_broker.port, topic="#")
    run = RunProcess(args=h)
    try:
        run.wait_line("route 'out': running")
        post(port, [{"id": "ok-1"}, {"id": LONG_A, "n": 1}, {"id": LONG_B, "n": 2}, {"id": "ok-2"}])
        entries = poll(lambda: quarantine(home), lambda got: len(got) == 2)
        pos_a, pos_b = (e["pos"] for e in entries)
        assert [e["key"] for e in entries] == [LONG_A, LONG_B]
        assert {e["state"] for e in entries} == {"held"} and {e["field"] for e in entries} == {"topic"}
        listed = ok(*h, "quarantine", "list", "--route", "out")
        assert listed.startswith("2 event(s) in quarantine:")
        assert (
            f"out  pos={pos_a}  docs created key='AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA... (70000"
            in listed
        )
        assert "field 'topic': a topic may be at most 65535 bytes" in listed

        out = tmp_path / "quarantine.jsonl"
        assert "exported 2 quarantined event(s)" in ok(*h, "quarantine", "export", "--out", str(out))
        exported = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(e["pos"], e["event"]["key"], e["event"]["payload"]["n"]) for e in exported] == [
            (pos_a, LONG_A, 1),
            (pos_b, LONG_B, 2),
        ]

        # Retried while the route still cannot take it: the running route tries it and sets it aside again.
        ok(*h, "quarantine", "retry", "--route", "out", "--pos", str(pos_a))
        again = poll(lambda: quarantine(home, "--route", "out"), lambda got: got[0]["attempts"] == 2)
        assert again[0]["state"] == "held" and "a topic may be at most 65535 bytes" in again[0]["reason"]

        assert "1 event(s) dropped" in ok(*h, "quarantine", "drop", "--route", "out", "--pos", str(pos_b))
        assert [e["pos"] for e in quarantine(home)] == [pos_a]
        assert status(home)["routes"]["out"]["quarantined"] == 1
        assert "backlog=0 quarantined=1" in ok(*h, "status")
        sub.wait_until(lambda got: {"ok-1/v1", "ok-2/v1"} <= {m.topic for m in got})
    finally:
        assert run.stop() == 0

    # The route fixed (the key no longer in the topic), the entry retried: the next run publishes it.
    ok(
        *h,
        "route",
        "add",
        "out",
        "--replace",
        "--model",
        "docs",
        "--broker",
        "out-broker",
        "--topic",
        "fixed/v1",
    )
    assert "1 event(s) handed back" in ok(*h, "quarantine", "retry", "--route", "out", "--all")
    assert quarantine(home)[0]["state"] == "retry"
    run = RunProcess(args=h)
    try:
        got = sub.wait_until(lambda got: any(m.topic == "fixed/v1" for m in got))
        assert [json.loads(m.payload)["key"] for m in got if m.topic == "fixed/v1"] == [LONG_A]
        poll(lambda: quarantine(home), lambda got: got == [])
        assert status(home)["routes"]["out"]["quarantined"] == 0
    finally:
        sub.close()
        assert run.stop() == 0
    assert [m.topic for m in got].count("ok-1/v1") == 1  # the rest was not sent again


def test_quarantine_commands_name_what_is_wrong(tmp_path: Path, mqtt_broker: MqttBroker) -> None:
    home = tmp_path / "home"
    h = home_args(home)
    setup_webhook(home)
    add_route(home, "out", mqtt_broker, "{key}/v1")
    result = eventdesk(*h, "quarantine", "retry", "--route", "out")
    assert result.returncode == 2
    assert (
        "quarantine retry: field 'pos': say which entries: --pos N (with --route) or --all" in result.stderr
    )
    result = eventdesk(*h, "quarantine", "drop", "--pos", "3")
    assert result.returncode == 2 and "--pos needs --route" in result.stderr
    result = eventdesk(*h, "quarantine", "list", "--route", "nope")
    assert result.returncode == 3 and "route 'nope'" in result.stderr
    assert ok(*h, "quarantine", "list") == "0 event(s) in quarantine\n"
    result = eventdesk(
        *h, "route", "add", "bad", "--model", "docs", "--broker", "out-broker", "--on-poison", "skip"
    )
    assert result.returncode == 2 and "route 'bad': field 'on_poison'" in result.stderr
    bad_topic = ("--topic", "$SYS/{key}")
    result = eventdesk(*h, "route", "add", "bad", "--model", "docs", "--broker", "out-broker", *bad_topic)
    assert (
        result.returncode == 2
        and "route 'bad': field 'topic': topics starting with $ belong" in result.stderr
    )


def test_route_help_says_how_values_are_escaped_in_topics() -> None:
    help_text = " ".join(ok("route", "add", "--help").split())
    assert "% / + # NUL and a leading $ become %25 %2F %2B %23 %00 %24" in help_text
    assert "{key:levels} keeps a value's / as levels" in help_text
    assert "'stop' stops the route" in help_text


def test_on_poison_stop_stops_only_that_route_and_says_which_event(
    tmp_path: Path, mqtt_broker: MqttBroker
) -> None:
    home = tmp_path / "home"
    port = setup_webhook(home)
    add_route(home, "strict", mqtt_broker, "strict/{key}", extra=("--on-poison", "stop"))
    add_route(home, "lenient", mqtt_broker, "lenient/{op}", extra=("--format", "payload"))
    sub = Subscriber(port=mqtt_broker.port, topic="#")
    run = RunProcess(args=home_args(home))
    try:
        run.wait_line("route 'strict': running")
        run.wait_line("route 'lenient': running")
        post(port, [{"id": "ok-1", "n": 1}, {"id": LONG_A, "n": 2}, {"id": "ok-2", "n": 3}])
        line = run.lines[run.wait_line("route 'strict': error")]
        assert "route 'strict': field 'on_poison': event 'AAAAAAAAAA" in line
        assert "of model 'docs' (capture position 2) cannot be published: field 'topic'" in line
        post(port, [{"id": "ok-3", "n": 4}])  # the other route and the model go on
        got = sub.wait_until(lambda got: len([m for m in got if m.topic.startswith("lenient/")]) == 4)
        assert [json.loads(m.payload)["n"] for m in got if m.topic.startswith("lenient/")] == [1, 2, 3, 4]
        assert [m.topic for m in got if m.topic.startswith("strict/")] == ["strict/ok-1"]
        routes = status(home)["routes"]
        assert routes["strict"]["state"] == "error" and routes["strict"]["backlog"] == 3
        assert routes["strict"]["quarantined"] == 0 and routes["lenient"]["backlog"] == 0
        assert run.proc.poll() is None  # run keeps running
    finally:
        sub.close()
        assert run.stop() == 0
