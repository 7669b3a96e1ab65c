"""The app's icons, all loaded here: ``app_icon()``, ``icon(name)`` for actions, ``state_icon(state)``.

The SVGs live once, in ``eventdesk/ui/icon_files/`` (edited there; shipped as package data),
and are found next to this module in a source checkout or a pip install, and under
``sys._MEIPASS`` in a PyInstaller bundle. Each icon is rendered with QSvgRenderer at the sizes
a toolbar, tree or HiDPI screen asks for; on a dark palette the slate glyph colour is swapped
for a light one so the icons stay legible.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

from eventdesk.core.contracts import State

ACTIONS = (
    "add-datasource",
    "add-model",
    "add-broker",
    "add-route",
    "start",
    "stop",
    "pause",
    "export",
    "test-connection",
    "republish",
    "open-recording",
    "send-samples",
)
APP_ICON = "eventdesk"
ICON_SIZES = (16, 20, 24, 32, 48, 64)
APP_ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)

GLYPH = b"#37474f"  # the slate every action glyph is drawn in (see icon_files/actions)
GLYPH_ON_DARK = b"#cfd8dc"


def icon_dir() -> Path:
    """Where the SVGs are: inside the bundle when frozen, else next to this module."""
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / "eventdesk" / "ui" / "icon_files"
    return Path(__file__).resolve().parent / "icon_files"


def icon_path(name: str) -> Path:
    """The SVG for an action name, a :class:`State` value or ``"eventdesk"`` (the app)."""
    if name == APP_ICON:
        return icon_dir() / f"{APP_ICON}.svg"
    if name in ACTIONS:
        return icon_dir() / "actions" / f"{name}.svg"
    if name in {s.value for s in State}:
        return icon_dir() / "states" / f"{name}.svg"
    raise KeyError(f"no icon named {name!r}")


def missing_icons() -> list[str]:
    """Names whose SVG is absent or does not render (empty when the install is complete)."""
    names = [APP_ICON, *ACTIONS, *(s.value for s in State)]
    return [n for n in names if not QSvgRenderer(str(icon_path(n))).isValid()]


def _dark_palette() -> bool:
    app = QGuiApplication.instance()
    if not isinstance(app, QGuiApplication):
        return False
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


@cache
def _render(name: str, sizes: tuple[int, ...], dark: bool) -> QIcon:
    data = icon_path(name).read_bytes()
    if dark:
        data = data.replace(GLYPH, GLYPH_ON_DARK)
    renderer = QSvgRenderer(QByteArray(data))
    result = QIcon()
    if not renderer.isValid():
        return result
    for size in sizes:
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        result.addPixmap(pixmap)
    return result


def icon(name: str) -> QIcon:
    """An action's icon, e.g. ``icon("start")``; ``KeyError`` for a name not in ``ACTIONS``."""
    if name not in ACTIONS:
        raise KeyError(f"no action icon named {name!r}; known: {', '.join(ACTIONS)}")
    return _render(name, ICON_SIZES, _dark_palette())


def state_icon(state: State) -> QIcon:
    """The disc shown for a connector or broker state: colour and mark differ per state."""
    return _render(State(state).value, ICON_SIZES, False)


def app_icon() -> QIcon:
    """The application icon (window, task bar, about box)."""
    return _render(APP_ICON, APP_ICON_SIZES, False)
