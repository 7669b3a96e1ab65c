"""Fixtures for broker tests: publishers that are always closed, state recorders, TLS and
password-protected mosquittos."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio

from eventdesk.brokers.mqtt import SCHEMA, MqttPublisher
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.workspace import BrokerConfig
from tests.peers.servers import MqttBroker, free_port
from tests.peers.tls import PkiFiles, make_test_pki

# Short backoff so reconnect tests take fractions of a second.
FAST_BACKOFF = {"backoff_initial": 0.05, "backoff_max": 0.3}


def broker_config(url: str, name: str = "b1", **settings: Any) -> BrokerConfig:
    return BrokerConfig(
        name=name,
        kind="mqtt",
        settings=SCHEMA.validate({"url": url, **settings}, f"broker {name!r}"),
        secret=None,
    )


@dataclass
class StateRecorder:
    """Records every StateChange (they arrive on the loop thread) and lets a test await one."""

    changes: list[StateChange] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)  # must stay {the loop's thread}
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, change: StateChange) -> None:
        self.threads.add(threading.get_ident())
        self.changes.append(change)
        self._event.set()

    @property
    def states(self) -> list[State]:
        return [c.state for c in self.changes]

    async def wait_for(
        self, state: State, timeout: float = 10.0, after: int = 0, count: int = 1
    ) -> StateChange:
        """Wait until ``count`` changes to ``state`` were recorded at index >= ``after``."""
        async with asyncio.timeout(timeout):
            while True:
                hits = [c for c in self.changes[after:] if c.state is state]
                if len(hits) >= count:
                    return hits[count - 1]
                self._event.clear()
                await self._event.wait()


class MakePublisher(Protocol):
    def __call__(
        self, config: BrokerConfig, secret: str | None = None, fast: bool = True
    ) -> tuple[MqttPublisher, StateRecorder]: ...


@pytest_asyncio.fixture
async def make_publisher() -> AsyncIterator[MakePublisher]:
    """Factory for publishers (fast backoff by default); every one is closed afterwards."""
    made: list[MqttPublisher] = []

    def make(
        config: BrokerConfig, secret: str | None = None, fast: bool = True
    ) -> tuple[MqttPublisher, StateRecorder]:
        recorder = StateRecorder()
        publisher = MqttPublisher(config=config, secret=secret, on_state=recorder)
        if fast:
            for name, value in FAST_BACKOFF.items():
                setattr(publisher, name, value)
        made.append(publisher)
        return publisher, recorder

    yield make
    for publisher in made:
        await publisher.close(1.0)


@pytest.fixture(scope="session")
def readable_dir() -> Iterator[Path]:
    """A directory outside pytest's private (0700) tree: mosquitto starts as root but drops
    to its own user before it reads certificates and password files."""
    path = Path(tempfile.mkdtemp(prefix="eventdesk-mqtt-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(readable_dir: Path) -> PkiFiles:
    return make_test_pki(readable_dir / "pki")


MakeBroker = Callable[..., MqttBroker]


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[MakeBroker]:
    """Factory for extra mosquittos with ``extra_conf``; ``started=False`` leaves one down."""
    made: list[MqttBroker] = []

    def make(extra_conf: str = "", started: bool = True) -> MqttBroker:
        workdir = tmp_path / f"mosquitto-{uuid.uuid4().hex[:6]}"
        workdir.mkdir()
        broker = MqttBroker(port=free_port(), workdir=workdir, extra_conf=extra_conf)
        made.append(broker)
        if started:
            broker.start()
        return broker

    yield make
    for broker in made:
        broker.stop()


def tls_conf(pki: PkiFiles, *, require_certificate: bool = False, wrong_host: bool = False) -> str:
    """mosquitto settings that turn the base listener into a TLS one."""
    server = pki.wrong_host_server if wrong_host else pki.server
    conf = f"cafile {pki.ca}\ncertfile {server.cert}\nkeyfile {server.key}\n"
    if require_certificate:
        conf += "require_certificate true\n"
    return conf


@dataclass(frozen=True)
class PasswordBroker:
    broker: MqttBroker
    username: str
    password: str


@pytest.fixture
def password_broker(make_broker: MakeBroker, readable_dir: Path) -> PasswordBroker:
    """A mosquitto that only lets user ``alice`` in, with a random password."""
    password = f"pw-{uuid.uuid4().hex[:12]}"
    pwfile = readable_dir / f"passwords-{uuid.uuid4().hex[:8]}"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "alice", password], check=True)
    os.chmod(pwfile, 0o644)
    broker = make_broker(f"allow_anonymous false\npassword_file {pwfile}\n")
    return PasswordBroker(broker, "alice", password)
