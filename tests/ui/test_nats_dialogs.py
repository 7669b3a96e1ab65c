"""The app's forms for the nats source kind (generated from its schemas, offscreen): the
datasource's Test button against a real nats-server, and the model dialog: its stream, filter
subject and since in front, the JMESPath and core-subject options under Advanced, "List
streams…" offering the server's streams, and what is saved."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import nats
import pytest
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from eventdesk.core.home import Home
from eventdesk.ui.object_dialogs import DatasourceDialog, ModelDialog
from tests.peers.nats_server import NatsServer, running_nats
from tests.ui.conftest_main import home_fixture, qloop_fixture  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def nats_with_streams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    for server in running_nats(tmp_path_factory.mktemp("nats")):

        async def streams(url: str) -> None:
            nc = await nats.connect(url)
            js = nc.jetstream()
            await js.add_stream(name="ORDERS", subjects=["orders.>"])
            await js.add_stream(name="AUDIT", subjects=["audit.>"])
            await nc.close()

        with ThreadPoolExecutor(1) as pool:  # the Qt loop runs on this thread
            pool.submit(asyncio.run, streams(server.url)).result()
        yield server


@pytest.mark.usefixtures("qloop")
def test_nats_datasource_and_model_forms(qtbot: QtBot, home: Home, nats_with_streams: NatsServer) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.name_edit.setText("nd")
    dialog.kind_combo.setCurrentText("nats")
    assert dialog.form is not None
    url_edit = dialog.form.widget("url")
    assert isinstance(url_edit, QLineEdit)
    assert url_edit.placeholderText().startswith("nats://HOST:4222")
    assert {"url", "username", "creds", "nkey", "ca_file"} <= set(dialog.form.values())
    url_edit.setText(nats_with_streams.url)
    dialog.test.button.click()
    qtbot.waitUntil(lambda: dialog.test.result.text().startswith("✔"), timeout=20000)
    assert "JetStream on" in dialog.test.result.text()
    with qtbot.waitSignal(dialog.saved):
        dialog.save_button.click()

    model = ModelDialog(home, datasource="nd")
    qtbot.addWidget(model)
    model.show()
    assert model.form is not None
    model.name_edit.setText("orders")
    fields = model.form.values()
    assert set(fields) == {
        "stream",
        "subject",
        "since",
        "durable",
        "core_subject",
        "key_path",
        "op_path",
        "batch_size",
    }
    assert model.form.advanced_box is not None and not model.form.advanced_box.isVisible()
    for name in ("stream", "subject", "since"):
        assert model.form.widget(name).isVisible(), name
    for name in ("core_subject", "key_path", "op_path"):
        assert not model.form.widget(name).isVisible(), name
    assert model.browse_button.text() == "List streams…"
    model.browse_button.click()
    qtbot.waitUntil(lambda: model.browse_status.text() == "2 found", timeout=20000)
    assert [a.text() for a in model.browse_menu.actions()] == ["AUDIT", "ORDERS"]
    model.browse_menu.actions()[1].trigger()
    model.form.editors["since"].set_value("0")
    model.form.editors["key_path"].set_value("id")
    model.form.editors["key_path"].changed.emit()
    assert model.save_button.isEnabled()
    model.save_button.click()
    saved = home.workspace.model("orders").settings
    assert (saved["stream"], saved["since"], saved["key_path"], saved["subject"]) == ("ORDERS", "0", "id", "")
