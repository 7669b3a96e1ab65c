"""The PyInstaller bundle, built from packaging/eventdesk.spec, run as a user would run it.

Every command goes to the frozen executable with a bare environment (no venv, no PYTHONPATH),
so what works here works on a machine with no Python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from eventdesk import __version__
from tests.cli.harness import RunProcess, put_doc
from tests.packaging.conftest import Bundle, SecretService
from tests.peers.servers import CouchServer, MqttBroker, Subscriber, free_port, missing_peer

pytestmark = pytest.mark.slow


@dataclass
class BundleRun(RunProcess):
    """``<bundle> [args] run`` in the background, output lines collected (see RunProcess)."""

    exe: Path = Path()

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [str(self.exe), *self.args, "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def test_version(bundle: Bundle, tmp_path: Path) -> None:
    out = bundle.ok("--version", env=bundle.env(tmp_path / "home"))
    assert out.strip() == f"eventdesk {__version__}"


def test_connector_and_broker_kinds_come_from_entry_points(bundle: Bundle, tmp_path: Path) -> None:
    """The frozen app carries eventdesk's dist-info, so its entry-point registry is not empty."""
    env = bundle.env(tmp_path / "home")
    datasource_help = bundle.ok("datasource", "add", "--help", env=env)
    assert "cloudant" in datasource_help and "couchdb" in datasource_help
    assert "mqtt" in bundle.ok("broker", "add", "--help", env=env)


def test_headless_run_republishes_a_document(
    bundle: Bundle,
    tmp_path: Path,
    couch: CouchServer,
    mqtt_broker: MqttBroker,
    subscriber: Callable[..., Subscriber],
    unique_topic: str,
) -> None:
    env = bundle.env(tmp_path / "home")
    h = ("--home", str(tmp_path / "home" / "eventdesk"))
    db = couch.create_database("bundle")
    bundle.ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", couch.url, env=env)
    bundle.ok(*h, "model", "add", "accounts", "--datasource", "couch", "--database", db, env=env)
    bundle.ok(*h, "broker", "add", "mosq", "--kind", "mqtt", "--url", mqtt_broker.url, env=env)
    bundle.ok(
        *h, "route", "add", "out", "--model", "accounts", "--broker", "mosq",
        "--topic", unique_topic, "--format", "payload", "--qos", "1", env=env,
    )  # fmt: skip
    sub = subscriber(unique_topic)
    run = BundleRun(h, env, exe=bundle.exe)
    try:
        run.wait_line("model 'accounts': running", 60)
        run.wait_line("route 'out': running", 60)
        rev = put_doc(couch, db, "acct-1", {"name": "Asha", "balance": 120})
        [message] = sub.wait_for(1, 30)
    finally:
        assert run.stop() == 0, run.output()
    assert json.loads(message.payload) == {"_id": "acct-1", "_rev": rev, "name": "Asha", "balance": 120}
    captured = bundle.ok(*h, "events", "--json", env=env).splitlines()
    assert [json.loads(line)["key"] for line in captured] == ["acct-1"]


def _screenshot_is_a_window(path: Path) -> None:
    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not an image"
    assert image.width() >= 640 and image.height() >= 480, image.size()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 20, "the screenshot is (nearly) blank"


def test_gui_starts_offscreen_and_saves_a_screenshot(bundle: Bundle, tmp_path: Path) -> None:
    shot = tmp_path / "bundle-window.png"
    env = bundle.env(
        tmp_path / "home",
        QT_QPA_PLATFORM="offscreen",
        EVENTDESK_SCREENSHOT=str(shot),
        EVENTDESK_SCREENSHOT_AFTER_MS="3000",
    )
    result = bundle.run("--home", str(tmp_path / "home" / "eventdesk"), env=env, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"screenshot saved: {shot}" in result.stdout
    assert "icons: all found" in result.stdout, result.stdout
    _screenshot_is_a_window(shot)


def test_gui_starts_on_x11_under_xvfb(bundle: Bundle, tmp_path: Path) -> None:
    """The xcb platform plugin and the X libraries it needs are in the bundle."""
    if shutil.which("xvfb-run") is None:
        missing_peer("xvfb-run", "apt-get install xvfb xauth")
    shot = tmp_path / "bundle-x11.png"
    env = bundle.env(
        tmp_path / "home",
        QT_QPA_PLATFORM="xcb",
        EVENTDESK_SCREENSHOT=str(shot),
        EVENTDESK_SCREENSHOT_AFTER_MS="2000",
    )
    result = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", str(bundle.exe), "--home", str(tmp_path / "h")],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "icons: all found" in result.stdout, result.stdout
    _screenshot_is_a_window(shot)


def test_no_keyring_backend_is_explained(bundle: Bundle, tmp_path: Path) -> None:
    """keyring's PYTHON_KEYRING_BACKEND names a backend module, imported inside the frozen app."""
    home = tmp_path / "home"
    canary = f"canary-{uuid.uuid4().hex[:8]}"
    result = bundle.run(
        "--home", str(home / "eventdesk"), "broker", "add", "b", "--kind", "mqtt",
        "--url", "mqtt://127.0.0.1:1883", "--username", "alice", "--secret-stdin",
        env=bundle.env(home, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"),
        stdin=canary + "\n",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "no usable OS keyring backend" in result.stderr and "--secret-env" in result.stderr
    assert canary not in result.stderr + result.stdout
    for path in home.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[tuple[MqttBroker, str]]:
    """A mosquitto that lets only ``alice`` in, with a random password."""
    if shutil.which("mosquitto_passwd") is None:
        missing_peer("mosquitto_passwd", "apt-get install mosquitto")
    password = f"pw-{uuid.uuid4().hex[:12]}"
    # mosquitto drops to its own user before reading the password file: not under pytest's 0700 tmp.
    readable = Path(tempfile.mkdtemp(prefix="eventdesk-bundle-"))
    os.chmod(readable, 0o755)
    pwfile = readable / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "alice", password], check=True)
    os.chmod(pwfile, 0o644)
    workdir = tmp_path / "mosquitto-pw"
    workdir.mkdir()
    broker = MqttBroker(
        port=free_port(), workdir=workdir, extra_conf=f"allow_anonymous false\npassword_file {pwfile}\n"
    )
    broker.start()
    yield broker, password
    broker.stop()
    shutil.rmtree(readable, ignore_errors=True)


def test_secret_service_keyring_works_in_the_frozen_app(
    bundle: Bundle,
    tmp_path: Path,
    secret_service: SecretService,
    couch: CouchServer,
    password_broker: tuple[MqttBroker, str],
) -> None:
    """keyring finds its Secret Service backend through entry points bundled with its
    dist-info: the broker password is stored there by one command and used by ``run``."""
    broker, password = password_broker
    home = tmp_path / "home"
    env = bundle.env(home, PYTHON_KEYRING_BACKEND="", DBUS_SESSION_BUS_ADDRESS=secret_service.bus_address)
    h = ("--home", str(home / "eventdesk"))
    db = couch.create_database("secret")
    bundle.ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", couch.url, env=env)
    bundle.ok(*h, "model", "add", "accounts", "--datasource", "couch", "--database", db, env=env)
    added = bundle.ok(
        *h, "broker", "add", "secure", "--kind", "mqtt", "--url", broker.url, "--username", "alice",
        "--secret-stdin", env=env, stdin=password + "\n",
    )  # fmt: skip
    assert "added" in added and password not in added
    bundle.ok(*h, "route", "add", "out", "--model", "accounts", "--broker", "secure", "--topic", "t", env=env)
    run = BundleRun(h, env, exe=bundle.exe)
    try:
        run.wait_line("route 'out': running", 60)
    finally:
        assert run.stop() == 0, run.output()
    assert "error" not in run.output().lower(), run.output()
    for path in home.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
