"""The command line's own plumbing: which commands load the kinds' modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eventdesk.cli.main import _command_of


def test_the_command_is_found_past_the_global_options() -> None:
    assert _command_of(["--home", "datasource", "-vv", "run"]) == "run"  # a home dir named like a command
    assert _command_of(["-v", "broker", "add", "b"]) == "broker"
    assert _command_of(["--version"]) is None
    assert _command_of([]) is None


def test_commands_without_settings_flags_do_not_load_every_kind(tmp_path: Path) -> None:
    code = (
        "import sys; from eventdesk.cli.main import main; "
        f"rc = main(['--home', {str(tmp_path)!r}, 'list']); "
        "print(rc, 'aiohttp' in sys.modules, 'amqtt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-3:] == ["0", "False", "False"], out
