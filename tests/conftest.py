"""Fixtures shared by every test: isolation from the user's machine and the real peers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import pytest

from tests.keyring_backend import TestKeyring
from tests.peers.servers import (
    CouchServer,
    MqttBroker,
    Subscriber,
    free_port,
    missing_peer,
    start_couch,
    stop_process,
)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point EventDesk's config/data dirs at tmp_path and use a test keyring backend."""
    home = tmp_path / "eventdesk-home"
    monkeypatch.setenv("EVENTDESK_HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("XDG_DATA_HOME", "xdg-data"),
        ("XDG_CACHE_HOME", "xdg-cache"),
        ("XDG_STATE_HOME", "xdg-state"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    keyring_file = tmp_path / "test-keyring.json"
    monkeypatch.setenv("EVENTDESK_TEST_KEYRING_FILE", str(keyring_file))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyring_backend.TestKeyring")
    previous = keyring.get_keyring()
    keyring.set_keyring(TestKeyring())
    yield home
    keyring.set_keyring(previous)


@pytest.fixture(scope="session")
def couch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CouchServer]:
    """A pouchdb-server --in-memory for the whole session; make databases with create_database()."""
    server = start_couch(tmp_path_factory.mktemp("couch"))
    yield server
    stop_process(server.proc)


@pytest.fixture
def couch_db(couch: CouchServer) -> str:
    """A fresh, uniquely named database on the session's couch."""
    return couch.create_database()


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[MqttBroker]:
    """A mosquitto of this test's own, on a free port; ``stop()``/``start()`` keep the port."""
    workdir = tmp_path / f"mosquitto-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    broker = MqttBroker(port=free_port(), workdir=workdir)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def subscriber(mqtt_broker: MqttBroker) -> Iterator[Callable[..., Subscriber]]:
    """Factory: ``subscriber("topic/#", qos=1)`` records every message with its receive time."""
    made: list[Subscriber] = []

    def make(topic: str, qos: int = 1) -> Subscriber:
        sub = Subscriber(port=mqtt_broker.port, topic=topic, qos=qos)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def unique_topic() -> str:
    return f"test/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def linux_scheduling() -> None:
    """Tests of the batch scheduling policy need Linux's (fails in CI, skips elsewhere)."""
    if not hasattr(os, "SCHED_BATCH"):
        missing_peer("Linux scheduling policies (os.SCHED_BATCH)", "run these tests on Linux")
