"""A real nats-server with JetStream (and, when asked, its MQTT listener) started on free ports
with its store in a temp dir; it can be stopped and started again on the same ports and store.
The machine's own NATS (port 4222) is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.servers import free_port, missing_peer, stop_process, wait_for_port

NATS_CONF = """\
server_name: {name}
listen: 127.0.0.1:{port}
jetstream {{
  store_dir: "{store}"
}}
{extra}
"""


def nats_server_exe() -> str:
    exe = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if exe is None:
        missing_peer("nats-server", "apt-get install nats-server")
    assert exe is not None
    return exe


@dataclass
class NatsServer:
    """A nats-server child process on fixed ports (``mqtt_port`` 0: no MQTT listener)."""

    workdir: Path
    port: int = 0
    mqtt_port: int = 0
    extra_conf: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()
        assert self.port != 4222, "never the machine's own NATS"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = nats_server_exe()
        store = self.workdir / "store"
        store.mkdir(parents=True, exist_ok=True)
        extra = self.extra_conf
        if self.mqtt_port:
            extra += f"\nmqtt {{\n  listen: 127.0.0.1:{self.mqtt_port}\n}}\n"
        conf = self.workdir / "nats.conf"
        conf.write_text(
            NATS_CONF.format(name=f"ed-test-{self.port}", port=self.port, store=store, extra=extra)
        )
        log = (self.workdir / "nats.log").open("ab")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for_port(self.port, 20, self.proc)
        if self.mqtt_port:
            wait_for_port(self.mqtt_port, 20, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.workdir / "nats.log"
        return path.read_text(errors="replace") if path.exists() else ""


def running_nats(workdir: Path, *, mqtt: bool = False, extra_conf: str = "") -> Iterator[NatsServer]:
    server = NatsServer(workdir, mqtt_port=free_port() if mqtt else 0, extra_conf=extra_conf)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from running_nats(tmp_path / "nats")


@pytest.fixture
def nats_mqtt_server(tmp_path: Path) -> Iterator[NatsServer]:
    """nats-server with its MQTT listener (which needs server_name and JetStream)."""
    yield from running_nats(tmp_path / "nats-mqtt", mqtt=True)
