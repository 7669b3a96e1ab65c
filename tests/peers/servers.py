"""Real test peers started on free ports: pouchdb-server (CouchDB API) and mosquitto.

A missing peer is a failure in CI (``CI`` set) and a skip with an install hint elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PEERS_DIR = Path(__file__).resolve().parent
POUCHDB_BIN = PEERS_DIR / "node_modules" / ".bin" / "pouchdb-server"


def missing_peer(what: str, hint: str) -> None:
    """Fail in CI, skip on a developer's machine, always saying what to install."""
    message = f"{what} is not available: {hint}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@dataclass
class CouchServer:
    """A running pouchdb-server --in-memory; ``url`` is its base URL."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        if auth is not None:
            import base64

            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return bytes(resp.read())

    def create_database(self, prefix: str = "db") -> str:
        """Create a uniquely named database and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.request("PUT", f"/{name}")
        return name


def start_couch(tmp_root: Path) -> CouchServer:
    if not POUCHDB_BIN.exists():
        missing_peer("pouchdb-server", "run `npm ci` in tests/peers (the README's test command does)")
    if shutil.which("node") is None:
        missing_peer("node", "apt-get install nodejs npm")
    workdir = tmp_root / f"pouchdb-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True)
    port = free_port()
    with (workdir / "stdout.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(POUCHDB_BIN), "--in-memory", "--port", str(port), "--host", "127.0.0.1"],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for_port(port, 30, proc)
    server = CouchServer(url=f"http://127.0.0.1:{port}", port=port, proc=proc, workdir=workdir)
    deadline = time.monotonic() + 20
    while True:  # the port opens before express is ready
        try:
            server.request("GET", "/")
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return server


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
{user_line}
allow_anonymous true
persistence true
persistence_location {persist}/
# mosquitto's default per-client queue (max_queued_messages 1000) silently drops QoS 1
# messages for a slow subscriber; 0 means unlimited, so the tests count every message.
max_queued_messages 0
max_inflight_messages 0
log_dest file {log}
log_type error
log_type warning
log_type notice
"""


@dataclass
class MqttBroker:
    """A mosquitto child process on a fixed port that can be stopped and started again."""

    port: int
    workdir: Path
    extra_conf: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if exe is None:
            missing_peer("mosquitto", "apt-get install mosquitto mosquitto-clients")
        persist = self.workdir / "persist"
        persist.mkdir(parents=True, exist_ok=True)
        # Started as root, mosquitto drops to its own user: let it write its persistence dir.
        os.chmod(self.workdir, 0o777)
        os.chmod(persist, 0o777)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            MOSQUITTO_CONF.format(
                port=self.port,
                persist=persist,
                log=self.workdir / "mosquitto.log",
                # As root, mosquitto drops to user "mosquitto", which cannot enter pytest's 0700
                # tmp dirs: it would lose its log and persistence without a word. Stay as we are.
                user_line="user root" if os.geteuid() == 0 else "",
            )
            + self.extra_conf
        )
        logfile = self.workdir / "mosquitto.log"
        logfile.touch()
        os.chmod(logfile, 0o666)
        self.proc = subprocess.Popen(
            [str(exe), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float  # time.monotonic() of receipt
    wall: float  # time.time() of receipt


@dataclass
class Subscriber:
    """A paho client that records every message on a topic filter with its receive time."""

    port: int
    topic: str
    qos: int = 1
    messages: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]  # paho takes float seconds
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"subscriber could not subscribe to {self.topic}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        client.subscribe(self.topic, qos=self.qos)

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        rec = Received(
            msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), time.monotonic(), time.time()
        )
        with self._cond:
            self.messages.append(rec)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self.messages)} of {count} messages on {self.topic} after {timeout} s"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def wait_until(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        """Wait until ``predicate(messages)`` holds (e.g. every expected id arrived, duplicates aside)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"condition not met with {len(self.messages)} messages on {self.topic}"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def running_broker(workdir: Path) -> Iterator[MqttBroker]:
    broker = MqttBroker(port=free_port(), workdir=workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
