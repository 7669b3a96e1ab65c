"""Render the datasource dialog after a failed connection test.

    python packaging/screenshot_dialog.py [OUTPUT.png]

Add datasource ▸ couchdb, a URL on a free local port where nothing listens, basic auth with a
user name and a password, then Test: the dialog says what failed, naming the field by its label.
No server or network is needed (the test really connects, and is refused); the password goes to
the tests' in-memory keyring (tests/keyring_backend.py), never to the machine's.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import keyring
from PySide6.QtWidgets import QComboBox, QLineEdit
from screenshot_desk import ROOT, SCREENSHOTS, desk, run, save, wait_for

sys.path.insert(0, str(ROOT))  # tests/ is not installed: its keyring backend is taken from there
from tests.keyring_backend import TestKeyring


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def render(output: Path) -> None:
    keyring.set_keyring(TestKeyring())
    async with desk() as (_home, window):
        window.empty_state.add_datasource.click()
        dialog = window.last_dialog
        assert dialog is not None and dialog.form is not None
        dialog.name_edit.setText("couch-staging")
        dialog.kind_combo.setCurrentText("couchdb")
        url = dialog.form.widget("url")
        assert isinstance(url, QLineEdit)
        url.setText(f"http://127.0.0.1:{free_port()}")
        auth = dialog.form.widget("auth")
        if isinstance(auth, QComboBox):
            auth.setCurrentText("basic")
        user = dialog.form.widget("username")
        if isinstance(user, QLineEdit):
            user.setText("replicator")
        assert dialog.secret is not None
        dialog.secret.input.setText("not-the-password")
        dialog.test.button.click()
        await wait_for(lambda: dialog.test.result.text().startswith("✘"), what="the test to fail")
        save(dialog.grab(), output)  # the dialog is a window of its own
        dialog.reject()


if __name__ == "__main__":
    sys.exit(run(render, SCREENSHOTS / "datasource-failed-test.png"))
