"""Start-up in one place: Qt application, qasync loop, main window, clean quit.

Which home, and what a capture that cannot be used asks, is ui/home_opening.py's.
qasync is imported here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

import qasync
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from eventdesk import __version__
from eventdesk.core.errors import ConfigError
from eventdesk.core.gc_policy import tune_for_streaming
from eventdesk.core.home import Home
from eventdesk.ui.home_opening import open_home
from eventdesk.ui.icons import app_icon

if TYPE_CHECKING:
    from eventdesk.ui.main_window import MainWindow

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


class _StopSignals:
    """SIGTERM, SIGINT and SIGHUP ask the app to quit as its window's close does.

    Qt's C++ loop runs no Python between events, so a Python signal handler alone would run only
    at the next event; the signal's number, written by the interpreter to a wakeup socket, is
    that event (the loop watches the socket).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self, loop: asyncio.AbstractEventLoop, on_signal: Callable[[], None]) -> None:
        self._loop = loop
        self._on_signal = on_signal
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._old = {sig: signal.signal(sig, self._noted) for sig in self.SIGNALS}
        loop.add_reader(self._read.fileno(), self._readable)

    @staticmethod
    def _noted(signum: int, frame: FrameType | None) -> None:
        """The interpreter has written ``signum`` to the wakeup socket; the loop acts on it."""

    def _readable(self) -> None:
        try:
            received = self._read.recv(64)
        except BlockingIOError:
            return
        if received:
            names = ", ".join(signal.Signals(n).name for n in received)
            log.info("%s: stopping models and routes, then quitting", names)
            self._on_signal()

    def close(self) -> None:
        self._loop.remove_reader(self._read.fileno())
        signal.set_wakeup_fd(self._old_fd)
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._read.close()
        self._write.close()


@dataclass
class _Session:
    """What ``_main`` opened, for a stop without the loop (see :func:`run_app`)."""

    home: Home | None = None
    window: MainWindow | None = None
    finished: bool = False


async def _main(home: Home, session: _Session) -> int:
    """Show the window on ``home`` until the app quits; File ▸ New/Open workspace closes it
    (models and routes stopped, the home's lock released) and opens one on the chosen home."""
    from eventdesk.ui.main_window import MainWindow

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    # The window's close only asks to quit: shutdown (stopping connectors, flushing routes)
    # must run while the loop still turns, so Qt may not end the loop on its own.
    app.setQuitOnLastWindowClosed(False)
    quit_event = asyncio.Event()
    app.aboutToQuit.connect(quit_event.set)
    stop_signals = _StopSignals(asyncio.get_running_loop(), quit_event.set)
    tune_for_streaming()
    switch_to: list[Home] = []

    def switch(other: Home) -> None:
        for earlier in switch_to:  # asked twice before the first switch ran: the last one wins
            earlier.close()
        switch_to[:] = [other]
        quit_event.set()

    try:
        while True:
            session.home = home
            window = session.window = MainWindow(home, defer_close=True)
            window.homeOpened.connect(switch)
            if home.capture_notice:
                window.notifications.notify("info", home.capture_notice, key="capture")
            window.closeRequested.connect(quit_event.set)
            window.show()
            _screenshot_then_quit(window, quit_event)
            try:
                await quit_event.wait()
                await window.shutdown()
            finally:
                window.close()
                window.deleteLater()
                home.close()
            if not switch_to:
                return 0
            quit_event.clear()
            home = switch_to.pop()
    finally:
        stop_signals.close()
        session.finished = True


DISPLAY_LOST_EXIT = 1


def run_app(home_dir: str | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("EventDesk")
    app.setOrganizationName("EventDesk")
    app.setApplicationVersion(__version__)
    QApplication.setDesktopFileName("eventdesk")  # matches resources/eventdesk.desktop (Wayland app id)
    QApplication.setWindowIcon(app_icon())
    _install_excepthook()
    try:
        home = open_home(home_dir)  # before the loop runs: its questions are plain modal boxes
    except ConfigError as exc:  # a malformed workspace file: say which and why, as the CLI does
        print(f"eventdesk: error: {exc.describe()}", file=sys.stderr, flush=True)
        box = QMessageBox(QMessageBox.Icon.Critical, "EventDesk: cannot open the workspace", exc.describe())
        box.setInformativeText(
            "Fix the file (or put its .bak copy in its place), then start EventDesk again."
        )
        box.exec()
        return exc.exit_code
    if home is None:
        return 2
    session = _Session()
    runner = asyncio.Runner(loop_factory=qasync.QEventLoop)
    try:
        return runner.run(_main(home, session))
    except RuntimeError:
        # qasync: "Event loop stopped before Future completed". Qt ended its loop by itself: when
        # the X server goes away, Qt's xcb plugin ends the loop on every later turn too, so the
        # normal shutdown (which needs the loop) cannot run. Stop what can be stopped without it.
        if session.finished or session.home is None:
            raise
        _halt(session)
        # Leave without Qt's teardown: with its X connection broken, destroying the application
        # aborts the process ("QThread: Destroyed while thread is still running", xcb's event
        # reader). Everything of ours is recorded and closed by now.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(DISPLAY_LOST_EXIT)
    finally:
        if session.finished or session.home is None:
            runner.close()


def _halt(session: _Session) -> None:
    print(
        "eventdesk: the window system ended the app (display connection lost?); "
        "stopping models and routes and recording their positions",
        file=sys.stderr,
        flush=True,
    )
    if session.window is not None:
        session.window.runtime.halt()
    assert session.home is not None
    session.home.close()
