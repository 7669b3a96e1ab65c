"""Start-up in one place: Qt application, qasync loop, main window, clean quit.

The app takes the home's lock; on a home that ``eventdesk run`` holds it opens read only. A
capture that is missing, foreign or damaged is refused with the choice of a fresh one.
qasync is imported here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Callable
from types import TracebackType

import qasync
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from eventdesk import __version__
from eventdesk.core.errors import CaptureUnusableError
from eventdesk.core.gc_policy import tune_for_streaming
from eventdesk.core.home import Home
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


FRESH_CAPTURE_BUTTON = "Start with a fresh capture"


def open_home(home_dir: str | None, ask: Callable[[QMessageBox], object] | None = None) -> Home | None:
    """Open the home for the app (read only if a runner holds it) and its capture; on an
    unusable capture ask (``ask`` shows the box, default ``exec``) whether to start a fresh one.
    None: the user chose to quit."""
    home = Home.open(home_dir, lock="app", read_only_if_held=True)
    try:
        home.capture  # noqa: B018 - opening it checks it
    except CaptureUnusableError as exc:
        box = QMessageBox(QMessageBox.Icon.Warning, "EventDesk: the capture cannot be used", exc.describe())
        box.setObjectName("capture_unusable")
        fresh = None
        if home.read_only is None:
            fresh = box.addButton(FRESH_CAPTURE_BUTTON, QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
        if ask is None:
            box.exec()
        else:
            ask(box)
        if fresh is None or box.clickedButton() is not fresh:
            home.close()
            return None
        home.start_fresh_capture()
    return home


async def _main(home: Home) -> int:
    from eventdesk.ui.main_window import MainWindow

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    # The window's close only asks to quit: shutdown (stopping connectors, flushing routes)
    # must run while the loop still turns, so Qt may not end the loop on its own.
    app.setQuitOnLastWindowClosed(False)
    quit_event = asyncio.Event()
    app.aboutToQuit.connect(quit_event.set)
    window = MainWindow(home, defer_close=True)
    if home.capture_notice:
        window.notifications.notify("info", home.capture_notice, key="capture")
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
    home = open_home(home_dir)  # before the loop runs: its questions are plain modal boxes
    if home is None:
        return 2
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        return runner.run(_main(home))
