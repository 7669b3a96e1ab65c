"""Non-modal notifications: a small stack of dismissable banners.

Errors from connectors and brokers land here (and on their tree node), never as a stream
of modal dialogs. A banner with the same ``key`` replaces the previous one, so a retrying
connector updates one banner instead of adding a new one per attempt. In the main window the
stack floats over the bottom right of the panes (:meth:`NotificationArea.overlay_on`): a banner
coming or going never moves or resizes the table.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QToolButton, QVBoxLayout, QWidget

LEVEL_STYLES = {
    "error": ("#fdecea", "#c62828", "✘"),
    "warning": ("#fff4e5", "#b26a00", "⚠"),
    "info": ("#e8f4fd", "#0b5394", "\u2139"),
    "success": ("#edf7ed", "#2e7d32", "✔"),
}
MAX_BANNERS = 4
OVERLAY_WIDTH = 560  # the floating stack's width at most
OVERLAY_MARGIN = 12


class Banner(QWidget):
    """One notification: icon, message, optional Details expander, dismiss button."""

    dismissed = Signal(object)
    reshaped = Signal()  # a button came in: its height may change

    def __init__(self, level: str, message: str, details: str | None, key: str | None) -> None:
        super().__init__()
        self.key = key
        self.level = level
        self.setObjectName("banner")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        background, foreground, glyph = LEVEL_STYLES.get(level, LEVEL_STYLES["info"])
        self.setStyleSheet(
            f"QWidget#banner {{ background: {background}; border: 1px solid {foreground};"
            f" border-radius: 4px; }} QLabel {{ color: {foreground}; }}"
        )
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 4, 4, 4)
        outer.setSpacing(2)
        row = QHBoxLayout()
        icon = QLabel(glyph)
        self.message = QLabel(message)
        self.message.setObjectName("banner_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(icon)
        row.addWidget(self.message, 1)
        self.details_button = QToolButton()
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.setVisible(bool(details))
        row.addWidget(self.details_button)
        self._row = row
        self.action_buttons: dict[str, QToolButton] = {}
        self._slots: dict[str, Callable[[], None]] = {}
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(lambda: self.dismissed.emit(self))
        self.close_button = close
        row.addWidget(close)
        outer.addLayout(row)
        self.details = QPlainTextEdit(details or "")
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(110)
        self.details.hide()
        self.details_button.toggled.connect(self.details.setVisible)
        outer.addWidget(self.details)

    def add_action(self, name: str, text: str, slot: Callable[[], None]) -> QToolButton:
        """A button on the banner that does what the message asks for ("Enter password…");
        added once per ``name`` (a banner updated in place keeps its button)."""
        self._slots[name] = slot
        button = self.action_buttons.get(name)
        if button is None:
            button = self.action_buttons[name] = QToolButton()
            button.setObjectName(f"banner_action_{name}")
            button.clicked.connect(lambda _checked=False: self._slots[name]())
            self._row.insertWidget(self._row.indexOf(self.details_button), button)
            self.reshaped.emit()
        button.setText(text)
        return button

    def update_content(self, level: str, message: str, details: str | None) -> None:
        self.level = level
        self.message.setText(message)
        self.details.setPlainText(details or "")
        self.details_button.setVisible(bool(details))


class NotificationArea(QWidget):
    """Holds the banners; hidden while there is none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notifications")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 4, 6, 0)
        self._layout.setSpacing(4)
        self.banners: list[Banner] = []
        self._host: QWidget | None = None
        self.hide()

    def overlay_on(self, host: QWidget) -> None:
        """Float over ``host``'s bottom right corner instead of taking room in a layout."""
        self._host = host
        self.setParent(host)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, False)
        host.installEventFilter(self)
        self._place()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._host and event.type() == QEvent.Type.Resize:
            self._place()
        return False

    def _place(self) -> None:
        host = self._host
        if host is None or not self.banners:
            return
        width = max(0, min(OVERLAY_WIDTH, host.width() - 2 * OVERLAY_MARGIN))
        layout = self._layout
        height = layout.heightForWidth(width) if layout.hasHeightForWidth() else self.sizeHint().height()
        height = min(max(height, self.sizeHint().height()), host.height() - 2 * OVERLAY_MARGIN)
        self.setGeometry(
            host.width() - width - OVERLAY_MARGIN, host.height() - height - OVERLAY_MARGIN, width, height
        )
        self.raise_()

    def notify(
        self, level: str, message: str, details: str | None = None, *, key: str | None = None
    ) -> Banner:
        """Show a banner; one with the same ``key`` is updated instead of stacking another."""
        if key is not None:
            for banner in self.banners:
                if banner.key == key:
                    banner.update_content(level, message, details)
                    self._place()
                    return banner
        banner = Banner(level, message, details, key)
        banner.dismissed.connect(self.dismiss)
        banner.details_button.toggled.connect(lambda _shown: QTimer.singleShot(0, self._place))
        banner.reshaped.connect(lambda: QTimer.singleShot(0, self._place))
        self.banners.append(banner)
        self._layout.addWidget(banner)
        while len(self.banners) > MAX_BANNERS:
            self.dismiss(self.banners[0])
        self.show()
        self._place()
        return banner

    def dismiss(self, banner: Banner) -> None:
        if banner in self.banners:
            self.banners.remove(banner)
            self._layout.removeWidget(banner)
            banner.deleteLater()
        self.setVisible(bool(self.banners))
        self._place()

    def dismiss_key(self, key: str) -> None:
        for banner in [b for b in self.banners if b.key == key]:
            self.dismiss(banner)

    def clear(self) -> None:
        for banner in list(self.banners):
            self.dismiss(banner)
