"""The webhook connector against its real receiver, the built-in broker and real MQTT clients."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventdesk.connectors.webhook import SERVERS, BadRequestError, BodyRules, sign, signature_ok
from eventdesk.connectors.webhook import server as webhook_server
from eventdesk.connectors.webhook.errors import listen_error
from eventdesk.core.capture import Capture
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import ConfigError, ConnectorError
from eventdesk.core.home import Home
from eventdesk.core.log_repeats import RepeatedMessageFilter
from eventdesk.core.paths import resolve_paths
from eventdesk.core.runtime import Runtime
from eventdesk.core.workspace import DatasourceConfig
from tests.cli.harness import RunProcess, cli_env, eventdesk, home_args, ok
from tests.peers.servers import Subscriber, free_port, missing_peer

# -- pure logic: how a body becomes events --------------------------------------------------

RULES = BodyRules(datasource="ds", model="m", op_field="op", op_header="X-Event-Op", key_field="id")


def test_body_rules_op_from_field_then_header_then_created() -> None:
    (ev,) = RULES.events(b'{"id": "a", "op": "delete"}', {"X-Event-Op": "updated"})
    assert (ev.op, ev.key, ev.payload) == ("deleted", "a", {"id": "a", "op": "delete"})
    (ev,) = RULES.events(b'{"id": 7}', {"X-Event-Op": "modified"})
    assert (ev.op, ev.key) == ("updated", "7")
    (ev,) = RULES.events(b'{"id": "a", "_rev": "2-x"}', {})
    assert (ev.op, ev.rev) == ("created", "2-x")


def test_body_rules_array_is_one_event_per_object_in_order() -> None:
    events = RULES.events(b'[{"id": "a"}, {"id": "b", "op": "updated"}]', {})
    assert [(e.key, e.op) for e in events] == [("a", "created"), ("b", "updated")]
    assert events[0].seq < events[1].seq  # monotonic, though never compared by EventDesk itself


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b'{"id": 1', "invalid JSON"),
        (b"[]", "empty array"),
        (b'"text"', "expected a JSON object"),
        (b'{"name": "x"}', "key field 'id'"),
        (b'{"id": true}', "key field 'id'"),
        (b'{"id": "a", "op": "exploded"}', "expected created, updated or deleted"),
        (b'[{"id": "a"}, 3]', "item 1"),
    ],
)
def test_body_rules_reject_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(BadRequestError) as info:
        RULES.events(body, {})
    assert info.value.status == 400
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("error", "field"),
    [
        (OSError(errno.EADDRINUSE, "Address already in use"), "port"),
        (OSError(errno.EACCES, "Permission denied"), "port"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "host"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "host"),
    ],
)
def test_a_server_that_cannot_listen_names_the_setting_to_change(error: OSError, field: str) -> None:
    exc = listen_error(error, "datasource 'hooks'", "127.0.0.1", 8787)
    assert (exc.field, exc.terminal, exc.obj) == (field, True, "datasource 'hooks'")
    assert "cannot listen on 127.0.0.1:8787" in str(exc)


# -- the real receiver ------------------------------------------------------------------------


@dataclass
class Receiver:
    home: Home
    runtime: Runtime
    url: str
    broker_port: int
    topic: str

    async def post(
        self, body: bytes | str, headers: dict[str, str] | None = None, path: str = "/hooks/accounts"
    ) -> tuple[int, Any]:
        data = body.encode() if isinstance(body, str) else body
        base = self.url.rsplit("/hooks/", 1)[0]
        async with (
            aiohttp.ClientSession() as session,
            session.post(base + path, data=io.BytesIO(data), headers=headers or {}) as resp,
        ):
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    def count(self) -> int:
        return self.home.capture.count("accounts")

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])


async def _make_receiver(home: Home, unique_topic: str, secret: str | None = None) -> Receiver:
    port, broker_port = free_port(), free_port()
    home.add_datasource("hooks", "webhook", {"port": port}, secret=secret)
    home.add_model("accounts", "hooks", {})
    home.add_broker("builtin", "local", {"port": broker_port})
    home.add_route("r", "accounts", "builtin", {"topic": unique_topic + "/{op}", "format": "seed", "qos": 1})
    runtime = Runtime(home.workspace, home.capture)
    await start_and_wait_listening(runtime)
    return Receiver(home, runtime, f"http://127.0.0.1:{port}/hooks/accounts", broker_port, unique_topic)


async def start_and_wait_listening(runtime: Runtime) -> None:
    """Start every model and return once each one's receiver listens."""
    listening: set[str] = set()
    all_listening = asyncio.Event()

    def on_state(key: str, change: StateChange) -> None:
        if change.state is State.RUNNING and key.startswith("model/"):
            listening.add(key)
            if len(listening) == len(runtime.workspace.models):
                all_listening.set()

    runtime.on_state(on_state)
    await runtime.start()
    await asyncio.wait_for(all_listening.wait(), 10)


@pytest_asyncio.fixture
async def receiver(isolated_home: Path, unique_topic: str) -> AsyncIterator[Receiver]:
    home = Home.open(str(isolated_home))
    rcv = await _make_receiver(home, unique_topic)
    yield rcv
    await rcv.runtime.aclose()
    home.close()
    assert SERVERS.get("127.0.0.1", int(rcv.url.split(":")[2].split("/")[0])) is None


@pytest_asyncio.fixture
async def signed_receiver(isolated_home: Path, unique_topic: str) -> AsyncIterator[Receiver]:
    home = Home.open(str(isolated_home))
    rcv = await _make_receiver(home, unique_topic, secret="s3cret-shared")
    yield rcv
    await rcv.runtime.aclose()
    home.close()


async def _mosquitto_sub(port: int, topic: str, count: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start ``mosquitto_sub -d`` and return once it is subscribed; messages land in the list."""
    if shutil.which("mosquitto_sub") is None:
        missing_peer("mosquitto_sub", "apt-get install mosquitto-clients")
    proc = await asyncio.create_subprocess_exec(
        "stdbuf", "-oL", "mosquitto_sub", "-d", "-p", str(port), "-t", topic, "-q", "1", "-C", str(count), "-W", "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(15):
        while b"SUBACK" not in (line := await proc.stdout.readline()):
            assert line, "mosquitto_sub ended before subscribing"
    return proc, []


@pytest.mark.asyncio
async def test_posted_events_are_captured_then_republished_to_paho_and_mosquitto_sub(
    receiver: Receiver,
) -> None:
    paho = await asyncio.to_thread(Subscriber, port=receiver.broker_port, topic=receiver.topic + "/#", qos=1)
    proc, _ = await _mosquitto_sub(receiver.broker_port, receiver.topic + "/#", 3)
    try:
        status, reply = await receiver.post('{"id": "acc-1", "name": "Asha", "balance": 10}')
        assert status == 200 and reply["accepted"] == 1
        assert receiver.count() == 1  # 2xx means captured already
        status, _ = await receiver.post(
            '[{"id": "acc-1", "op": "updated", "balance": 20}, {"id": "acc-1", "op": "deleted"}]'
        )
        assert status == 200
        got = await asyncio.to_thread(paho.wait_for, 3)
        assert [m.topic for m in got] == [
            f"{receiver.topic}/{op}" for op in ("created", "updated", "deleted")
        ]
        assert json.loads(got[0].payload) == {
            "model": "accounts",
            "message": {"id": "acc-1", "name": "Asha", "balance": 10},
        }
        assert proc.stdout is not None
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        assert [json.loads(line)["message"]["id"] for line in lines] == ["acc-1"] * 3
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.to_thread(paho.close)
    events = receiver.home.capture.latest(10, models=["accounts"])
    assert sorted(e.envelope["op"] for e in events) == ["created", "deleted", "updated"]
    assert all(e.envelope["source"] == {"connector": "webhook"} for e in events)


@pytest.mark.asyncio
async def test_concurrent_posts_are_all_captured(receiver: Receiver) -> None:
    results = await asyncio.gather(*(receiver.post(json.dumps({"id": f"k{i}"})) for i in range(200)))
    assert [status for status, _ in results] == [200] * 200
    assert receiver.count() == 200
    checkpoint = receiver.home.capture.checkpoint("accounts")
    assert checkpoint is not None


@pytest.mark.asyncio
async def test_bad_or_missing_signature_is_401_counted_and_nothing_captured(
    signed_receiver: Receiver,
) -> None:
    body = b'{"id": "acc-1"}'
    status, reply = await signed_receiver.post(body)
    assert status == 401 and "missing signature" in reply["error"]
    status, reply = await signed_receiver.post(body, {"X-Hub-Signature-256": sign("wrong", body)})
    assert status == 401 and "bad signature" in reply["error"]
    tampered = b'{"id": "acc-2"}'
    status, _ = await signed_receiver.post(tampered, {"X-Hub-Signature-256": sign("s3cret-shared", body)})
    assert status == 401
    assert signed_receiver.count() == 0
    assert "s3cret" not in json.dumps(reply)
    connector = signed_receiver.runtime.connector_of("accounts")
    assert connector is not None and connector.counts.rejected[401] == 3  # type: ignore[attr-defined]
    status, _ = await signed_receiver.post(body, {"X-Hub-Signature-256": sign("s3cret-shared", body)})
    assert status == 200
    assert signed_receiver.count() == 1


@pytest.mark.asyncio
async def test_oversized_invalid_and_misrouted_bodies_are_refused(receiver: Receiver) -> None:
    status, reply = await receiver.post(b'{"id": "x", "pad": "' + b"a" * (1024 * 1024) + b'"}')
    assert status == 413 and "limit" in reply["error"]
    status, reply = await receiver.post('{"id": "x",')
    assert status == 400 and reply["error"].startswith("invalid JSON")
    status, reply = await receiver.post('{"name": "no key"}')
    assert status == 400 and "'id'" in reply["error"]
    status, reply = await receiver.post('{"id": "x"}', path="/hooks/nothing-here")
    assert status == 404 and "/hooks/accounts" in reply["error"]
    assert receiver.count() == 0
    state = receiver.runtime.state_of("model/accounts")
    assert state.state is State.RUNNING
    # The rejection counts reach the model's state within a second.
    counted = asyncio.Event()
    receiver.runtime.on_state(
        lambda key, change: counted.set() if "1 x 413" in (change.detail or "") else None
    )
    await asyncio.wait_for(counted.wait(), 5)
    assert "2 x 400" in (receiver.runtime.state_of("model/accounts").detail or "")


async def _terminal_error_of(home: Home, model: str) -> ConnectorError:
    """Start ``model`` and return the terminal error that stops it."""
    runtime = Runtime(home.workspace, home.capture)
    errors: list[Exception] = []
    failed = asyncio.Event()
    runtime.on_terminal(lambda key, exc: (errors.append(exc), failed.set()))
    await runtime.start_model(model)
    await asyncio.wait_for(failed.wait(), 5)
    await runtime.aclose()
    (error,) = errors
    assert isinstance(error, ConnectorError) and error.terminal
    return error


@pytest.mark.asyncio
async def test_a_taken_port_is_a_terminal_error_naming_port(isolated_home: Path) -> None:
    home = Home.open(str(isolated_home))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home.add_datasource("hooks", "webhook", {"port": port})
        home.add_model("accounts", "hooks", {})
        error = await _terminal_error_of(home, "accounts")
    home.close()
    assert error.field == "port" and "already in use" in str(error) and "datasource 'hooks'" in str(error)


@pytest.mark.asyncio
async def test_models_of_one_datasource_share_its_server(isolated_home: Path) -> None:
    home = Home.open(str(isolated_home))
    port = free_port()
    home.add_datasource("hooks", "webhook", {"port": port})
    home.add_model("accounts", "hooks", {})
    home.add_model("orders", "hooks", {"path": "/in/orders", "key_field": "order_no"})
    runtime = Runtime(home.workspace, home.capture)
    await start_and_wait_listening(runtime)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/in/orders", data=b'{"order_no": 42}') as r:
                assert r.status == 200
            await runtime.stop_model("accounts")
            async with session.post(f"http://127.0.0.1:{port}/hooks/accounts", data=b'{"id": 1}') as r:
                assert r.status == 404  # its path is gone, the server stays for "orders"
            async with session.post(f"http://127.0.0.1:{port}/in/orders", data=b'{"order_no": 43}') as r:
                assert r.status == 200
    finally:
        await runtime.aclose()
    assert [e.envelope["key"] for e in home.capture.latest(5, models=["orders"])] == ["42", "43"]
    assert SERVERS.get("127.0.0.1", port) is None
    home.close()


# -- at-least-once across SIGKILL --------------------------------------------------------------


@pytest.mark.slow
def test_a_post_answered_2xx_is_in_capture_after_sigkill(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port, broker_port = free_port(), free_port()
    ok(*home_args(home), "demo", "--webhook-port", str(port), "--broker-port", str(broker_port))
    run = RunProcess(args=home_args(home))
    try:
        run.wait_line("running (listening on")
        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def sender(lane: int) -> None:
            i = 0
            while not stop.is_set():
                body = json.dumps({"id": f"acc-{lane}-{i}", "balance": i}).encode()
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/hooks/accounts",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        if resp.status == 200:
                            ids = json.loads(resp.read())["ids"]
                            with lock:
                                acked.extend(ids)
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    return  # the receiver is gone: a real sender would retry later
                i += 1

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        while True:  # kill it mid-stream, once a few hundred were acknowledged
            with lock:
                if len(acked) >= 300:
                    break
            threads[0].join(0.01)
        run.kill()
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        if run.proc.poll() is None:
            run.kill()
    capture = Capture(resolve_paths(str(home)).capture_file)
    try:
        stored = {e.envelope["id"] for e in capture.latest(100_000, models=["accounts"])}
    finally:
        capture.close()
    missing = [i for i in acked if i not in stored]
    assert len(acked) >= 300
    assert missing == []


# -- hostile clients ----------------------------------------------------------------------------


def _raw_post(port: int, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """POST with header bytes exactly as given (an HTTP client would refuse or re-encode them)."""
    head = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [name + b": " + value for name, value in headers]
    head.append(b"Content-Length: " + str(len(body)).encode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "header",
    [
        "sha256=ä".encode(),
        b"sha256=" + "é".encode() * 64,
        b"sha256=\xff\xfe",
        "✓".encode(),
        b"sha256=abc",  # odd length
        b"sha256=" + b"0" * 64,  # well formed, wrong
        b"SHA256=" + b"zz" * 32,  # not hex
        b"sha256=",
        b"md5=" + b"0" * 32,
    ],
)
@pytest.mark.asyncio
async def test_a_malformed_or_non_ascii_signature_is_401_with_a_reason_and_no_traceback(
    signed_receiver: Receiver, header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    status, reply = await asyncio.to_thread(
        _raw_post,
        signed_receiver.port,
        "/hooks/accounts",
        b'{"id": "acc-1"}',
        [(b"X-Hub-Signature-256", header)],
    )
    assert status == 401, reply
    assert "signature" in json.loads(reply)["error"]
    assert signed_receiver.count() == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@given(secret=st.text(min_size=1), body=st.binary(), header=st.one_of(st.none(), st.text()))
def test_signature_check_never_raises_and_accepts_only_the_right_signature(
    secret: str, body: bytes, header: str | None
) -> None:
    assert signature_ok(secret, body, sign(secret, body))
    assert signature_ok(secret, body, sign(secret, body).upper().replace("SHA256=", "sha256="))
    assert isinstance(signature_ok(secret, body, header), bool)
    if header is not None and header.strip().lower().removeprefix("sha256=") != sign(secret, body)[7:]:
        assert not signature_ok(secret, body, header)


def _signed_webhook_home(home: Path, port: int, secret: str) -> None:
    ok(*home_args(home), "datasource", "add", "hooks", "--kind", "webhook", "--port", str(port),
       "--secret-stdin", stdin=secret + "\n")  # fmt: skip
    ok(*home_args(home), "model", "add", "accounts", "--datasource", "hooks")


@pytest.mark.slow
def test_any_signature_header_or_body_gets_2xx_or_4xx_never_500(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    _signed_webhook_home(home, port, "s3cret-shared")
    run = RunProcess(args=home_args(home))
    try:
        run.wait_line("running (listening on")

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            header=st.binary(max_size=120).filter(lambda b: b"\r" not in b and b"\n" not in b),
            body=st.binary(max_size=300),
            signed=st.booleans(),
        )
        def check(header: bytes, body: bytes, signed: bool) -> None:
            value = sign("s3cret-shared", body).encode() if signed else header
            status, reply = _raw_post(port, "/hooks/accounts", body, [(b"X-Hub-Signature-256", value)])
            assert 200 <= status < 500, (status, reply)

        check()
    finally:
        rc = run.stop()
    assert rc == 0
    assert "Traceback" not in run.output()


def _open_silently(port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections that never send a byte, connected before it returns."""
    socks = []
    for i in range(count):
        if i % 50 == 0:
            time.sleep(0.1)  # let the receiver accept them: a full backlog would drop them instead
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 60  # a SYN dropped on a full backlog is sent again later
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(1.0):
                selector.unregister(key.fileobj)
    return socks


@pytest.mark.slow
def test_1100_silent_connections_neither_block_a_signed_post_nor_flood_stderr(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        missing_peer("a file limit of 1300 for the test process", "ulimit -Hn 4096")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    home, port = tmp_path / "home", free_port()
    _signed_webhook_home(home, port, "s3cret-shared")
    stdout, stderr = (tmp_path / "stdout").open("wb"), (tmp_path / "stderr").open("wb")

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    proc = subprocess.Popen(
        [sys.executable, "-m", "eventdesk", *home_args(home), "run"],
        stdout=stdout, stderr=stderr, env=cli_env(), preexec_fn=limit_files,
    )  # fmt: skip
    silent: list[socket.socket] = []
    try:
        for _ in range(300):
            if b"listening on" in (tmp_path / "stdout").read_bytes():
                break
            time.sleep(0.1)
        silent = _open_silently(port, 1100)
        for i in range(3):
            body = json.dumps({"id": f"acc-{i}"}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/hooks/accounts",
                data=body,
                headers={"X-Hub-Signature-256": sign("s3cret-shared", body)},
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
    finally:
        for sock in silent:
            sock.close()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
        stdout.close()
        stderr.close()
    errors = (tmp_path / "stderr").read_text(errors="replace")
    assert rc == 0, errors[-3000:]
    assert len(errors.splitlines()) < 40, errors[:3000]
    capture = Capture(resolve_paths(str(home)).capture_file)
    try:
        assert capture.count("accounts") == 3
    finally:
        capture.close()


def _closed_by_peer(sock: socket.socket, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.asyncio
async def test_connections_over_the_limit_close_the_oldest_silent_one(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = receiver.port
    server = SERVERS.get("127.0.0.1", port)
    assert server is not None and server.guard is not None
    monkeypatch.setattr(server.guard, "limit", 4)
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    try:
        status, _ = await receiver.post('{"id": "acc-1"}')
        assert status == 200
        closed = await asyncio.gather(*(asyncio.to_thread(_closed_by_peer, s, 0.5) for s in silent))
        assert closed == [True, True, True, False, False, False]  # the three oldest made room
    finally:
        for sock in silent:
            sock.close()
    assert receiver.count() == 1


@pytest_asyncio.fixture
async def hasty_receiver(
    isolated_home: Path, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Receiver]:
    """A receiver that waits 0.3 s for a request head or a body."""
    monkeypatch.setattr(webhook_server, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(webhook_server, "BODY_TIMEOUT", 0.3)
    home = Home.open(str(isolated_home))
    rcv = await _make_receiver(home, unique_topic)
    yield rcv
    await rcv.runtime.aclose()
    home.close()


@pytest.mark.asyncio
async def test_a_silent_connection_is_closed_after_the_head_timeout(hasty_receiver: Receiver) -> None:
    with socket.create_connection(("127.0.0.1", hasty_receiver.port)) as silent:
        assert await asyncio.to_thread(_closed_by_peer, silent)


@pytest.mark.asyncio
async def test_a_body_that_does_not_arrive_in_time_is_408(hasty_receiver: Receiver) -> None:
    def post_half_a_body() -> bytes:
        with socket.create_connection(("127.0.0.1", hasty_receiver.port), timeout=10) as sock:
            head = b"POST /hooks/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            sock.sendall(head + b'{"id": ')
            return sock.recv(65536)

    reply = await asyncio.to_thread(post_half_a_body)
    assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive" in reply
    assert hasty_receiver.count() == 0


def test_repeated_log_messages_pass_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("eventdesk.test.repeats")
    logger.addFilter(RepeatedMessageFilter(interval=0.2))
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for i in range(1100):
            logger.warning("accept failed: %s", i)
        logger.warning("another kind")
        time.sleep(0.25)
        logger.warning("accept failed: %s", "again")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:2] == ["accept failed: 0", "another kind"]
    assert re.fullmatch(r"accept failed: again \(and 1,099 more in the last \d\.\d s\)", messages[2])
    assert len(messages) == 3


# -- a receiver on the network needs a secret ----------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "hooks.example.com"])
def test_a_non_loopback_receiver_without_a_secret_is_refused_naming_datasource_and_field(
    isolated_home: Path, host: str
) -> None:
    home = Home.open(str(isolated_home))
    with pytest.raises(ConfigError) as info:
        home.add_datasource("hooks", "webhook", {"host": host, "port": free_port()})
    assert info.value.obj == "datasource 'hooks'" and info.value.field == "secret"
    assert f"host {host}" in str(info.value) and "allow_unsigned" in str(info.value)
    assert "hooks" not in home.workspace.datasources
    home.add_datasource("hooks", "webhook", {"host": host, "port": free_port()}, secret="s3cret")
    with pytest.raises(ConfigError, match="field 'secret'"):
        home.set_secret("datasource", "hooks", None)  # removing it is refused the same way
    home.add_datasource("open", "webhook", {"host": host, "port": free_port(), "allow_unsigned": True})
    home.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_a_loopback_receiver_needs_no_secret(isolated_home: Path, host: str) -> None:
    home = Home.open(str(isolated_home))
    home.add_datasource("hooks", "webhook", {"host": host, "port": free_port()})
    home.close()


@pytest.mark.asyncio
async def test_an_unsigned_non_loopback_receiver_does_not_start(isolated_home: Path) -> None:
    home = Home.open(str(isolated_home))
    port = free_port()
    # As a hand-edited or older workspace file would have it: not checked on load.
    home.workspace.put_datasource(DatasourceConfig("hooks", "webhook", {"host": "0.0.0.0", "port": port}))
    home.add_model("accounts", "hooks", {})
    error = await _terminal_error_of(home, "accounts")
    home.close()
    assert error.obj == "datasource 'hooks'" and error.field == "secret"
    assert SERVERS.get("0.0.0.0", port) is None


def test_cli_refuses_an_unsigned_public_receiver_unless_allowed(tmp_path: Path) -> None:
    h = home_args(tmp_path / "home")
    add = ("datasource", "add", "hooks", "--kind", "webhook", "--host", "0.0.0.0", "--port", str(free_port()))
    result = eventdesk(*h, *add)
    assert result.returncode == 2
    assert "datasource 'hooks': field 'secret'" in result.stderr and "--allow-unsigned" in result.stderr
    ok(*h, *add, "--allow-unsigned")
    assert '"allow_unsigned": true' in ok(*h, "list", "--json")
