"""What ``eventdesk fleet status`` and the Fleet window say of a model beyond its lease: how far
behind its source it is (the kind's source lag, recorded by the holder at each renewal, with
its unit), read from a real agent following a real JetStream stream."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from eventdesk.fleet.bucket import Entry
from eventdesk.fleet.lease import Lease
from eventdesk.fleet.settings import lease_key
from eventdesk.fleet.status import build_fleet_status, lag_text
from eventdesk.ui.fleet_view import model_rows
from tests.cli.harness import RunProcess, eventdesk, home_args, ok
from tests.connectors.test_nats_run import fill_stream
from tests.peers.nats_server import NatsServer, nats_server  # noqa: F401 - fixture

TOTAL = 2_000


def test_the_lag_a_holder_recorded_is_shown_with_its_unit() -> None:
    now = time.time()
    lease = Lease(
        agent="a1",
        ttl=15.0,
        taken_at=now - 3,
        renewed_at=now - 1,
        resume=None,
        progress={"state": "running", "source_lag": {"value": 12345.0, "unit": "bytes of WAL"}},
    )
    other = Lease(agent="a2", ttl=15.0, taken_at=now, renewed_at=now, resume=None, progress={})
    snapshot = {
        key: Entry(key, revision, value.encode())
        for key, revision, value in ((lease_key("pg"), 3, lease), (lease_key("hook"), 4, other))
    }
    status = build_fleet_status(snapshot, ["pg", "hook"], now=now)
    rows = {row[0]: row for row in model_rows(status)}
    assert rows["pg"][5] == "12.3 kB of WAL"
    assert rows["hook"][5] == "—"  # a kind that does not say (webhook, cloudant)
    assert lag_text({"value": "x"}) == "—" and lag_text(None) == "—"


def test_fleet_status_shows_how_far_a_nats_model_trails_its_stream(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    fill_stream(nats_server.url, TOTAL)
    h = home_args(tmp_path / "home")
    ok(*h, "datasource", "add", "nd", "--kind", "nats", "--url", nats_server.url)
    ok(*h, "model", "add", "orders", "--datasource", "nd", "--stream", "ORDERS", "--since", "0")
    agent = RunProcess(h, run_args=("--fleet", nats_server.url, "--agent-id", "a1", "--lease-ttl", "3"))
    try:
        agent.wait_line("fleet: agent 'a1'", timeout=60)
        deadline = time.monotonic() + 60
        while True:
            seen: dict[str, Any] = json.loads(ok(*h, "fleet", "status", "--fleet", nats_server.url, "--json"))
            lag = seen["models"]["orders"]["source_lag"]
            # Every message captured: the stream holds nothing the model has not read.
            if lag is not None and lag["value"] == 0:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.5)
        assert lag == {"value": 0.0, "unit": "messages"}, seen
        text = eventdesk(*h, "fleet", "status", "--fleet", nats_server.url, timeout=30).stdout
        assert "source lag=0 messages" in text, text
    finally:
        assert agent.stop(20) == 0, agent.output()
