"""The first-launch page of the window: what to do with an empty workspace, and buttons to do it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

EMPTY_STATE = (
    "<h2>Welcome to EventDesk</h2>"
    "<p>Your workspace is empty. Three steps to a live, republished event stream:</p>"
    "<ol>"
    "<li>Add a <b>datasource</b>: a Cloudant or CouchDB server, its URL and credentials "
    "(the password goes to your OS keyring, never to a file).</li>"
    "<li>Add a <b>model</b>: one of its databases. Start it and its change events arrive "
    "in the table, captured on disk.</li>"
    "<li>Add a <b>broker</b> (MQTT) and switch <b>republishing</b> on for a model.</li>"
    "</ol>"
    "<p>New here? <b>Open the demo workspace</b>: a local webhook receives sample account "
    "changes and the built-in MQTT broker republishes them to <code>/v1/subutest</code>. "
    "Nothing to install.</p>"
)


class EmptyState(QWidget):
    """The first-launch page: what to do, and buttons to do it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("empty_state")
        text = QLabel(EMPTY_STATE)
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.RichText)
        text.setFixedWidth(560)  # a layout would otherwise give the wrapped text too little height
        text.setMinimumHeight(text.heightForWidth(560))
        self.add_datasource = QPushButton("Add datasource…")
        self.add_datasource.setObjectName("empty_add_datasource")
        self.add_broker = QPushButton("Add broker…")
        self.add_broker.setObjectName("empty_add_broker")
        self.open_demo = QPushButton("Open the demo workspace")
        self.open_demo.setObjectName("empty_open_demo")
        self.open_demo.setDefault(True)  # a newcomer's first click: see the whole job done
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.open_demo)
        buttons.addWidget(self.add_datasource)
        buttons.addWidget(self.add_broker)
        buttons.addStretch(1)
        column = QVBoxLayout()
        column.addStretch(1)
        column.addWidget(text, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addSpacing(12)
        column.addLayout(buttons)
        column.addStretch(2)
        self.setLayout(column)
