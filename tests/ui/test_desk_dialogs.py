"""Dialogs that guide (issue 16): fields in the order a user knows them, errors naming fields
by their labels, placeholders that follow the kind, a test result that goes when what it
tested changes, "Since" in words, and the route formats explained with an example each."""

from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QWidget
from pytestqt.qtbot import QtBot

from eventdesk.core.envelope import PAYLOAD_FORMATS, Event, encode_payload
from eventdesk.core.errors import ConfigError
from eventdesk.core.home import Home
from eventdesk.ui.dialog_guidance import FORMAT_EXAMPLES, reason_of, schema_of
from eventdesk.ui.object_dialogs import DatasourceDialog, ModelDialog, RouteDialog
from tests.peers.servers import free_port
from tests.ui.conftest_main import (  # noqa: F401 - fixtures
    home_fixture,
    isolated_qsettings_fixture,
    qloop_fixture,
)

pytestmark = pytest.mark.gui


def labels(form: QFormLayout) -> list[str]:
    out = []
    for row in range(form.rowCount()):
        item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
        if item is not None and isinstance(item.widget(), QLabel) and not item.widget().isHidden():
            out.append(item.widget().text().rstrip(":").rstrip(" *"))
    return out


def shown_labels(dialog: DatasourceDialog) -> list[str]:
    assert dialog.form is not None
    return labels(dialog.header) + labels(dialog.form.form)


def test_datasource_fields_in_the_order_a_user_knows_them(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.kind_combo.setCurrentText("couchdb")
    assert shown_labels(dialog)[:6] == [
        "Kind",
        "Name",
        "URL",
        "Authentication",
        "Username",
        "Password / API key",
    ]
    dialog.kind_combo.setCurrentText("postgres")  # the secret row follows the kind's form
    order = shown_labels(dialog)
    assert order[:4] == ["Kind", "Name", "URL", "Password"]
    assert dialog.secret is not None and dialog.secret.isVisible()


def test_the_header_and_the_form_share_one_label_column(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    for kind in ("couchdb", "postgres", "webhook"):
        dialog.kind_combo.setCurrentText(kind)
        qtbot.wait(10)  # the layouts settle on the next turn
        assert dialog.form is not None
        lefts = {
            layout.itemAt(r, QFormLayout.ItemRole.FieldRole)
            .widget()
            .mapTo(dialog, dialog.rect().topLeft())
            .x()
            for layout in (dialog.header, dialog.form.form)
            for r in range(layout.rowCount())
            if layout.itemAt(r, QFormLayout.ItemRole.FieldRole) is not None
            and layout.itemAt(r, QFormLayout.ItemRole.LabelRole) is not None
            and not layout.itemAt(r, QFormLayout.ItemRole.FieldRole).widget().isHidden()
        }
        assert len(lefts) == 1, (kind, lefts)


def test_url_placeholder_follows_the_kind(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)

    def placeholder() -> str:
        assert dialog.form is not None
        edit = dialog.form.widget("url")
        assert isinstance(edit, QLineEdit)
        return edit.placeholderText()

    dialog.kind_combo.setCurrentText("couchdb")
    assert placeholder() == "http://localhost:5984"
    dialog.kind_combo.setCurrentText("postgres")
    assert placeholder().startswith("postgresql://")
    dialog.kind_combo.setCurrentText("cloudant")
    assert "cloudant" in placeholder()
    dialog.kind_combo.setCurrentText("nats")
    assert placeholder().startswith("nats://")
    kinds = [dialog.kind_combo.itemText(i) for i in range(dialog.kind_combo.count())]
    shown = {}
    for kind in kinds:  # every kind with a URL field has a placeholder of its own
        dialog.kind_combo.setCurrentText(kind)
        assert dialog.form is not None
        if "url" in dialog.form.editors:
            shown[kind] = placeholder()
    assert set(shown) == {"couchdb", "cloudant", "postgres", "nats"}
    assert len(set(shown.values())) == len(shown)


@pytest.mark.usefixtures("qloop")
def test_errors_name_fields_by_label_and_a_test_result_goes_on_edit(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.name_edit.setText("couch")
    dialog.kind_combo.setCurrentText("couchdb")
    assert dialog.form is not None and dialog.secret is not None
    url = dialog.form.widget("url")
    assert isinstance(url, QLineEdit)
    url.setText(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    dialog.test.button.click()
    qtbot.waitUntil(lambda: dialog.test.result.text().startswith("✘"), timeout=20000)
    assert "field '" not in dialog.test.result.text()
    url.setText(url.text() + "/")  # what was tested changed: the old verdict goes
    assert dialog.test.result.text() == ""
    dialog.test.button.click()
    qtbot.waitUntil(lambda: dialog.test.result.text().startswith("✘"), timeout=20000)
    dialog.secret.input.setText("pw")
    assert dialog.test.result.text() == ""
    # an error naming the secret names it by its label
    described = dialog.describe(ConfigError("HTTP 401", obj="datasource 'couch'", field="secret"))
    assert described == "datasource 'couch': Password / API key: HTTP 401"
    dialog.show_error(ConfigError("too short", obj="datasource 'couch'", field="nowhere"))
    assert dialog.general_error.text() == "datasource 'couch': nowhere: too short"


def test_since_in_words_stored_as_now_or_0(qtbot: QtBot, home: Home) -> None:
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    dialog = ModelDialog(home, datasource="couch")
    qtbot.addWidget(dialog)
    assert dialog.form is not None
    combo = dialog.form.widget("since")
    assert isinstance(combo, QComboBox)
    assert [combo.itemText(i) for i in range(combo.count())] == ["From now", "From the beginning"]
    assert dialog.form.values()["since"] == "now"
    combo.setCurrentIndex(1)
    assert dialog.form.values()["since"] == "0"
    dialog.name_edit.setText("accounts")
    dialog.save()
    assert home.workspace.models["accounts"].settings["since"] == "0"
    edit = ModelDialog(home, "accounts")
    qtbot.addWidget(edit)
    assert edit.form is not None
    again = edit.form.widget("since")
    assert isinstance(again, QComboBox) and again.currentText() == "From the beginning"


def test_route_formats_explained_with_an_example_each(qtbot: QtBot, home: Home) -> None:
    home.add_datasource("hooks", "webhook", {"port": free_port()})
    home.add_model("accounts", "hooks", {"path": "/hooks/accounts"})
    home.add_broker("local", "local", {"port": free_port()})
    dialog = RouteDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    text = dialog.format_examples.text()
    assert dialog.format_examples.isVisible()
    for name in ("envelope", "model-message", "payload"):
        assert f"<b>{name}</b>" in text
    assert '{"model": "accounts", "message": {"_id": "acc-42", "balance": 10}}' in text
    # each example is what the route really sends for that document (the envelope's keys in order)
    event = Event(
        datasource="couch",
        model="accounts",
        op="updated",
        key="acc-42",
        rev="2-x",
        seq="9",
        payload={"_id": "acc-42", "balance": 10},
    ).to_dict()
    examples = {name: example for name, _what, example in FORMAT_EXAMPLES}
    assert set(examples) == set(PAYLOAD_FORMATS)
    for name in ("model-message", "payload"):
        assert json.loads(examples[name]) == json.loads(encode_payload(event, name))
    sent_keys = list(json.loads(encode_payload(event, "envelope")))
    at = [examples["envelope"].find(f'"{key}": ') for key in sent_keys]
    assert -1 not in at and at == sorted(at)  # every key the envelope sends, in its order


def test_a_reason_names_its_field_by_label_and_the_object_once(home: Home) -> None:
    home.add_datasource("couch", "couchdb", {"url": "http://127.0.0.1:5984"})
    home.add_model("accounts", "couch", {"database": "accounts"})
    ws = home.workspace
    own = ConfigError("HTTP 401", obj="datasource 'couch'", field="secret")
    assert reason_of(own, "datasource", "couch", ws) == ("Password / API key: HTTP 401")
    # a model's test failing on its datasource's field names that datasource
    assert reason_of(own, "model", "accounts", ws) == ("datasource 'couch': Password / API key: HTTP 401")
    missing = ConfigError("database not found", obj="model 'accounts'", field="database")
    assert reason_of(missing, "model", "accounts", ws) == ("Database: database not found")
    assert schema_of(ws, "broker", "nowhere") is None


def test_tab_goes_down_the_rows_as_they_show(qtbot: QtBot, home: Home) -> None:
    dialog = DatasourceDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.kind_combo.setCurrentText("couchdb")
    assert dialog.form is not None and dialog.secret is not None
    expected = [
        dialog.kind_combo,
        dialog.name_edit,
        dialog.form.widget("url"),
        dialog.form.widget("auth"),
        dialog.form.widget("username"),
        dialog.secret.input,
    ]
    order: list[QWidget] = []
    widget: QWidget = dialog.kind_combo
    for _ in range(200):
        if widget in expected and widget not in order:
            order.append(widget)
        widget = widget.nextInFocusChain()
    assert order == expected
