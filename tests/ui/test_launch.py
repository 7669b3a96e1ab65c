"""The launch command opens a main window."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def test_eventdesk_without_command_opens_the_main_window(tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    code = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from eventdesk.ui import app as ui_app\n"
        "app = QApplication(sys.argv)\n"
        "def check():\n"
        "    wins = [w for w in QApplication.topLevelWidgets() if w.isVisible()]\n"
        "    titles = [w.windowTitle() for w in wins]\n"
        f"    wins[0].grab().save({str(shot)!r})\n"
        "    print('WINDOWS', titles, flush=True)\n"
        "    QApplication.quit()\n"
        "QTimer.singleShot(1500, check)\n"
        "sys.exit(ui_app.run_app(None))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WINDOWS ['EventDesk']" in result.stdout
    assert shot.stat().st_size > 1000
    assert time.monotonic() - start < 60


def test_version_flag() -> None:
    from eventdesk import __version__

    result = subprocess.run(
        [sys.executable, "-m", "eventdesk", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"eventdesk {__version__}"
