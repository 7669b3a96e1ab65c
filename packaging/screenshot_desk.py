"""What every screenshot script shares: a throw-away desk (an EventDesk home and QSettings in a
temporary directory, the main window shown at a fixed size), waiting on it, grabbing popups
where they opened, saving, and running a script's ``render`` on a qasync loop.

    async with desk() as (home, window): ...

Offscreen (QT_QPA_PLATFORM=offscreen, the default here) and under Xvfb alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtCore import QPoint, QSettings
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QWidget

from eventdesk.core.home import Home

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "resources" / "screenshots"
SIZE = (1480, 900)


@asynccontextmanager
async def desk(
    populate: Callable[[Home], None] | None = None, size: tuple[int, int] = SIZE
) -> AsyncIterator[tuple[Home, Any]]:
    """A main window on a fresh home (``populate`` fills it first), shown; shut down after."""
    from eventdesk.ui.main_window import MainWindow

    with tempfile.TemporaryDirectory(prefix="eventdesk-shot-") as tmp:
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(Path(tmp) / "qsettings"))
        home = Home.open(str(Path(tmp) / "home"))
        try:
            if populate is not None:
                populate(home)
            window = MainWindow(home)
            window.resize(*size)
            window.show()
            try:
                yield home, window
            finally:
                await window.shutdown()
                window.close()
        finally:
            home.close()
            QSettings.setDefaultFormat(QSettings.Format.NativeFormat)


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "the window") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def compose(window: QWidget, popups: list[QWidget]) -> QPixmap:
    """The window's picture with each open popup (a window of its own) painted at its place."""
    out = QPixmap(window.grab())
    origin = window.mapToGlobal(QPoint(0, 0))
    painter = QPainter(out)
    for popup in popups:
        painter.drawPixmap(popup.pos() - origin, popup.grab())
    painter.end()
    return out


def save(picture: QPixmap, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    if not picture.save(str(output)):
        raise SystemExit(f"could not write {output}")
    print(f"saved {output}")


def run(render: Callable[[Path], Coroutine[Any, Any, None]], default_output: Path) -> int:
    """``python packaging/screenshot_X.py [OUTPUT.png]``: ``render(output)`` on a qasync loop."""
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else default_output
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("EventDesk")
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        runner.run(render(output))
    return 0
