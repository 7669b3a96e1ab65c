"""Start-up in one place: Qt application, qasync loop, main window, clean quit.

qasync is imported here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from types import TracebackType

import qasync
from PySide6.QtWidgets import QApplication, QMessageBox

from eventdesk import __version__
from eventdesk.core.home import Home

log = logging.getLogger(__name__)


def _install_excepthook() -> None:
    def hook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        log.error("unhandled error", exc_info=(etype, value, tb))
        app = QApplication.instance()
        if app is not None:
            box = QMessageBox(QMessageBox.Icon.Critical, "EventDesk: unexpected error", str(value))
            box.setDetailedText("".join(traceback.format_exception(etype, value, tb)))
            box.setModal(False)
            box.show()

    sys.excepthook = hook


async def _main(home_dir: str | None) -> int:
    from eventdesk.ui.main_window import MainWindow

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    # The window's close only asks to quit: shutdown (stopping connectors, flushing routes)
    # must run while the loop still turns, so Qt may not end the loop on its own.
    app.setQuitOnLastWindowClosed(False)
    quit_event = asyncio.Event()
    app.aboutToQuit.connect(quit_event.set)
    home = Home.open(home_dir)
    window = MainWindow(home, defer_close=True)
    window.closeRequested.connect(quit_event.set)
    window.show()
    try:
        await quit_event.wait()
        await window.shutdown()
    finally:
        window.close()
        home.close()
    return 0


def run_app(home_dir: str | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("EventDesk")
    app.setOrganizationName("EventDesk")
    app.setApplicationVersion(__version__)
    _install_excepthook()
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        return runner.run(_main(home_dir))
