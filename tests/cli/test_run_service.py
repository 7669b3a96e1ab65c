"""``eventdesk run`` operated like a service (issue 15, done-when 6): a real ``run`` with
``--metrics-port`` and ``--log-format json`` on a NATS stream republished to a NATS broker; its
/metrics scraped during the stream shows the captured, published, backlog and lag figures it
should, and /healthz turns 503 when a model stops on an error (its stream deleted)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventdesk.cli.json_logs import JsonLineFormatter, parse_listen
from eventdesk.core.errors import ConfigError
from tests.cli.harness import RunProcess, home_args, ok
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture
from tests.peers.servers import free_port


def publish(url: str, first: int, count: int, *, create: bool = False) -> None:
    async def send() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            if create:
                await js.add_stream(name="ORDERS", subjects=["orders.>"])
            for i in range(first, first + count):
                await js.publish("orders.new", b'{"n": %d}' % i)
        finally:
            await nc.close()

    asyncio.run(send())


def delete_stream(url: str, name: str) -> None:
    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(delete())


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_metrics(
    port: int, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = scrape(port)
        if all(found.get(k) == v for k, v in expected.items()):
            return
        if time.monotonic() > deadline:
            wrong = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
            raise AssertionError(f"metrics (found, expected): {wrong}")
        time.sleep(0.1)


ORDERS = (("model", "orders"),)
ROUTE = (("broker", "js"), ("model", "orders"), ("route", "out"))


def test_metrics_during_a_stream_and_health_on_error(tmp_path: Path, nats_server: NatsServer) -> None:  # noqa: F811
    publish(nats_server.url, 0, 1000, create=True)
    home = tmp_path / "home"
    h = home_args(home)
    ok(*h, "datasource", "add", "nd", "--kind", "nats", "--url", nats_server.url)
    ok(*h, "model", "add", "orders", "--datasource", "nd", "--stream", "ORDERS", "--since", "0")
    ok(*h, "broker", "add", "js", "--kind", "nats", "--url", nats_server.url, "--stream", "OUT",
       "--create-stream", "--subjects", "out.>")  # fmt: skip
    ok(*h, "route", "add", "out", "--model", "orders", "--broker", "js", "--topic", "out.{model}")
    port = free_port()
    run = RunProcess(h, run_args=("--metrics-port", str(port), "--log-format", "json", "--keep-going"))
    try:
        run.wait_line('"state":"running"', 30)
        wait_metrics(port, {
            ("eventdesk_events_captured_total", ORDERS): 1000,
            ("eventdesk_events_published_total", ROUTE): 1000,
            ("eventdesk_route_backlog", ROUTE): 0,
            ("eventdesk_source_lag", ORDERS): 0,
            ("eventdesk_object_state", (("kind", "model"), ("name", "orders"), ("state", "running"))): 1,
            ("eventdesk_object_state", (("kind", "broker"), ("name", "js"), ("state", "running"))): 1,
        })  # fmt: skip
        publish(nats_server.url, 1000, 500)  # the stream goes on
        wait_metrics(port, {
            ("eventdesk_events_captured_total", ORDERS): 1500,
            ("eventdesk_events_published_total", ROUTE): 1500,
            ("eventdesk_route_backlog", ROUTE): 0,
        })  # fmt: skip
        status, body = get(port, "/healthz")
        assert status == 200 and json.loads(body) == {
            "status": "ok",
            "models": {"orders": "running"},
            "problems": [],
        }
        delete_stream(nats_server.url, "ORDERS")  # the model stops on an error ...
        deadline = time.monotonic() + 30
        while (status := get(port, "/healthz")[0]) == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body = get(port, "/healthz")
        assert status == 503, body
        health = json.loads(body)
        assert health["status"] == "unhealthy"
        assert health["problems"] == [
            "model 'orders' is not running: model 'orders': field 'stream': the JetStream stream 'ORDERS' "
            f"does not exist on nats://127.0.0.1:{nats_server.port} (check the name, or create the stream: "
            "nats stream add)"
        ]
        assert scrape(port)[("eventdesk_reconnects_total", (("kind", "model"), ("name", "orders")))] >= 1
    finally:
        rc = run.stop()
    assert rc != 0  # ... and the exit status says so (--keep-going kept it up until then)
    lines = [json.loads(line) for line in run.lines if line.startswith("{")]
    assert len(lines) == len(run.lines), [line for line in run.lines if not line.startswith("{")]
    states = [(line.get("model"), line.get("state")) for line in lines if "state" in line]
    assert ("orders", "running") in states and ("orders", "error") in states
    error = next(line for line in lines if line.get("state") == "error")
    assert error["level"] == "ERROR" and error["logger"] == "eventdesk.run" and error["time"].endswith("Z")


def test_json_log_lines_name_objects_and_mask_passwords() -> None:
    import logging

    fmt = JsonLineFormatter()
    record = logging.LogRecord("eventdesk.x", logging.WARNING, __file__, 1,
                               "route 'out': cannot reach nats://ed:hunter2@h:4222", None, None)  # fmt: skip
    line = json.loads(fmt.format(record))
    assert line["route"] == "out" and line["level"] == "WARNING" and line["logger"] == "eventdesk.x"
    assert "hunter2" not in line["message"] and "nats://ed:***@h:4222" in line["message"]
    record = logging.LogRecord("eventdesk.x", logging.INFO, __file__, 1, "plain %s", ("text",), None)
    record.model = "m"
    assert json.loads(fmt.format(record))["model"] == "m"


def test_metrics_port_is_checked() -> None:
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("x", "70000", ":9464", "0"):
        with pytest.raises(ConfigError, match="field 'metrics-port'"):
            parse_listen(bad)
