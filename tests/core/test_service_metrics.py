"""ServiceMetrics in-process, on the real Runtime: health before a model starts, while it retries
and once it stopped; the fleet's lease-change hook in the scrape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.core.service_metrics import ServiceMetrics, lease_changed
from tests.peers.servers import free_port


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


@pytest.mark.asyncio
async def test_health_follows_the_models_and_leases_are_counted(tmp_path: Path) -> None:
    home = Home.open(str(tmp_path / "home"))
    home.add_datasource("nd", "nats", {"url": f"nats://127.0.0.1:{free_port()}"})  # nobody listens
    home.add_model("m", "nd", {"stream": "S"})
    runtime = Runtime(home.workspace, home.capture)
    metrics = ServiceMetrics(runtime, lambda: ["m"])
    try:
        await metrics.refresh()
        assert metrics.health().healthy and metrics.health().models == {"m": "starting"}
        retrying = asyncio.Event()
        runtime.on_state(lambda key, change: change.state is State.RETRYING and retrying.set())
        await runtime.start_model("m")
        await asyncio.wait_for(retrying.wait(), 10)
        health = metrics.health()
        assert health.healthy and health.models == {"m": "retrying"}  # waiting for its source is no fault
        await runtime.stop_model("m")
        health = metrics.health()
        assert not health.healthy and health.problems == ("model 'm' is not running: stopped",)
        lease_changed("m", "acquired")
        lease_changed("m", "acquired")
        lease_changed("m", "lost")
        await metrics.refresh()
        found = samples(metrics.scrape())
        assert found[("eventdesk_lease_changes_total", (("change", "acquired"), ("model", "m")))] >= 2
        assert found[("eventdesk_lease_changes_total", (("change", "lost"), ("model", "m")))] >= 1
        assert found[("eventdesk_reconnects_total", (("kind", "model"), ("name", "m")))] == 1
        assert (
            found[("eventdesk_object_state", (("kind", "model"), ("name", "m"), ("state", "stopped")))] == 1
        )
    finally:
        metrics.close()
        await runtime.aclose()
        home.close()
