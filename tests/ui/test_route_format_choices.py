"""The route form offers the payload formats under their current names (model-message, not seed)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox
from pytestqt.qtbot import QtBot

from eventdesk.core.workspace import ROUTE_SCHEMA
from eventdesk.ui.settings_form import SettingsForm


def test_the_route_form_offers_envelope_model_message_and_payload(qtbot: QtBot) -> None:
    form = SettingsForm(ROUTE_SCHEMA, obj="route 'out'")
    qtbot.addWidget(form)
    combo = form.widget("format")
    assert isinstance(combo, QComboBox)
    assert [combo.itemText(i) for i in range(combo.count())] == ["envelope", "model-message", "payload"]
    form.set_values({"format": "model-message"})
    assert form.values()["format"] == "model-message"
    assert "model-message: {model, message}" in combo.toolTip()
