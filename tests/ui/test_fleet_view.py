"""View ▸ Fleet… against a real nats-server: a fleet bucket written through the agents' own
FleetBucket and Lease (two agents' heartbeats, a held lease with its route's backlog, a released
one); the window shows them, remembers the URL that worked for the workspace, says why a wrong URL or a
server without this workspace's bucket shows nothing, and that "Watch live" has nothing to
watch without a route into a nats broker (tests/ui/test_fleet_watch.py watches one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PySide6.QtWidgets import QTableWidget
from pytestqt.qtbot import QtBot

from eventdesk.core import json_codec
from eventdesk.core.home import Home
from eventdesk.fleet.bucket import FleetBucket
from eventdesk.fleet.lease import Lease
from eventdesk.fleet.settings import FleetSettings, agent_key, bucket_name, lease_key
from eventdesk.ui.fleet_view import has_credentials, redact_servers, url_setting
from eventdesk.ui.window_layout import app_settings
from tests.peers.nats_server import NatsServer, running_nats
from tests.peers.servers import free_port
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    MakeWindow,
    home_fixture,
    isolated_qsettings_fixture,
    make_window_fixture,
    qloop_fixture,
    run,
)

pytestmark = pytest.mark.timeout(90)


async def write_fleet(url: str, bucket: str) -> None:
    """What two agents leave in the bucket: their heartbeats and the leases they write."""
    fleet = FleetBucket(FleetSettings.parse(url, "writer", 15.0, 1), bucket)
    await fleet.open(create=True)
    now = time.time()
    try:
        for agent, host, models, at in (
            ("agent-a", "host-a", ["orders"], now),
            ("agent-b", "host-b", [], now - 60),
        ):
            beat = {"agent": agent, "host": host, "pid": 1, "models": models, "ttl": 15.0, "at": at}
            await fleet.put(agent_key(agent), json_codec.dumps({**beat, "started_at": now - 100}))
        held = Lease(
            "agent-a",
            15.0,
            taken_at=now - 42,
            renewed_at=now - 1,
            progress={"state": "running", "routes": {"to-stream": {"backlog": 7}}},
        )
        await fleet.create(lease_key("orders"), held.encode())
        await fleet.create(
            lease_key("audit"), Lease("", 15.0, renewed_at=now - 5, progress={"state": "stopped"}).encode()
        )
    finally:
        await fleet.close()


@pytest.fixture
def fleet_server(tmp_path_factory: pytest.TempPathFactory, home: Home) -> Iterator[NatsServer]:
    for server in running_nats(tmp_path_factory.mktemp("nats")):
        with ThreadPoolExecutor(1) as pool:  # the Qt loop runs on this thread
            pool.submit(
                asyncio.run, write_fleet(server.url, bucket_name(home.workspace.workspace_id))
            ).result()
        yield server


def cells(table: QTableWidget) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_fleet_view_shows_agents_models_and_errors(
    qtbot: QtBot, make_window: MakeWindow, home: Home, fleet_server: NatsServer, tmp_path: Path
) -> None:
    window = make_window()
    window.menus.act_fleet.trigger()
    view = window.menus.fleet_view
    assert view is not None and view.isVisible()
    assert "Give the fleet's NATS URL" in view.message.text()

    view.url_edit.setText(fleet_server.url)
    view.url_edit.editingFinished.emit()
    qtbot.waitUntil(lambda: view.agents_table.rowCount() == 2, timeout=15000)
    agents = cells(view.agents_table)
    assert agents[0][:3] == ["agent-a", "host-a", "orders"] and agents[0][4] == "alive"
    assert agents[1][:3] == ["agent-b", "host-b", "(none)"] and agents[1][4] == "silent past its TTL"
    assert float(agents[1][3].split()[0]) >= 60
    models = cells(view.models_table)
    assert [row[0] for row in models] == ["audit", "orders"]
    assert models[0][1] == "free" and models[0][2] == "—" and models[0][4] == "stopped"
    assert models[1][1] == "agent-a" and models[1][4] == "running"
    assert 42 <= float(models[1][2].split()[0]) < 80
    assert models[1][5] == "—" and models[1][6] == "to-stream: 7"  # webhook: no source lag
    assert "2 agent(s), 1 of 2 model(s) held" in view.message.text()
    assert app_settings().value(url_setting(home)) == fleet_server.url
    reads = view.reads
    qtbot.waitUntil(lambda: view.reads > reads, timeout=6000)  # read again on its own

    # "Watch live" with no route into a nats broker: nothing to watch, said in the window.
    view.watch_button.click()
    assert "Nothing to watch: no route publishes to a nats broker" in view.watch_status.text()
    assert not home.workspace.datasources

    # A URL where no server listens: the reason (without the URL's password), and no rows
    # left from the last read.
    port = free_port()
    view.url_edit.setText(f"nats://ed:hunter2@127.0.0.1:{port}")
    view.refresh_button.click()
    qtbot.waitUntil(lambda: "Cannot read the fleet" in view.message.text(), timeout=20000)
    assert f"Fleet: cannot connect to nats://127.0.0.1:{port}" in view.message.text()
    assert "hunter2" not in view.message.text()
    assert view.agents_table.rowCount() == 0 and view.models_table.rowCount() == 0

    # A server with no bucket for this workspace.
    for other in running_nats(tmp_path / "other"):
        view.url_edit.setText(other.url)
        view.refresh_button.click()
        qtbot.waitUntil(lambda: "no fleet bucket" in view.message.text(), timeout=20000)
        assert bucket_name(home.workspace.workspace_id) in view.message.text()

    # A name that is no nats broker or datasource of the workspace.
    view.url_edit.setText("nowhere")
    view.refresh_button.click()
    qtbot.waitUntil(lambda: "named 'nowhere'" in view.message.text(), timeout=20000)
    assert "Fleet: no broker or datasource named 'nowhere' in this workspace" in view.message.text()

    # Reopened later, the window offers the last URL that worked for this workspace.
    view.close()
    view.deleteLater()
    window.menus.fleet_view = None
    again = window.menus.show_fleet()
    assert again.url_edit.text() == fleet_server.url
    # The app shut down closes it: no window left behind reading the bucket.
    run(qtbot, window.shutdown(), timeout=15000)
    assert not again.isVisible() and not again.timer.isActive()


def test_fleet_urls_with_secrets_are_neither_shown_nor_kept() -> None:
    url = "nats://ed:pw1@h1:4222, nats://tok2@h2:4222,nats://h3:4222"
    assert has_credentials(url)
    assert not has_credentials("nats://h1:4222,tls://h2:4222")
    shown = redact_servers(
        "cannot connect to nats://ed:pw1@h1:4222, nats://tok2@h2:4222, nats://h3:4222", url
    )
    assert shown == "cannot connect to nats://ed:***@h1:4222, nats://***@h2:4222, nats://h3:4222"
