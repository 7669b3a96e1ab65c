"""Start-up in one place: Qt application, qasync loop, main window, clean quit.

qasync is imported here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from types import TracebackType

import qasync
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from eventdesk import __version__
from eventdesk.core.errors import ConfigError
from eventdesk.core.gc_policy import tune_for_streaming
from eventdesk.core.home import Home
from eventdesk.ui.async_tasks import dialog_result
from eventdesk.ui.icons import app_icon

log = logging.getLogger(__name__)

# For packaging checks and docs: save the window to this PNG after EVENTDESK_SCREENSHOT_AFTER_MS
# (default 2000) and quit, e.g. to prove a bundle starts with its Qt plugins and icons.
SCREENSHOT_ENV = "EVENTDESK_SCREENSHOT"


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


def _screenshot_then_quit(window: QWidget, quit_event: asyncio.Event) -> None:
    target = os.environ.get(SCREENSHOT_ENV)
    if not target:
        return

    def shoot() -> None:
        from eventdesk.ui.icons import missing_icons

        try:
            saved = window.grab().save(target)
            missing = missing_icons()
            print(f"screenshot {'saved' if saved else 'NOT saved'}: {target}", flush=True)
            print(f"icons: {'all found' if not missing else 'missing ' + ', '.join(missing)}", flush=True)
        finally:
            quit_event.set()

    QTimer.singleShot(int(os.environ.get(f"{SCREENSHOT_ENV}_AFTER_MS", "2000")), shoot)


async def _main(home_dir: str | None) -> int:
    from eventdesk.ui.main_window import MainWindow

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    # The window's close only asks to quit: shutdown (stopping connectors, flushing routes)
    # must run while the loop still turns, so Qt may not end the loop on its own.
    app.setQuitOnLastWindowClosed(False)
    quit_event = asyncio.Event()
    app.aboutToQuit.connect(quit_event.set)
    try:
        home = Home.open(home_dir)
    except ConfigError as exc:  # a malformed workspace file: say which and why, as the CLI does
        print(f"eventdesk: error: {exc.describe()}", file=sys.stderr, flush=True)
        box = QMessageBox(QMessageBox.Icon.Critical, "EventDesk: cannot open the workspace", exc.describe())
        box.setInformativeText(
            "Fix the file (or put its .bak copy in its place), then start EventDesk again."
        )
        await dialog_result(box)
        return exc.exit_code
    window = MainWindow(home, defer_close=True)
    window.closeRequested.connect(quit_event.set)
    window.show()
    tune_for_streaming()
    _screenshot_then_quit(window, quit_event)
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
    QApplication.setDesktopFileName("eventdesk")  # matches resources/eventdesk.desktop (Wayland app id)
    QApplication.setWindowIcon(app_icon())
    _install_excepthook()
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        return runner.run(_main(home_dir))
