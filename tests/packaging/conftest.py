"""Fixtures for packaging tests: the PyInstaller bundle (built once per session) and a private
Secret Service (D-Bus session bus + gnome-keyring) for the frozen app to find."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.servers import missing_peer, stop_process

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "eventdesk.spec"


@dataclass(frozen=True)
class Bundle:
    """A built one-folder bundle: ``exe`` is ``<dist>/eventdesk/eventdesk``."""

    exe: Path
    build_seconds: float

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A bare environment, as on a machine with no Python: no venv, PYTHON* or Qt settings.

        keyring's fail backend unless a test says otherwise, so no test touches a real keyring.
        """
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(home / "xdg-config"),
            "XDG_DATA_HOME": str(home / "xdg-data"),
            "XDG_CACHE_HOME": str(home / "xdg-cache"),
            "XDG_STATE_HOME": str(home / "xdg-state"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    def run(
        self, *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.exe), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=env["HOME"],
        )

    def ok(self, *args: str, env: dict[str, str], stdin: str | None = None) -> str:
        result = self.run(*args, env=env, stdin=stdin)
        assert result.returncode == 0, (
            f"bundle {' '.join(args)} failed ({result.returncode}): {result.stderr[-3000:]}"
        )
        return result.stdout


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """``packaging/eventdesk.spec`` built into a temporary dist once per test session."""
    if importlib.util.find_spec("PyInstaller") is None:
        missing_peer("PyInstaller", "pip install -e '.[test]' (or '.[bundle]')")
    out = tmp_path_factory.mktemp("bundle")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(out / "dist"),
            "--workpath",
            str(out / "build"),
            str(SPEC),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    exe = out / "dist" / "eventdesk" / "eventdesk"
    assert exe.is_file() and os.access(exe, os.X_OK), f"no executable at {exe}"
    return Bundle(exe=exe, build_seconds=time.monotonic() - started)


@dataclass(frozen=True)
class SecretService:
    """A private session bus with an unlocked gnome-keyring answering org.freedesktop.secrets."""

    bus_address: str


def _name_has_owner(bus_address: str, name: str) -> bool:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress(
        "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
    )
    with open_dbus_connection(bus_address) as conn:
        reply = conn.send_and_get_reply(new_method_call(bus, "NameHasOwner", "s", (name,)), timeout=5)
    return bool(reply.body[0])


@pytest.fixture
def secret_service(tmp_path: Path) -> Iterator[SecretService]:
    for tool in ("dbus-daemon", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            missing_peer(tool, "apt-get install gnome-keyring dbus")
    home = tmp_path / "keyring-home"
    (home / "run").mkdir(parents=True, mode=0o700)
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "DBUS_SESSION_BUS_ADDRESS": address,
    }
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert daemon.stdin is not None
    daemon.stdin.write("keyring-unlock-pw\n")
    daemon.stdin.close()
    try:
        deadline = time.monotonic() + 20
        while not _name_has_owner(address, "org.freedesktop.secrets"):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gnome-keyring-daemon did not come up (exit {daemon.poll()})")
            time.sleep(0.05)
        yield SecretService(bus_address=address)
    finally:
        stop_process(daemon)  # type: ignore[arg-type]
        stop_process(bus)  # type: ignore[arg-type]
        if bus.stdout is not None:
            bus.stdout.close()
