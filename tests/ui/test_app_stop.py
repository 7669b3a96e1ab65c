"""The app stops cleanly when told to by a signal, or when its display goes away.

Both run the real app in a process of its own on the demo workspace (webhook -> built-in broker),
with the model started and events captured and republished, then end it from outside and read
what it recorded: every object stopped, the route's position at its last acknowledged event.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.servers import free_port, missing_peer, stop_process

pytestmark = [pytest.mark.gui, pytest.mark.slow]

DRIVER = """\
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from eventdesk.ui import app as ui_app
from eventdesk.ui.main_window import MainWindow
app = QApplication(sys.argv)
def start():  # once the window is there (a loaded machine may take more than a second)
    window = next((w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)), None)
    if window is None:
        QTimer.singleShot(100, start)
    else:
        window.start_model("accounts")
QTimer.singleShot(500, start)
sys.exit(ui_app.run_app(sys.argv[1]))
"""


def eventdesk(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventdesk", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def recorded(home: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The states and route positions the capture holds (read as `status` would)."""
    with contextlib.closing(sqlite3.connect(home / "capture.sqlite3", timeout=5)) as db:
        states = dict(db.execute("SELECT object, state FROM states").fetchall())
        positions = dict(db.execute("SELECT route, pos FROM route_positions").fetchall())
    return states, positions


def wait_until_republished(home: Path, app: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert app.poll() is None, app.communicate()[1][-3000:]
        if (home / "capture.sqlite3").exists():
            states = recorded(home)[0]
            if (
                states.get("model/accounts") == "running"
                and states.get("route/accounts-to-subutest") == "running"
            ):
                break
        time.sleep(0.1)
    eventdesk(home, "demo", "--send", str(count))
    while time.monotonic() < deadline:  # the route records a trickle's position 20 ms after its ack
        if recorded(home)[1].get("accounts-to-subutest") == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"not republished: {recorded(home)}")


@pytest.fixture
def demo_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    eventdesk(home, "demo", "--webhook-port", str(free_port()), "--broker-port", str(free_port()))
    return home


def start_app(home: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_stopped_cleanly(home: Path, stderr: str, count: int) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    states, positions = recorded(home)
    assert states == {
        "broker/builtin": "stopped",
        "model/accounts": "stopped",
        "route/accounts-to-subutest": "stopped",
    }
    assert positions == {"accounts-to-subutest": count}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_models_and_routes_and_quits(demo_home: Path, signum: signal.Signals) -> None:
    app = start_app(demo_home, dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    try:
        wait_until_republished(demo_home, app, 5)
        app.send_signal(signum)
        _, stderr = app.communicate(timeout=30)
    finally:
        stop_process(app)  # type: ignore[arg-type]
    assert app.returncode == 0, stderr[-3000:]
    assert_stopped_cleanly(demo_home, stderr, 5)


@pytest.fixture
def xvfb() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("Xvfb")
    if binary is None:
        missing_peer("Xvfb", "apt-get install xvfb xauth")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        [str(binary), "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as announced:
        display = announced.readline().strip()  # Xvfb writes its display number once it listens
    try:
        assert display, "Xvfb did not start"
        yield f":{display}", server
    finally:
        stop_process(server)


def test_losing_the_display_stops_models_and_routes_without_a_traceback(
    demo_home: Path, xvfb: tuple[str, subprocess.Popen[bytes]]
) -> None:
    display, server = xvfb
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=display)
    app = start_app(demo_home, env)
    try:
        wait_until_republished(demo_home, app, 5)
        stop_process(server)  # the X server goes away under the app
        _, stderr = app.communicate(timeout=30)
    finally:
        stop_process(app)  # type: ignore[arg-type]
    assert app.returncode == 1, stderr[-3000:]
    assert "display connection lost" in stderr
    assert_stopped_cleanly(demo_home, stderr, 5)
