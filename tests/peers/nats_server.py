"""A real nats-server with JetStream (and, when asked, its MQTT listener) started on free ports
with its store in a temp dir; it can be stopped and started again on the same ports and store.
Also a three-node cluster of them (``nats_cluster``), for R3 streams and buckets and a fleet,
and NKey users (a fresh key pair, its seed file, the server's ``authorization`` block).
The machine's own NATS (port 4222) is never touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nkeys
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


@dataclass(frozen=True)
class NkeyUser:
    """A fresh NKey user: its public key (U..., for the server) and its seed file (SU...)."""

    public_key: str
    seed: str = field(repr=False)  # not in pytest's reports either
    seed_file: Path = field()


def make_nkey_user(directory: Path, name: str = "user") -> NkeyUser:
    """A new ed25519 key pair (32 random bytes are an ed25519 seed) in the NKeys encoding, its
    seed written to ``directory/name.nk`` as `nk -gen user` writes it."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public_key = nkeys.from_seed(bytearray(seed)).public_key.decode()
    directory.mkdir(parents=True, exist_ok=True)
    seed_file = directory / f"{name}.nk"
    seed_file.write_bytes(seed + b"\n")
    seed_file.chmod(0o600)
    return NkeyUser(public_key, seed.decode(), seed_file)


def nkey_auth_conf(*users: NkeyUser) -> str:
    """nats-server's authorization block letting in these NKey users (and no one else)."""
    entries = "\n".join(f"    {{ nkey: {u.public_key} }}" for u in users)
    return f"authorization {{\n  users = [\n{entries}\n  ]\n}}\n"


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

    @property
    def server_name(self) -> str:
        return f"ed-test-{self.port}"

    def start(self) -> None:
        exe = nats_server_exe()
        store = self.workdir / "store"
        store.mkdir(parents=True, exist_ok=True)
        extra = self.extra_conf
        if self.mqtt_port:
            extra += f"\nmqtt {{\n  listen: 127.0.0.1:{self.mqtt_port}\n}}\n"
        conf = self.workdir / "nats.conf"
        conf.write_text(NATS_CONF.format(name=self.server_name, port=self.port, store=store, extra=extra))
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
def nkey_user(tmp_path: Path) -> NkeyUser:
    return make_nkey_user(tmp_path / "nkeys")


@pytest.fixture
def nkey_stranger(tmp_path: Path) -> NkeyUser:
    """A valid NKey user that ``nats_nkey_server`` does not list."""
    return make_nkey_user(tmp_path / "nkeys-stranger", "stranger")


@pytest.fixture
def nats_nkey_server(tmp_path: Path, nkey_user: NkeyUser) -> Iterator[NatsServer]:
    """nats-server with JetStream that lets in ``nkey_user`` only (NKey authentication)."""
    yield from running_nats(tmp_path / "nats-nkey", extra_conf=nkey_auth_conf(nkey_user))


@pytest.fixture
def nats_mqtt_server(tmp_path: Path) -> Iterator[NatsServer]:
    """nats-server with its MQTT listener (which needs server_name and JetStream)."""
    yield from running_nats(tmp_path / "nats-mqtt", mqtt=True)


CLUSTER_CONF = """\
cluster {{
  name: {name}
  listen: 127.0.0.1:{port}
  routes: [{routes}]
}}
"""


@dataclass
class NatsCluster:
    """Three (``size``) nats-server nodes clustered on loopback, JetStream on each (R3 streams
    and buckets). ``url`` names every node; a node can be killed (SIGKILL) and started again on
    its ports and store."""

    workdir: Path
    size: int = 3
    nodes: list[NatsServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        cluster_ports = [free_port() for _ in range(self.size)]
        for i, port in enumerate(cluster_ports):
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in cluster_ports if p != port)
            conf = CLUSTER_CONF.format(name="ed-test-cluster", port=port, routes=routes)
            self.nodes.append(NatsServer(self.workdir / f"node{i}", extra_conf=conf))

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until JetStream answers on every node (the cluster elected its meta leader)."""
        asyncio.run(_jetstream_ready([n.url for n in self.nodes if n.proc is not None], timeout))

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (no goodbye to its peers or clients)."""
        node = self.nodes[index]
        if node.proc is not None:
            node.proc.kill()
            node.proc.wait(10)
            node.proc = None

    def leader(self, stream: str) -> int:
        """The index of the node leading ``stream`` (a KV bucket's stream is KV_<bucket>)."""
        url = next(n.url for n in self.nodes if n.proc is not None)
        name = asyncio.run(stream_leader(url, stream))
        return next(i for i, n in enumerate(self.nodes) if n.server_name == name)

    def colocate_leaders(self, stream: str, other: str, tries: int = 20) -> int:
        """Make the node leading ``stream`` lead ``other`` too (its leader steps down until a
        new election lands there); that node's index."""
        for _ in range(tries):
            target = self.leader(stream)
            if self.leader(other) == target:
                return target
            asyncio.run(step_down(next(n.url for n in self.nodes if n.proc is not None), other))
        raise AssertionError(f"the leaders of {stream} and {other} never met in {tries} elections")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def log(self) -> str:
        return "\n".join(f"--- node {i}\n{n.log()[-3000:]}" for i, n in enumerate(self.nodes))


async def stream_leader(url: str, stream: str, timeout: float = 20.0) -> str:
    """The stream's leader, once it has one (after a step-down, an election)."""
    import nats

    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = await nc.jetstream(timeout=2).stream_info(stream)
                if info.cluster is not None and info.cluster.leader:
                    return str(info.cluster.leader)
            except Exception:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {stream} has no leader after {timeout} s")
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def step_down(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
        await asyncio.sleep(0.5)  # the election that follows
    finally:
        await nc.close()


async def _jetstream_ready(urls: list[str], timeout: float) -> None:
    import nats

    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
                try:
                    await nc.jetstream(timeout=1).account_info()
                    break
                finally:
                    await nc.close()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    if len(urls) > 1:
        await _placement_ready(urls[0], len(urls), deadline)


async def _placement_ready(url: str, replicas: int, deadline: float) -> None:
    """Every node answering is not yet a cluster that places replicated streams: until the
    meta group knows every peer, an R3 stream is refused ("no suitable peers for placement").
    Place (then delete) a probe stream of ``replicas`` until the cluster takes it."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url, connect_timeout=1)
    try:
        js = nc.jetstream(timeout=2)
        while True:
            try:
                await js.add_stream(
                    StreamConfig(name="READY_PROBE", subjects=["ready.probe"], num_replicas=replicas)
                )
                await js.delete_stream("READY_PROBE")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A three-node nats-server cluster with JetStream, on free loopback ports."""
    cluster = NatsCluster(tmp_path / "nats-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
