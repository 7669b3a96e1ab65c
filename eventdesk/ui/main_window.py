"""The main window: sidebar of objects, live event table, detail pane."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow

from eventdesk.core.home import Home

EMPTY_STATE = (
    "<h2>Welcome to EventDesk</h2>"
    "<p>Your workspace is empty.</p>"
    "<p>Add a <b>datasource</b> (a Cloudant or CouchDB server) and a <b>model</b> (one of its databases) "
    "to watch its change events, then a <b>broker</b> (MQTT) and a <b>route</b> to republish them.</p>"
)


class MainWindow(QMainWindow):
    def __init__(self, home: Home) -> None:
        super().__init__()
        self.home = home
        self.setWindowTitle("EventDesk")
        self.resize(1200, 760)
        empty = QLabel(EMPTY_STATE)
        empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        empty.setWordWrap(True)
        self.setCentralWidget(empty)

    async def shutdown(self) -> None:
        """Stop everything that runs; called once when the app quits."""
