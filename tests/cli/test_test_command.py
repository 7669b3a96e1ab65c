"""``eventdesk test datasource|model|broker NAME`` against a real pouchdb-server and mosquitto:
the summary and exit 0, or the error naming the object (never the secret) and the exit code of
its kind (5 for a datasource, 6 for a broker, 3 for an unknown name)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.harness import eventdesk, home_args, ok
from tests.peers.servers import CouchServer, MqttBroker, free_port, start_couch, stop_process

PASSWORD = f"pw-{uuid.uuid4().hex[:12]}"
WRONG = f"wrong-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def secured_couch(tmp_path: Path) -> Iterator[CouchServer]:
    """A pouchdb-server with admin ``admin`` (password PASSWORD) and a database ``accounts``."""
    server = start_couch(tmp_path / "secured")
    server.request("PUT", "/_config/admins/admin", json.dumps(PASSWORD).encode())
    server.request("PUT", "/accounts", auth=("admin", PASSWORD))
    yield server
    stop_process(server.proc)


@pytest.fixture
def password_mosquitto(tmp_path: Path) -> Iterator[MqttBroker]:
    """A mosquitto that lets only ``alice`` (password PASSWORD) in."""
    # mosquitto drops to its own user before reading the password file: not under pytest's 0700 tree.
    readable = Path(tempfile.mkdtemp(prefix="eventdesk-mqtt-"))
    os.chmod(readable, 0o755)
    pwfile = readable / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "alice", PASSWORD], check=True)
    os.chmod(pwfile, 0o644)
    workdir = tmp_path / "mosquitto-pw"
    workdir.mkdir()
    broker = MqttBroker(
        port=free_port(), workdir=workdir, extra_conf=f"allow_anonymous false\npassword_file {pwfile}\n"
    )
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(readable, ignore_errors=True)


def _add_couch(h: tuple[str, ...], name: str, url: str, password: str) -> None:
    ok(
        *h,
        *("datasource", "add", name, "--kind", "couchdb", "--url", url),
        *("--auth", "basic", "--username", "admin", "--secret-stdin"),
        stdin=password + "\n",
    )


def test_testing_a_datasource_and_its_model(tmp_path: Path, secured_couch: CouchServer) -> None:
    h = home_args(tmp_path / "home")
    _add_couch(h, "couch", secured_couch.url, PASSWORD)
    ok(*h, "model", "add", "accounts", "--datasource", "couch")
    out = ok(*h, "test", "datasource", "couch")
    assert out.startswith("datasource 'couch': ")
    assert "accounts" in ok(*h, "test", "model", "accounts")


def test_a_wrong_password_names_the_datasource_not_the_password(
    tmp_path: Path, secured_couch: CouchServer
) -> None:
    h = home_args(tmp_path / "home")
    _add_couch(h, "couch", secured_couch.url, WRONG)
    result = eventdesk(*h, "test", "datasource", "couch")
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("eventdesk: error: datasource 'couch'"), result.stderr
    assert WRONG not in result.stderr + result.stdout


def test_an_unreachable_port_and_an_unknown_name(tmp_path: Path) -> None:
    h = home_args(tmp_path / "home")
    ok(*h, "datasource", "add", "gone", "--kind", "couchdb", "--url", f"http://127.0.0.1:{free_port()}")
    result = eventdesk(*h, "test", "datasource", "gone")
    assert result.returncode == 5, result.stderr
    assert "datasource 'gone'" in result.stderr
    result = eventdesk(*h, "test", "datasource", "nowhere")
    assert result.returncode == 3, result.stderr
    assert "'nowhere'" in result.stderr
    ok(*h, "broker", "add", "down", "--kind", "mqtt", "--url", f"mqtt://127.0.0.1:{free_port()}")
    result = eventdesk(*h, "test", "broker", "down")
    assert result.returncode == 6, result.stderr
    assert "broker 'down'" in result.stderr


def test_testing_a_broker_and_a_wrong_password(tmp_path: Path, password_mosquitto: MqttBroker) -> None:
    h = home_args(tmp_path / "home")
    for name, password in (("good", PASSWORD), ("bad", WRONG)):
        ok(
            *h,
            *("broker", "add", name, "--kind", "mqtt", "--url", password_mosquitto.url),
            *("--username", "alice", "--secret-stdin"),
            stdin=password + "\n",
        )
    assert ok(*h, "test", "broker", "good").startswith("broker 'good': ")
    result = eventdesk(*h, "test", "broker", "bad")
    assert result.returncode == 6, result.stderr
    assert "broker 'bad'" in result.stderr
    assert WRONG not in result.stderr + result.stdout
