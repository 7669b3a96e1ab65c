"""The settings form is generated from a schema and checks every edit with Field.coerce."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
)
from pytestqt.qtbot import QtBot

from eventdesk.core.registry import broker_class, connector_class
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.ui.settings_form import SettingsForm


def make(qtbot: QtBot, schema: Schema) -> SettingsForm:
    form = SettingsForm(schema, obj="datasource 'x'")
    qtbot.addWidget(form)
    form.show()
    return form


def test_cloudant_datasource_form_is_generated_without_secret(qtbot: QtBot) -> None:
    form = make(qtbot, connector_class("cloudant").datasource_schema)
    assert set(form.editors) == {"url", "auth", "username", "timeout"}  # no "secret"
    assert isinstance(form.widget("url"), QLineEdit)
    assert isinstance(form.widget("auth"), QComboBox)
    assert isinstance(form.widget("timeout"), QDoubleSpinBox)
    assert form.widget("url").toolTip().startswith("Base URL of the server")
    assert "cloudantnosqldb" in form.widget("url").placeholderText()
    # "timeout" is advanced: hidden until the Advanced group is expanded
    assert form.advanced_toggle is not None and form.advanced_box is not None
    assert not form.widget("timeout").isVisible()
    form.advanced_toggle.click()
    assert form.widget("timeout").isVisible()
    spin = form.widget("timeout")
    assert isinstance(spin, QDoubleSpinBox)
    assert (spin.minimum(), spin.maximum(), spin.value()) == (1, 600, 60)


def test_mqtt_broker_form_is_generated(qtbot: QtBot) -> None:
    form = make(qtbot, broker_class("mqtt").schema)
    assert "secret" not in form.editors
    assert isinstance(form.widget("protocol"), QComboBox)
    keepalive = form.widget("keepalive")
    assert isinstance(keepalive, QSpinBox)
    assert (keepalive.minimum(), keepalive.maximum(), keepalive.value()) == (5, 3600, 30)
    assert isinstance(form.widget("tls_insecure"), QCheckBox)
    # path fields get a file picker button beside them
    assert form.editors["ca_file"].findChild(QToolButton) is not None
    assert form.values()["protocol"] == "3.1.1"


def test_a_typed_relative_file_path_is_taken_as_absolute(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    form = make(qtbot, broker_class("mqtt").schema)
    edit = form.widget("ca_file")
    assert isinstance(edit, QLineEdit)
    edit.setText("ca.pem")
    assert form.values()["ca_file"] == str(tmp_path / "ca.pem")
    assert edit.text() == "ca.pem"  # what was typed stays as typed while editing
    edit.setText("")
    assert form.values()["ca_file"] == ""


def test_invalid_url_marks_the_field_and_reports_invalid(qtbot: QtBot) -> None:
    form = make(qtbot, connector_class("cloudant").datasource_schema)
    url = form.widget("url")
    assert isinstance(url, QLineEdit)
    with qtbot.waitSignal(form.validChanged) as blocker:
        url.setText("https://db.example.com")
    assert blocker.args == [True]
    with qtbot.waitSignal(form.validChanged) as blocker:
        url.setText("not a url")
    assert blocker.args == [False]
    error = form.editors["url"].error
    assert error.isVisible()
    assert error.text().startswith("URL:") and "not a URL" in error.text()
    assert url.property("invalid") is True
    assert "border" in url.styleSheet()
    url.setText("ftp://db.example.com")
    assert "scheme must be one of http, https" in error.text()
    url.setText("https://db.example.com:5984")
    assert not error.isVisible()
    assert form.is_valid()
    assert url.styleSheet() == ""


def test_cross_check_names_the_field(qtbot: QtBot) -> None:
    form = make(qtbot, connector_class("cloudant").datasource_schema)
    form.set_values({"url": "https://db.example.com", "auth": "basic"})
    assert not form.is_valid()
    assert form.errors() == {"username": "basic and session authentication need a username"}
    assert form.editors["username"].error.text().startswith("Username:")
    edit = form.widget("username")
    assert isinstance(edit, QLineEdit)
    edit.setText("admin")
    assert form.is_valid()


def test_json_field_and_round_trip(qtbot: QtBot) -> None:
    schema = connector_class("cloudant").model_schema
    form = make(qtbot, schema)
    selector = form.widget("selector")
    assert isinstance(selector, QPlainTextEdit)
    form.set_values({"database": "accounts"})
    selector.setPlainText("{oops")
    assert "invalid JSON" in form.errors()["selector"]
    selector.setPlainText('{"region": "Bangalore"}')
    assert form.is_valid()
    validated = schema.validate(form.values(), "model 'm'")
    assert validated["selector"] == {"region": "Bangalore"}
    assert validated["database"] == "accounts"
    other = make(qtbot, schema)
    other.set_values(validated)
    assert schema.validate(other.values(), "model 'm'") == validated


def test_a_new_kind_needs_no_ui_code(qtbot: QtBot) -> None:
    schema = Schema(
        kind="made-up",
        fields=(
            Field("host", "url", required=True),
            Field("retries", "int", default=3, minimum=0, maximum=9),
            Field("mode", "choice", default="b", choices=("a", "b")),
            Field("token", "secret"),
        ),
    )
    form = make(qtbot, schema)
    assert list(form.editors) == ["host", "retries", "mode"]
    assert form.values() == {"host": "", "retries": 3, "mode": "b"}
    assert form.errors() == {"host": "a value is required"}
    form.set_error("mode", "refused by the server")
    assert form.editors["mode"].error.text() == "Mode: refused by the server"
    assert form.set_error("nope", "x") is False
