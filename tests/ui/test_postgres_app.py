"""The desktop app with a PostgreSQL source, end to end: a datasource and a model added through
the window's forms, started from the tree, rows arriving live as they are inserted, and an
update opened to see its diff against the row's previous version.

With ``EVENTDESK_SCREENSHOT`` set to a path, the window is saved there at the end (how
resources/screenshots/postgres-live.png was made).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from eventdesk.core.home import Home
from eventdesk.ui.event_detail import TAB_DIFF
from eventdesk.ui.event_table import EventRole
from eventdesk.ui.main_window import MainWindow
from eventdesk.ui.object_dialogs import DatasourceDialog, ModelDialog
from tests.peers.postgres_server import PASSWORD, PostgresServer, running_postgres
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)
from tests.ui.test_app_integration import choose, line_edit, node_state, rows, save, tree_action, type_into

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(180)]

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        server.execute("CREATE TABLE accounts (id text PRIMARY KEY, region text, balance numeric(12, 2))")
        server.execute("ALTER TABLE accounts OWNER TO pw_user")
        server.execute("GRANT CREATE ON DATABASE postgres TO pw_user")  # for the publication
        yield server


@pytest.fixture
def window(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, isolated_qsettings: Path, home: Home
) -> Iterator[MainWindow]:
    win = MainWindow(home)
    win.resize(1480, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    run(qtbot, win.shutdown(), timeout=10_000)
    win.close()
    win.deleteLater()


def test_rows_arrive_live_and_an_update_shows_its_diff(
    qtbot: QtBot, window: MainWindow, home: Home, pg: PostgresServer
) -> None:
    window.empty_state.add_datasource.click()
    dialog = window.last_dialog
    assert isinstance(dialog, DatasourceDialog)
    type_into(qtbot, dialog.name_edit, "pg")
    choose(dialog.kind_combo, "postgres")
    assert dialog.form is not None and dialog.secret is not None
    type_into(qtbot, line_edit(dialog, "url"), pg.password_url())
    dialog.form.editors["sslmode"].set_value("disable")
    dialog.secret.input.setText(PASSWORD)  # QTest's key clicks abort on its non-ASCII letter
    save(qtbot, dialog)
    qtbot.waitUntil(lambda: "datasource/pg" in window.tree.tree_model.keys)

    window.act_add_model.trigger()
    model_dialog = window.last_dialog
    assert isinstance(model_dialog, ModelDialog) and model_dialog.form is not None
    type_into(qtbot, model_dialog.name_edit, "accounts")  # the table: public.accounts
    save(qtbot, model_dialog)
    qtbot.waitUntil(lambda: "model/accounts" in window.tree.tree_model.keys)

    tree_action(window, "model/accounts", "start")
    qtbot.waitUntil(lambda: node_state(window, "model/accounts") == "running", timeout=WAIT_MS)
    cities = ["Bangalore", "Pune", "Chennai", "Mumbai", "Delhi"]
    for i, city in enumerate(cities, start=1):
        pg.execute("INSERT INTO accounts VALUES (%s, %s, %s)", (f"acct-{i}", city, 100 * i + 0.25))
    expected = [(f"acct-{i}", "created") for i in range(1, 6)]
    qtbot.waitUntil(lambda: rows(window) == expected, timeout=WAIT_MS)

    pg.execute("UPDATE accounts SET balance = 250.75, region = 'Pune' WHERE id = 'acct-2'")
    pg.execute("DELETE FROM accounts WHERE id = 'acct-5'")
    qtbot.waitUntil(
        lambda: rows(window)[-2:] == [("acct-2", "updated"), ("acct-5", "deleted")], timeout=WAIT_MS
    )
    row = window.table.model.rowCount() - 2
    updated = window.table.model.data(window.table.model.index(row, 0), EventRole)
    window.detail.tabs.setCurrentIndex(TAB_DIFF)
    window.table.table.selectRow(row)
    qtbot.waitUntil(lambda: window.detail.current_event == updated)
    qtbot.waitUntil(lambda: "250.75" in window.detail.diff_shown(), timeout=WAIT_MS)
    diff = window.detail.diff_shown().splitlines()
    assert '-  "balance": 200.25,' in diff and '+  "balance": 250.75,' in diff
    assert json.dumps(PASSWORD) not in home.paths.workspace_file.read_text()
    shot = os.environ.get("EVENTDESK_SCREENSHOT")
    if shot:
        qtbot.wait(300)  # let the layouts settle before grabbing
        assert window.grab().save(shot)


def test_removing_a_model_offers_to_drop_its_slot_on_the_server(
    qtbot: QtBot, window: MainWindow, home: Home, pg: PostgresServer
) -> None:
    from PySide6.QtWidgets import QMessageBox

    from eventdesk.connectors.postgres.settings import object_names

    pg.execute("CREATE TABLE leaving (id int PRIMARY KEY)")
    home.add_datasource("pgt", "postgres", {"url": pg.url, "sslmode": "disable"})
    home.add_model("leaving", "pgt", {"table": "public.leaving"})
    window.workspace_changed()
    tree_action(window, "model/leaving", "start")
    qtbot.waitUntil(lambda: node_state(window, "model/leaving") == "running", timeout=WAIT_MS)
    slot = object_names(home.workspace.workspace_id, "pgt", "leaving", "public", "leaving").slot
    count = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s"
    assert pg.execute(count, (slot,)) == [(1,)]

    tree_action(window, "model/leaving", "remove")
    qtbot.waitUntil(lambda: window.confirm_box is not None and window.confirm_box.isVisible())
    window.confirm_box.button(QMessageBox.StandardButton.Yes).click()  # type: ignore[union-attr]
    qtbot.waitUntil(
        lambda: (
            window.confirm_box is not None
            and window.confirm_box.isVisible()
            and slot in window.confirm_box.text()
        )
    )
    window.confirm_box.button(QMessageBox.StandardButton.Yes).click()  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: "leaving" not in home.workspace.models, timeout=WAIT_MS)
    assert pg.execute(count, (slot,)) == [(0,)]


def test_the_model_dialog_lists_the_tables_to_pick_from(
    qtbot: QtBot, window: MainWindow, home: Home, pg: PostgresServer
) -> None:
    pg.execute("CREATE TABLE picked (id int PRIMARY KEY)")
    pg.execute("CREATE TABLE unkeyed (v text)")
    home.add_datasource("pgl", "postgres", {"url": pg.url, "sslmode": "disable"})
    dialog = ModelDialog(home, datasource="pgl")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.browse_button.isVisible() and dialog.browse_button.text() == "List tables…"
    dialog.browse_button.click()
    qtbot.waitUntil(lambda: "found" in dialog.browse_status.text(), timeout=WAIT_MS)
    entries = [a.text() for a in dialog.browse_menu.actions()]
    assert "public.picked" in entries and "public.unkeyed (no primary key)" in entries
    type_into(qtbot, dialog.name_edit, "picked-model")
    next(a for a in dialog.browse_menu.actions() if a.text() == "public.picked").trigger()
    assert dialog.form is not None and dialog.form.values()["table"] == "public.picked"
    dialog.browse_menu.close()


def test_a_datasource_that_cannot_answer_says_why_in_the_dialog(
    qtbot: QtBot, window: MainWindow, home: Home, pg: PostgresServer
) -> None:
    from tests.peers.servers import free_port

    home.add_datasource(
        "gone", "postgres", {"url": f"postgresql://u@127.0.0.1:{free_port()}/db", "sslmode": "disable"}
    )
    dialog = ModelDialog(home, datasource="gone")
    qtbot.addWidget(dialog)
    dialog.browse_button.click()
    qtbot.waitUntil(lambda: dialog.browse_status.text().startswith("✘"), timeout=WAIT_MS)
    assert "datasource 'gone'" in dialog.browse_status.text()
    assert dialog.browse_button.isEnabled()
