"""The datasource's "Left on the server…" dialog against a real PostgreSQL cluster: testing the
datasource warns about the slot a removed model left, and the dialog, opened from the tree's menu
or the warning, lists the slot a removed model left (followed by nobody, holding WAL) beside
a followed one, offers Drop only for the first, asks, and drops its slot and publication; a
server that cannot be reached is named in the dialog, and one that does not answer can be
closed while it is asked.

With ``EVENTDESK_SCREENSHOT`` set to a path, the dialog is saved there once it lists (how
resources/screenshots/leftovers.png was made).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from eventdesk.connectors.postgres.settings import object_names
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from eventdesk.ui.leftovers_dialog import LeftoversDialog
from eventdesk.ui.main_window import MainWindow
from eventdesk.ui.notifications import Banner
from tests.peers.postgres_server import PostgresServer, running_postgres
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
    run,
)
from tests.ui.test_app_integration import tree_action

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]

WAIT_MS = 20_000
SLOTS = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s"
PUBLICATIONS = "SELECT count(*) FROM pg_publication WHERE pubname = %s"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        for table in ("orders", "invoices"):
            server.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
        yield server


async def make_slots(home: Home, *models: str) -> None:
    runtime = Runtime(home.workspace, home.capture)
    try:
        for m in models:
            await runtime.start_model(m)
        for _ in range(400):
            states = [runtime.state_of(f"model/{m}") for m in models]
            if all(s.state is State.RUNNING and "slot" in (s.detail or "") for s in states):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not running: {states}")
    finally:
        await runtime.aclose()


def banner_of(window: MainWindow) -> Banner | None:
    return next((b for b in window.notifications.banners if b.key == "leftovers/pg"), None)


def slot_left_by_orders(qtbot: QtBot, home: Home, pg: PostgresServer, rows: range) -> tuple[str, str]:
    """Models "orders" and "invoices" on datasource "pg" made their slots; "orders" was removed
    without dropping its slot, and ``rows`` were written to its table since. The slots' names
    (orders', invoices')."""
    home.add_datasource("pg", "postgres", {"url": pg.url, "sslmode": "disable"})
    home.add_model("orders", "pg", {"table": "orders"})
    home.add_model("invoices", "pg", {"table": "invoices"})
    run(qtbot, make_slots(home, "orders", "invoices"), timeout=WAIT_MS)
    home.remove("model", "orders")
    for i in rows:
        pg.execute("INSERT INTO orders VALUES (%s, repeat('x', 400))", (i,))
    ws = home.workspace.workspace_id
    return (
        object_names(ws, "pg", "orders", "public", "orders").slot,
        object_names(ws, "pg", "invoices", "public", "invoices").slot,
    )


def test_the_dialog_lists_what_is_left_and_drops_a_slot_nobody_follows(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, isolated_qsettings: Path, home: Home, pg: PostgresServer
) -> None:
    gone, kept = slot_left_by_orders(qtbot, home, pg, range(3000))

    win = MainWindow(home)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    try:
        tree_action(win, "datasource/pg", "test")  # passes, then warns about the slot nobody follows
        qtbot.waitUntil(lambda: banner_of(win) is not None, timeout=WAIT_MS)
        warning = banner_of(win)
        assert warning is not None and warning.level == "warning"
        assert warning.message.text().startswith(f"datasource 'pg': {gone}, followed by no model, holds ")
        assert warning.message.text().endswith("MB of WAL") and kept not in warning.details.toPlainText()
        assert "(replication slot + publication)" in warning.details.toPlainText()

        tree_action(win, "datasource/pg", "leftovers")
        qtbot.waitUntil(lambda: any(isinstance(d, LeftoversDialog) for d in win.dialogs))
        dialog = next(d for d in win.dialogs if isinstance(d, LeftoversDialog))
        qtbot.waitUntil(lambda: dialog.table.rowCount() == 2, timeout=WAIT_MS)
        assert dialog.status.text() == "2 found, 1 followed by no model" and not dialog.busy.isVisible()
        cells = {
            dialog.table.item(r, 0).text(): [dialog.table.item(r, c).text() for c in range(1, 5)]
            for r in range(2)
        }
        assert cells[gone][0] == "replication slot + publication" and cells[gone][2:] == ["no", "nobody"]
        assert cells[gone][1].endswith("MB of WAL")
        assert cells[kept][3] == "model 'invoices'"
        shot = os.environ.get("EVENTDESK_SCREENSHOT")
        if shot:
            dialog.table.selectRow(list(cells).index(gone))
            qtbot.wait(300)  # let the layouts settle before grabbing
            assert dialog.grab().save(shot)

        dialog.table.selectRow(list(cells).index(kept))
        assert not dialog.drop_button.isEnabled()  # a model follows it
        dialog.table.selectRow(list(cells).index(gone))
        assert dialog.drop_button.isEnabled()
        dialog.drop_button.click()
        qtbot.waitUntil(lambda: dialog.confirm_box is not None and dialog.confirm_box.isVisible())
        assert gone in dialog.confirm_box.text()  # type: ignore[union-attr]
        dialog.confirm_box.button(QMessageBox.StandardButton.Cancel).click()  # type: ignore[union-attr]
        qtbot.waitUntil(lambda: dialog.confirm_box is None)
        assert pg.execute(SLOTS, (gone,)) == [(1,)]  # asked, refused: kept
        dialog.drop_button.click()
        qtbot.waitUntil(lambda: dialog.confirm_box is not None and dialog.confirm_box.isVisible())
        dialog.confirm_box.button(QMessageBox.StandardButton.Yes).click()  # type: ignore[union-attr]
        qtbot.waitUntil(lambda: dialog.status.text().startswith("✔ dropped"), timeout=WAIT_MS)
        assert dialog.status.text() == f"✔ dropped replication slot {gone} and publication {gone}"
        assert pg.execute(SLOTS, (gone,)) == [(0,)] and pg.execute(PUBLICATIONS, (gone,)) == [(0,)]
        assert [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())] == [kept]
        dialog.close_button.click()
        qtbot.waitUntil(lambda: dialog not in win.dialogs)

        warning.action_buttons["leftovers"].click()  # the warning's button opens it too
        qtbot.waitUntil(lambda: any(isinstance(d, LeftoversDialog) for d in win.dialogs))
        again = next(d for d in win.dialogs if isinstance(d, LeftoversDialog))
        qtbot.waitUntil(lambda: again.status.text() == "1 found, 0 followed by no model", timeout=WAIT_MS)
        again.close_button.click()
    finally:
        run(qtbot, win.shutdown(), timeout=10_000)
        win.close()
        win.deleteLater()


def test_the_first_model_of_a_datasource_to_run_in_the_window_brings_the_warning(
    qtbot: QtBot, qloop: asyncio.AbstractEventLoop, isolated_qsettings: Path, home: Home, pg: PostgresServer
) -> None:
    """As ``eventdesk run`` does: the desk, kept open all day, says what is left once its model runs."""
    gone, _ = slot_left_by_orders(qtbot, home, pg, range(100_000, 100_500))

    win = MainWindow(home)
    win.show()
    qtbot.waitExposed(win)
    try:
        assert banner_of(win) is None
        win.commands.leftovers_delay = 0.2
        win.start_model("invoices")
        qtbot.waitUntil(lambda: banner_of(win) is not None, timeout=WAIT_MS)
        warning = banner_of(win)
        assert warning is not None and warning.level == "warning"
        assert warning.message.text().startswith(f"datasource 'pg': {gone}, followed by no model, holds ")
        assert "leftovers" in warning.action_buttons
    finally:
        run(qtbot, win.shutdown(), timeout=10_000)
        win.close()
        win.deleteLater()


@pytest.mark.usefixtures("qloop")
def test_a_server_that_cannot_be_reached_is_named_and_a_silent_one_can_be_closed(
    qtbot: QtBot, home: Home, pg: PostgresServer
) -> None:
    with socket.socket() as refused:
        refused.bind(("127.0.0.1", 0))
        port = refused.getsockname()[1]  # bound, not listening: connections refused
        home.add_datasource(
            "gone", "postgres", {"url": f"postgresql://u@127.0.0.1:{port}/db", "sslmode": "disable"}
        )
        dialog = LeftoversDialog(home, "gone")
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitUntil(lambda: dialog.status.text().startswith("✘"), timeout=WAIT_MS)
    assert "datasource 'gone'" in dialog.status.text() and not dialog.busy.isVisible()
    assert dialog.refresh_button.isEnabled() and not dialog.drop_button.isEnabled()

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts the TCP connection, never answers
        home.add_datasource(
            "silent",
            "postgres",
            {"url": f"postgresql://u@127.0.0.1:{silent.getsockname()[1]}/db", "sslmode": "disable"},
        )
        waiting = LeftoversDialog(home, "silent")
        qtbot.addWidget(waiting)
        waiting.show()
        qtbot.wait(300)
        assert waiting.loading and waiting.busy.isVisible() and waiting.status.text() == "Asking the server…"
        waiting.close_button.click()
        assert not waiting.isVisible()
        qtbot.waitUntil(lambda: not waiting.loading)
