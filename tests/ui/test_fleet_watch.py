"""The Fleet window reaching a secured fleet by name, and "Watch live": a real ``eventdesk run
--fleet js`` agent (a copy of the workspace) holds a webhook model whose route publishes into
broker ``js``'s stream on a nats-server that demands a password (in the keyring); the window
reads the fleet through the broker's name, and "Watch live" makes (once) and starts a nats
datasource and model on the routes' subjects, so what the agent publishes appears in the main
table, with the fleet's model in ``source.model``. Nothing is left on the server.

With ``EVENTDESK_FLEET_SCREENSHOT`` / ``EVENTDESK_FLEET_LIVE_SCREENSHOT`` set to paths, the
Fleet window and the main window showing the fleet's events are saved there (how
resources/screenshots/fleet-view.png and fleet-live-events.png were made).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats
import pytest
from pytestqt.qtbot import QtBot

from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.ui.window_layout import app_settings
from tests.cli.harness import RunProcess, home_args
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
from tests.ui.test_fleet_view import cells

pytestmark = pytest.mark.timeout(150)

PASSWORD = "w4tch-live-pw"


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[NatsServer]:
    conf = f'authorization {{\n  user: ed\n  password: "{PASSWORD}"\n}}\n'
    yield from running_nats(tmp_path / "nats-pw", extra_conf=conf)


def post(url: str, doc: dict[str, object]) -> int:
    request = urllib.request.Request(
        url, json.dumps(doc).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=20) as reply:
        return int(reply.status)


async def server_state(url: str) -> tuple[int, int]:
    """(messages in stream EVENTS, consumers of it) as the server has them."""
    nc = await nats.connect(url, user="ed", password=PASSWORD)
    try:
        info = await nc.jetstream().stream_info("EVENTS")
        return int(info.state.messages), int(info.state.consumer_count)
    finally:
        await nc.close()


def test_watch_live_follows_what_the_agents_publish(
    qtbot: QtBot, make_window: MakeWindow, home: Home, secured_nats: NatsServer, tmp_path: Path
) -> None:
    hook_port = free_port()
    home.add_datasource("hook", "webhook", {"port": hook_port})
    for model in ("audit", "orders"):
        home.add_model(model, "hook", {})
    home.add_broker(
        "js",
        "nats",
        {
            "url": secured_nats.url,
            "username": "ed",
            "stream": "EVENTS",
            "create_stream": True,
            "subjects": "ed.>",
        },
        secret=PASSWORD,  # into this host's keyring (the suite's test backend)
    )
    for model in ("audit", "orders"):
        home.add_route(f"{model}-out", model, "js", {"topic": "ed.{model}.{op}", "format": "envelope"})
    # The agent's host: a copy of the workspace file (same id, so the same keyring account).
    agent_home = tmp_path / "agent-home"
    agent_home.mkdir()
    shutil.copy(home.paths.workspace_file, agent_home / "workspace.json")
    agent = RunProcess(
        home_args(agent_home), run_args=("--fleet", "js", "--agent-id", "a1", "--lease-ttl", "3")
    )
    try:
        agent.wait_line("fleet: agent 'a1'", timeout=60)
        window = make_window()
        view = window.menus.show_fleet()
        view.url_edit.setText("js")  # the broker's name: its URL, user name and keyring secret
        view.url_edit.editingFinished.emit()
        qtbot.waitUntil(
            lambda: [row[:2] for row in cells(view.models_table)] == [["audit", "a1"], ["orders", "a1"]],
            timeout=30000,
        )
        assert app_settings().value(f"fleet/{home.workspace.workspace_id}/url") == "js"  # a name: no secret

        view.watch_button.click()
        qtbot.waitUntil(lambda: "Watching live" in view.watch_status.text(), timeout=30000)
        assert "model fleet-js" in view.watch_status.text() and "ed.*.*" in view.watch_status.text()
        ws = home.workspace
        assert ws.datasources["fleet-js"].kind == "nats"
        # The stream itself, as it keeps each change (once), through an ephemeral consumer.
        follow = ws.models["fleet-js"].settings
        assert (follow["stream"], follow["subject"], follow["durable"]) == ("EVENTS", "ed.*.*", False)
        assert (
            "reads stream EVENTS (ed.*.*) from now on through an ephemeral consumer"
            in view.watch_status.text()
        )
        ds_secret, broker_secret = ws.datasources["fleet-js"].secret, ws.brokers["js"].secret
        assert ds_secret is not None and broker_secret is not None and ds_secret != broker_secret
        qtbot.waitUntil(
            lambda: window.runtime.state_of("model/fleet-js").state is State.RUNNING, timeout=20000
        )
        # The fleet's events, live, in the main table.
        for model, n in (("orders", 3), ("audit", 2)):
            for i in range(n):
                status = post(f"http://127.0.0.1:{hook_port}/hooks/{model}", {"id": f"{model[0]}{i}", "n": i})
                assert 200 <= status < 300

        def fleet_rows() -> list[dict[str, object]]:
            table = window.table.model
            rows = [table.event_at(r).envelope for r in range(table.rowCount())]
            return [e for e in rows if e["model"] == "fleet-js"]

        qtbot.waitUntil(lambda: len(fleet_rows()) == 5, timeout=30000)
        by_model = {(r["source"]["model"], r["key"]) for r in fleet_rows()}  # type: ignore[index]
        assert by_model == {
            ("orders", "o0"),
            ("orders", "o1"),
            ("orders", "o2"),
            ("audit", "a0"),
            ("audit", "a1"),
        }
        # Filterable by the fleet's model, as any event by its fields.
        window.filter_bar.set_expression("source.model == 'orders'")
        qtbot.waitUntil(lambda: len(fleet_rows()) == 3, timeout=10000)
        # The Fleet window lists the fleet's models, not the desk's watch.
        qtbot.waitUntil(lambda: view.reads > 1 and view.models_table.rowCount() == 2, timeout=10000)

        # Twice: the same datasource and model, still running.
        view.watch_button.click()
        qtbot.waitUntil(lambda: "Watching live" in view.watch_status.text(), timeout=30000)
        assert sorted(home.workspace.datasources) == ["fleet-js", "hook"]
        assert sorted(home.workspace.models) == ["audit", "fleet-js", "orders"]
        # The stream kept the agent's messages; the watch reads them through one consumer that
        # goes when the watch stops.
        with ThreadPoolExecutor(1) as pool:  # the Qt loop runs on this thread
            messages, consumers = pool.submit(asyncio.run, server_state(secured_nats.url)).result()
        assert (messages, consumers) == (5, 1)
        run(qtbot, window.runtime.stop_model("fleet-js"), timeout=10000)

        def consumers_left() -> int:
            with ThreadPoolExecutor(1) as pool:
                return int(pool.submit(asyncio.run, server_state(secured_nats.url)).result()[1])

        qtbot.waitUntil(lambda: consumers_left() == 0, timeout=20000)

        if os.environ.get("EVENTDESK_FLEET_SCREENSHOT"):
            qtbot.wait(300)
            assert view.grab().save(os.environ["EVENTDESK_FLEET_SCREENSHOT"])
        if os.environ.get("EVENTDESK_FLEET_LIVE_SCREENSHOT"):
            window.table.table.selectRow(0)  # its envelope in the detail pane: source.model and the rev
            qtbot.wait(500)
            assert window.grab().save(os.environ["EVENTDESK_FLEET_LIVE_SCREENSHOT"])
    finally:
        assert agent.stop(20) == 0, agent.output()
    assert PASSWORD not in agent.output()
    assert PASSWORD not in home.paths.workspace_file.read_text()


def test_several_brokers_are_offered_in_a_menu(qtbot: QtBot, make_window: MakeWindow, home: Home) -> None:
    home.add_datasource("hook", "webhook", {"port": free_port()})
    home.add_model("orders", "hook", {})
    for broker in ("eu", "us"):
        home.add_broker(broker, "nats", {"url": f"nats://127.0.0.1:{free_port()}"})
        home.add_route(f"to-{broker}", "orders", broker, {"topic": f"{broker}.{{model}}"})
    window = make_window()
    view = window.menus.show_fleet()
    view.watch_button.click()
    assert [a.text() for a in view.watch_menu.actions()] == ["Broker eu", "Broker us"]
    assert view.watch_menu.isVisible()
    view.watch_menu.close()
    assert sorted(home.workspace.datasources) == ["hook"]  # nothing made before a pick


def test_a_secret_this_host_lacks_is_asked_once(
    qtbot: QtBot, make_window: MakeWindow, home: Home, secured_nats: NatsServer
) -> None:
    import keyring

    from eventdesk.core.secrets import SERVICE
    from eventdesk.ui.fleet_watch import FleetWatch

    home.add_datasource("hook", "webhook", {"port": free_port()})
    home.add_model("orders", "hook", {})
    home.add_broker("js", "nats", {"url": secured_nats.url, "username": "ed"}, secret=PASSWORD)
    home.add_route("to-js", "orders", "js", {"topic": "ed.{model}.{op}"})
    ref = home.workspace.brokers["js"].secret
    assert ref is not None
    keyring.delete_password(SERVICE, ref.name)  # the file came from another host
    window = make_window()
    view = window.menus.show_fleet()
    assert isinstance(view.watch, FleetWatch)
    view.watch_button.click()
    qtbot.waitUntil(lambda: view.watch.secret_dialog is not None, timeout=10000)
    view.watch.secret_dialog.reject()  # not now: made, not started, and said so
    qtbot.waitUntil(lambda: "Cannot watch the fleet's stream" in view.watch_status.text(), timeout=10000)
    assert "datasource 'fleet-js': field 'secret': not started" in view.watch_status.text()
    assert not window.runtime.is_running("model", "fleet-js")
    view.watch_button.click()  # asked again
    qtbot.waitUntil(lambda: view.watch.secret_dialog is not None, timeout=10000)
    dialog = view.watch.secret_dialog
    assert dialog is not None and dialog.name == "fleet-js" and dialog.object_type == "datasource"
    dialog.field.input.setText(PASSWORD)
    dialog.save()
    qtbot.waitUntil(lambda: "Watching live" in view.watch_status.text(), timeout=20000)
    qtbot.waitUntil(lambda: window.runtime.state_of("model/fleet-js").state is State.RUNNING, timeout=20000)
