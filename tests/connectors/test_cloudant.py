"""The Cloudant/CouchDB connector against a real pouchdb-server (and a fault proxy before it)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from eventdesk.connectors.cloudant import CloudantConnector
from eventdesk.connectors.cloudant.changes import (
    change_to_event,
    describe_row,
    page_end,
    row_identity,
    since_param,
    split_page,
)
from eventdesk.connectors.cloudant.feed_stream import ChunkedBody, LineSplitter, ReadPacer
from eventdesk.connectors.cloudant.transport import make_service, post_changes, response_socket, socket_reader
from eventdesk.core.contracts import State, StateChange
from eventdesk.core.envelope import Event
from eventdesk.core.errors import ConnectorError
from eventdesk.core.intake import Intake
from eventdesk.core.workspace import DatasourceConfig, ModelConfig
from tests.peers.fault_proxy import FaultProxy
from tests.peers.servers import CouchServer, free_port, start_couch, stop_process

PASSWORD = "s3cret-Pa55word"


class FastCloudant(CloudantConnector):
    """Short backoff and heartbeat so fault tests take a second, not a minute."""

    BACKOFF_START: ClassVar[float] = 0.05
    BACKOFF_CAP: ClassVar[float] = 0.4
    HEARTBEAT_MS: ClassVar[int] = 1000


# One thread stands for the runtime's capture thread, shared by every FakeHost (as the
# runtime's is by every model); threads named so are not a connector's leak.
CAPTURE_THREAD = "fake-capture"
_capture = ThreadPoolExecutor(max_workers=1, thread_name_prefix=CAPTURE_THREAD)


def connector_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.name.startswith(CAPTURE_THREAD)}


class FakeHost:
    """The runtime's side of the contract: records batches and states, checks the thread."""

    def __init__(self, deliver_delay: float = 0.0) -> None:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.batches: list[tuple[list[Event], Any]] = []
        self.states: list[StateChange] = []
        self.deliver_delay = deliver_delay
        self.delivering = asyncio.Event()

    async def deliver(self, events: list[Event], checkpoint: Any) -> None:
        raise AssertionError("the Cloudant connector hands its events over through intake()")

    def intake(self, batch_size: int) -> Intake:
        return Intake(
            store=self._store, executor=_capture, loop=self.loop, batch_size=batch_size, inline_max=8
        )

    def _store(self, events: list[Event], checkpoint: Any) -> None:
        assert threading.get_ident() != self._loop_thread, "stored on the loop thread"
        self.loop.call_soon_threadsafe(self.delivering.set)
        if self.deliver_delay:
            time.sleep(self.deliver_delay)
        self.batches.append((list(events), checkpoint))

    def set_state(self, change: StateChange) -> None:
        assert threading.get_ident() == self._loop_thread, "set_state called off the loop thread"
        self.states.append(change)

    @property
    def events(self) -> list[Event]:
        return [e for batch, _ in self.batches for e in batch]

    def keys(self) -> set[str]:
        return {e.key for e in self.events}

    def count(self, state: State) -> int:
        return sum(1 for s in self.states if s.state == state)

    async def wait(self, what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                states = [(s.state.value, s.detail) for s in self.states]
                raise AssertionError(
                    f"timed out waiting for {what}; states={states}, keys={sorted(self.keys())}"
                )
            await asyncio.sleep(0.01)

    async def wait_keys(self, keys: set[str], timeout: float = 15.0) -> None:
        await self.wait(f"keys {sorted(keys)}", lambda: keys <= self.keys(), timeout)

    async def wait_state(self, state: State, at_least: int = 1, timeout: float = 15.0) -> None:
        await self.wait(f"{at_least} x {state.value}", lambda: self.count(state) >= at_least, timeout)


def make_connector(
    host: FakeHost,
    url: str,
    database: str,
    *,
    cls: type[CloudantConnector] = CloudantConnector,
    auth: str = "none",
    username: str = "",
    secret: str | None = None,
    selector: Any = None,
    batch_size: int = 1000,
    include_docs: bool = True,
) -> CloudantConnector:
    datasource = DatasourceConfig(
        "prod", "cloudant", {"url": url, "auth": auth, "username": username, "timeout": 10.0}
    )
    model = ModelConfig(
        "accounts",
        "prod",
        {
            "database": database,
            "since": "now",
            "include_docs": include_docs,
            "selector": selector,
            "batch_size": batch_size,
        },
    )
    return cls(datasource=datasource, model=model, secret=secret, host=host)


@contextlib.asynccontextmanager
async def running(connector: CloudantConnector, since: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run the connector in a task; cancel it (as the runtime does) on the way out."""
    task = asyncio.create_task(connector.run(since))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def put(couch: CouchServer, db: str, doc_id: str, body: dict[str, Any]) -> str:
    answer = json.loads(couch.request("PUT", f"/{db}/{doc_id}", json.dumps(body).encode()))
    return str(answer["rev"])


def server_changes(couch: CouchServer, db: str) -> list[dict[str, Any]]:
    return list(json.loads(couch.request("GET", f"/{db}/_changes"))["results"])


# -- the feed -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_create_update_delete_give_op_key_rev_seq_and_payload(
    couch: CouchServer, couch_db: str
) -> None:
    host = FakeHost()
    async with running(make_connector(host, couch.url, couch_db), "now"):
        await host.wait_state(State.RUNNING)
        rev1 = put(couch, couch_db, "acct-1", {"name": "Ada", "region": "Pune"})
        await host.wait_keys({"acct-1"})
        rev2 = put(couch, couch_db, "acct-1", {"_rev": rev1, "name": "Ada L.", "region": "Pune"})
        await host.wait("the update", lambda: len(host.events) >= 2)
        rev3 = json.loads(couch.request("DELETE", f"/{couch_db}/acct-1?rev={rev2}"))["rev"]
        await host.wait("the deletion", lambda: len(host.events) >= 3)

    created, updated, deleted = host.events
    assert [e.op for e in host.events] == ["created", "updated", "deleted"]
    assert [e.rev for e in host.events] == [rev1, rev2, rev3]
    assert {e.key for e in host.events} == {"acct-1"}
    assert created.payload == {"_id": "acct-1", "_rev": rev1, "name": "Ada", "region": "Pune"}
    assert updated.payload["name"] == "Ada L."
    assert deleted.payload["_deleted"] is True
    assert all(e.datasource == "prod" and e.model == "accounts" for e in host.events)
    assert created.source == {"connector": "cloudant", "database": couch_db}
    # seq is the server's own value, stored as it came (pouchdb-server: an integer)
    assert deleted.seq == server_changes(couch, couch_db)[-1]["seq"]
    for batch, checkpoint in host.batches:
        assert checkpoint == batch[-1].seq
    assert [s.state for s in host.states[:2]] == [State.CONNECTING, State.RUNNING]


@pytest.mark.asyncio
async def test_since_zero_replays_history_and_now_does_not(couch: CouchServer, couch_db: str) -> None:
    for i in range(3):
        put(couch, couch_db, f"old-{i}", {"i": i})

    everything = FakeHost()
    async with running(make_connector(everything, couch.url, couch_db), "0"):
        await everything.wait_keys({"old-0", "old-1", "old-2"})

    only_new = FakeHost()
    async with running(make_connector(only_new, couch.url, couch_db), "now"):
        await only_new.wait_state(State.RUNNING)
        put(couch, couch_db, "new-1", {"i": 9})
        await only_new.wait_keys({"new-1"})
    assert only_new.keys() == {"new-1"}


@pytest.mark.asyncio
async def test_resume_from_checkpoint_delivers_only_later_changes(couch: CouchServer, couch_db: str) -> None:
    for i in range(3):
        put(couch, couch_db, f"a-{i}", {"i": i})
    first = FakeHost()
    async with running(make_connector(first, couch.url, couch_db), "0"):
        await first.wait_keys({"a-0", "a-1", "a-2"})
    checkpoint = first.batches[-1][1]

    put(couch, couch_db, "b-0", {"i": 10})
    put(couch, couch_db, "b-1", {"i": 11})
    second = FakeHost()
    async with running(make_connector(second, couch.url, couch_db), checkpoint):
        await second.wait_keys({"b-0", "b-1"})
    assert [e.key for e in second.events] == ["b-0", "b-1"]


@pytest.mark.asyncio
async def test_2000_docs_bulk_inserted_while_running_arrive_in_batches(
    couch: CouchServer, couch_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    decode = ChunkedBody.feed

    def counting_feed(self: ChunkedBody, data: bytes) -> bytes:
        reads.append(len(data))
        return decode(self, data)

    monkeypatch.setattr(ChunkedBody, "feed", counting_feed)
    host = FakeHost()
    async with running(make_connector(host, couch.url, couch_db, batch_size=500), "now"):
        await host.wait_state(State.RUNNING)
        docs = [{"_id": f"bulk-{i:04d}", "n": i} for i in range(2000)]
        await asyncio.to_thread(
            couch.request, "POST", f"/{couch_db}/_bulk_docs", json.dumps({"docs": docs}).encode()
        )
        await host.wait("2,000 documents", lambda: len(host.keys()) >= 2000, timeout=30)

    assert host.keys() == {f"bulk-{i:04d}" for i in range(2000)}
    # The continuous feed was read in bulk: far fewer reads than changes (one HTTP chunk each).
    assert 0 < len(reads) < 1000, len(reads)
    sizes = [len(batch) for batch, _ in host.batches]
    assert max(sizes) > 1 and max(sizes) <= 500
    assert len(host.events) == 2000  # nothing twice within one run
    for batch, checkpoint in host.batches:
        assert checkpoint == batch[-1].seq


@pytest.mark.asyncio
async def test_selector_is_evaluated_by_the_server(couch: CouchServer, couch_db: str) -> None:
    put(couch, couch_db, "old-blr", {"region": "Bangalore"})
    put(couch, couch_db, "old-pun", {"region": "Pune"})
    host = FakeHost()
    connector = make_connector(host, couch.url, couch_db, selector={"region": "Bangalore"})
    async with running(connector, "0"):
        await host.wait_keys({"old-blr"})
        put(couch, couch_db, "new-pun", {"region": "Pune"})
        put(couch, couch_db, "new-blr", {"region": "Bangalore"})
        await host.wait_keys({"new-blr"})
    assert host.keys() == {"old-blr", "new-blr"}


@pytest.mark.asyncio
async def test_without_documents_the_payload_is_the_identity(couch: CouchServer, couch_db: str) -> None:
    host = FakeHost()
    async with running(make_connector(host, couch.url, couch_db, include_docs=False), "now"):
        await host.wait_state(State.RUNNING)
        rev = put(couch, couch_db, "plain", {"secret-field": 1})
        await host.wait_keys({"plain"})
    assert host.events[0].payload == {"_id": "plain", "_rev": rev}


@pytest.mark.asyncio
async def test_huge_document_is_delivered_whole(couch: CouchServer, couch_db: str) -> None:
    big = "x" * (2 * 1024 * 1024)
    host = FakeHost()
    async with running(make_connector(host, couch.url, couch_db), "now"):
        await host.wait_state(State.RUNNING)
        await asyncio.to_thread(put, couch, couch_db, "huge", {"blob": big})
        put(couch, couch_db, "small", {"after": True})
        await host.wait_keys({"huge", "small"})
    assert host.events[0].payload["blob"] == big


# -- stopping -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancel_returns_at_once_and_leaves_no_thread(couch: CouchServer, couch_db: str) -> None:
    before = connector_threads()
    host = FakeHost()
    task = asyncio.create_task(make_connector(host, couch.url, couch_db).run("now"))
    await host.wait_state(State.RUNNING)
    put(couch, couch_db, "one", {"n": 1})
    await host.wait_keys({"one"})  # the continuous stream is open and idle now

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert connector_threads() == before


@pytest.mark.asyncio
async def test_cancel_before_any_change_is_also_prompt(couch: CouchServer, couch_db: str) -> None:
    # pouchdb-server (like CouchDB) sends a continuous feed's headers only with the first
    # change or heartbeat: the stop must not wait for them.
    before = connector_threads()
    host = FakeHost()
    task = asyncio.create_task(make_connector(host, couch.url, couch_db).run("now"))
    await host.wait_state(State.RUNNING)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert connector_threads() == before


@pytest.mark.asyncio
async def test_cancel_during_capture_stores_what_was_read_and_nothing_more(
    couch: CouchServer, couch_db: str
) -> None:
    host = FakeHost(deliver_delay=0.3)
    task = asyncio.create_task(make_connector(host, couch.url, couch_db, batch_size=1).run("now"))
    await host.wait_state(State.RUNNING)
    for i in range(5):
        put(couch, couch_db, f"d-{i}", {"i": i})
    await host.delivering.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The batch being stored and what waited in the intake (its limit: two batches) were
    # stored before the cancel returned, in order; the rest was not read (it is after the
    # checkpoint, so the next run reads it).
    landed = [e.key for e in host.events]
    assert 1 <= len(landed) <= 3
    assert landed == [f"d-{i}" for i in range(len(landed))]
    await asyncio.sleep(0.4)  # would a stray delivery still land? (nothing to wait on: it must not)
    assert [e.key for e in host.events] == landed


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cut_connection_is_retried_and_nothing_is_lost(
    couch: CouchServer, couch_db: str, fault_proxy: Callable[[int], FaultProxy]
) -> None:
    proxy = fault_proxy(couch.port)
    host = FakeHost()
    async with running(make_connector(host, proxy.url, couch_db, cls=FastCloudant), "now"):
        await host.wait_state(State.RUNNING)
        put(couch, couch_db, "before", {"n": 1})
        await host.wait_keys({"before"})

        proxy.cut()
        await host.wait_state(State.RETRYING, at_least=3)  # it kept trying while cut
        put(couch, couch_db, "during-1", {"n": 2})
        put(couch, couch_db, "during-2", {"n": 3})
        proxy.heal()
        await host.wait_keys({"during-1", "during-2"})
        put(couch, couch_db, "after", {"n": 4})
        await host.wait_keys({"after"})

    retrying = [s for s in host.states if s.state == State.RETRYING]
    assert all(s.retry_in is not None and 0 < s.retry_in <= FastCloudant.BACKOFF_CAP for s in retrying)
    assert all(proxy.url in (s.detail or "") for s in retrying)
    assert "reset" in (retrying[0].detail or "") or "closed" in (retrying[0].detail or "")
    last_retry = max(i for i, s in enumerate(host.states) if s.state == State.RETRYING)
    assert State.RUNNING in [s.state for s in host.states[last_retry:]]
    assert sorted(e.key for e in host.events) == ["after", "before", "during-1", "during-2"]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [429, 500])
async def test_http_error_bursts_are_retried_and_nothing_is_lost(
    couch: CouchServer, couch_db: str, fault_proxy: Callable[[int], FaultProxy], status: int
) -> None:
    proxy = fault_proxy(couch.port)
    put(couch, couch_db, "old", {"n": 0})
    proxy.fail_with(status, 3)  # the first requests fail
    host = FakeHost()
    async with running(make_connector(host, proxy.url, couch_db, cls=FastCloudant), "0"):
        await host.wait_keys({"old"})
        assert proxy.failed_requests == 3
        assert f"HTTP {status}" in (host.states[1].detail or "")

        proxy.fail_with(status, 2)  # then a burst while the stream is open
        proxy.drop_connections()
        put(couch, couch_db, "during", {"n": 1})
        await host.wait_keys({"during"})
        put(couch, couch_db, "after", {"n": 2})
        await host.wait_keys({"after"})
    assert proxy.failed_requests == 5
    assert sorted(host.keys()) == ["after", "during", "old"]


@pytest.mark.asyncio
async def test_nothing_listening_is_retried_with_a_clear_detail() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    host = FakeHost()
    async with running(make_connector(host, url, "accounts", cls=FastCloudant), "now") as task:
        await host.wait_state(State.RETRYING, at_least=2)
        assert not task.done()
    detail = host.states[1].detail or ""
    assert "datasource 'prod'" in detail and "field 'url'" in detail
    assert url in detail and "connection refused" in detail

    with pytest.raises(ConnectorError, match="connection refused") as caught:
        await CloudantConnector.test_connection(make_connector(host, url, "x").datasource, None)
    assert caught.value.terminal is False and caught.value.field == "url"


@pytest.mark.asyncio
async def test_unknown_database_is_terminal_and_names_the_database(couch: CouchServer) -> None:
    host = FakeHost()
    connector = make_connector(host, couch.url, "no-such-db")
    with pytest.raises(ConnectorError) as caught:
        await asyncio.wait_for(connector.run("now"), 10)
    error = caught.value
    assert error.terminal and error.field == "database" and error.obj == "model 'accounts'"
    assert "no-such-db" in str(error) and error.status == 404

    with pytest.raises(ConnectorError) as again:
        await CloudantConnector.test_connection(connector.datasource, None, connector.model)
    assert again.value.terminal and again.value.field == "database"


@pytest.fixture
def secured_couch(tmp_path: Path) -> Iterator[CouchServer]:
    """A pouchdb-server of this test's own with an admin (so credentials are checked)."""
    server = start_couch(tmp_path)
    try:
        server.request("PUT", "/_config/admins/admin", json.dumps(PASSWORD).encode())
        server.request("PUT", "/guarded", auth=("admin", PASSWORD))
        yield server
    finally:
        stop_process(server.proc)


@pytest.mark.asyncio
@pytest.mark.parametrize("auth", ["basic", "session"])
async def test_wrong_password_is_terminal_names_the_secret_and_never_shows_it(
    secured_couch: CouchServer, auth: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng-Passw0rd-" + uuid.uuid4().hex[:6]
    # At DEBUG the SDK turns on http.client's wire log (process-wide): undo that afterwards.
    monkeypatch.setattr(http.client.HTTPConnection, "debuglevel", 0)
    monkeypatch.setattr(http.client, "print", print, raising=False)
    caplog.set_level(logging.DEBUG)
    host = FakeHost()
    connector = make_connector(
        host, secured_couch.url, "guarded", auth=auth, username="admin", secret=wrong, cls=FastCloudant
    )
    with pytest.raises(ConnectorError) as caught:
        await asyncio.wait_for(connector.run("now"), 10)
    error = caught.value
    assert error.terminal and error.field == "secret" and error.status == 401
    assert error.obj == "datasource 'prod'"
    assert wrong not in str(error) and wrong not in caplog.text

    with pytest.raises(ConnectorError) as again:
        await CloudantConnector.test_connection(connector.datasource, wrong, connector.model)
    assert again.value.field == "secret" and wrong not in str(again.value)

    summary = await CloudantConnector.test_connection(connector.datasource, PASSWORD, connector.model)
    assert "database 'guarded'" in summary
    assert PASSWORD not in caplog.text


@pytest.mark.asyncio
async def test_right_password_follows_the_feed(secured_couch: CouchServer) -> None:
    host = FakeHost()
    connector = make_connector(
        host, secured_couch.url, "guarded", auth="basic", username="admin", secret=PASSWORD
    )
    async with running(connector, "now"):
        await host.wait_state(State.RUNNING)
        secured_couch.request(
            "PUT", "/guarded/doc", json.dumps({"ok": True}).encode(), auth=("admin", PASSWORD)
        )
        await host.wait_keys({"doc"})


@pytest.mark.asyncio
async def test_connection_summary(couch: CouchServer, couch_db: str) -> None:
    put(couch, couch_db, "one", {})
    host = FakeHost()
    connector = make_connector(host, couch.url, couch_db)
    summary = await CloudantConnector.test_connection(connector.datasource, None, connector.model)
    assert summary.startswith("CouchDB-compatible server 4.2.0")
    assert summary.endswith(f"database {couch_db!r} with 1 document")


@pytest.mark.asyncio
async def test_list_databases_names_the_servers_databases(couch: CouchServer, couch_db: str) -> None:
    other = couch.create_database("other")
    datasource = make_connector(FakeHost(), couch.url, couch_db).datasource
    names = await CloudantConnector.list_databases(datasource, None)
    assert {couch_db, other} <= set(names)
    assert names == sorted(names)

    nobody = make_connector(FakeHost(), f"http://127.0.0.1:{free_port()}", "x").datasource
    with pytest.raises(ConnectorError, match="connection refused") as caught:
        await CloudantConnector.list_databases(nobody, None)
    assert caught.value.field == "url" and not caught.value.terminal


@pytest.mark.asyncio
async def test_missing_credentials_are_named_before_connecting() -> None:
    host = FakeHost()
    connector = make_connector(host, "http://127.0.0.1:9", "db", auth="basic", username="admin")
    with pytest.raises(ConnectorError) as caught:
        await connector.run("now")
    assert caught.value.terminal and caught.value.field == "secret"


# -- malformed feeds (a stub server: pouchdb-server never sends them) ------------------------

MALFORMED_FEED = [
    b'{"seq":1,"id":"good-1","changes":[{"rev":"1-a"}],"doc":{"_id":"good-1","_rev":"1-a"}}\n',
    b"<html>this is not JSON</html>\n",
    b'{"seq":2,"id":"good-2","changes":[{"rev":"1-b"}],"doc":{"_id":"good-2","n":[[[[1]]]]}}\n',
    b'["an", "array"]\n',
    b'{"seq":5,"id":"lone-surrogate","changes":[{"rev":"1-d"}],"doc":{"s":"\\ud800"}}\n',
    b'{"seq":3,"changes":[]}\n',
    b'{"seq":4,"id":"good-3","changes":[{"rev":"2-c"}],"deleted":true}\n',
]


class _StubCouch(http.server.BaseHTTPRequestHandler):
    """Serves MALFORMED_FEED as a continuous feed; refuses any selector with HTTP 400."""

    protocol_version = "HTTP/1.1"
    paths: ClassVar[list[str]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self._json({"db_name": "stub", "update_seq": 0, "doc_count": 0})

    def do_POST(self) -> None:
        self.paths.append(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if b"selector" in body:
            self._json({"error": "bad_request", "reason": "invalid operator $nope"}, status=400)
            return
        if "feed=continuous" not in self.path:  # nothing new: last_seq is where we started
            since = parse_qs(urlsplit(self.path).query).get("since", ["0"])[0]
            self._json({"results": [], "last_seq": since})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in [*MALFORMED_FEED, b"\n"]:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        with contextlib.suppress(OSError):  # hold the feed open until the client goes
            self.rfile.read(1)


class _BusyCouch(_StubCouch):
    """The stub, but its first ``_changes`` request is answered 429 with ``Retry-After: 1``;
    it notes when each request arrived."""

    arrivals: ClassVar[list[tuple[float, str]]]

    def do_POST(self) -> None:
        self.arrivals.append((time.monotonic(), self.path))
        if len(self.arrivals) > 1:
            super().do_POST()
            return
        self.paths.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = json.dumps({"error": "too_many_requests", "reason": "slow down"}).encode()
        self.send_response(429)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free port; its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def stub_couch() -> Iterator[tuple[str, list[str]]]:
    """The stub's URL and the list of request paths it received."""
    paths: list[str] = []
    with serving(type("StubCouch", (_StubCouch,), {"paths": paths})) as url:
        yield url, paths


@pytest.mark.asyncio
async def test_malformed_lines_are_skipped_with_a_warning(
    stub_couch: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    host = FakeHost()
    async with running(make_connector(host, stub_couch[0], "stub"), "now"):
        await host.wait_keys({"good-1", "good-2", "good-3"})
    assert [e.key for e in host.events] == ["good-1", "good-2", "good-3"]
    assert [e.seq for e in host.events] == [1, 2, 4]
    assert host.events[2].op == "deleted"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not JSON" in w for w in warnings)
    assert any("not an object" in w for w in warnings)
    assert any("not a change" in w for w in warnings)


# -- pure helpers ---------------------------------------------------------------------------


def test_the_urllib3_internals_the_feed_reader_uses_still_exist(couch: CouchServer, couch_db: str) -> None:
    # The bulk read (socket_reader) and the stop through a proxy (response_socket) reach into
    # urllib3's private HTTPResponse attributes; without them they fall back, slower or later.
    datasource = DatasourceConfig("prod", "couchdb", {"url": couch.url, "auth": "none"})
    service = make_service(datasource, None, read_timeout=5.0)
    params = {"feed": "continuous", "since": "now", "heartbeat": 500}
    try:
        with contextlib.closing(post_changes(service, couch_db, params, None)) as response:
            assert response.raw.chunked
            assert socket_reader(response) is not None
            assert response_socket(response) is not None
    finally:
        service.get_http_client().close()


def test_line_splitter_joins_long_lines_and_drops_over_long_ones() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\nde\n\nf") == [b"abc", b"de", b""]
    assert splitter.feed(b"ghijklmnopq") == []  # over 10 bytes: dropped
    assert splitter.feed(b"rest\nok\n") == [b"ok"]
    assert splitter.dropped == 1


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 10_000])
def test_chunked_body_decodes_pieces_of_any_size(piece: int) -> None:
    parts = [b'{"seq":1,"id":"a"}\n', b"\n", b"x" * 300 + b"\r\n\r\n", b'{"last_seq":3}\n']
    wire = chunked(*parts) + b"after the end"
    body = ChunkedBody()
    out = b"".join(body.feed(wire[i : i + piece]) for i in range(0, len(wire), piece))
    assert out == b"".join(parts)  # CRLFs inside a chunk's data are data
    assert body.ended


def test_chunked_body_rejects_a_bad_header() -> None:
    with pytest.raises(ValueError, match="bad chunk size"):
        ChunkedBody().feed(b"zz\r\nabc\r\n")
    with pytest.raises(ValueError, match="too long"):
        ChunkedBody().feed(b"1" * 2000)


def test_since_is_passed_back_untouched() -> None:
    assert since_param("now") == "now"
    assert since_param(42) == "42"
    assert since_param("13-g1AAAAB") == "13-g1AAAAB"
    assert since_param([1, "x"]) == '[1,"x"]'


def test_change_to_event_uses_revision_as_a_hint() -> None:
    names = {"datasource": "d", "model": "m", "database": "db"}
    created = change_to_event({"seq": "1-x", "id": "a", "changes": [{"rev": "1-a"}]}, **names)
    updated = change_to_event({"seq": "2-x", "id": "a", "changes": [{"rev": "3-b"}]}, **names)
    assert created is not None and created.op == "created" and created.seq == "1-x"
    assert updated is not None and updated.op == "updated"
    assert change_to_event({"seq": 1}, **names) is None


@pytest.mark.asyncio
async def test_retry_after_is_waited_out_before_the_next_try() -> None:
    # FastCloudant's backoff is capped at 0.4 s: only the server's Retry-After makes it wait 1 s.
    arrivals: list[tuple[float, str]] = []
    handler = type("BusyCouch", (_BusyCouch,), {"paths": [], "arrivals": arrivals})
    host = FakeHost()
    with serving(handler) as url:
        async with running(make_connector(host, url, "stub", cls=FastCloudant), "0"):
            await host.wait_keys({"good-1"})
    (busy_at, busy_path), (next_at, next_path) = arrivals[:2]
    assert "_changes" in busy_path and "_changes" in next_path
    assert next_at - busy_at >= 1.0, next_at - busy_at
    retrying = [s for s in host.states if s.state == State.RETRYING]
    assert len(retrying) == 1 and "HTTP 429" in (retrying[0].detail or "")
    assert retrying[0].retry_in is not None and retrying[0].retry_in >= 1.0


@pytest.mark.asyncio
async def test_string_seq_goes_back_to_the_server_untouched(stub_couch: tuple[str, list[str]]) -> None:
    url, paths = stub_couch
    host = FakeHost()
    async with running(make_connector(host, url, "stub"), "13-g1AAAAE7eJzLYWBg"):
        await host.wait_keys({"good-1"})
    assert all("since=13-g1AAAAE7eJzLYWBg" in p for p in paths if "_changes" in p)


@pytest.mark.asyncio
async def test_rejected_selector_is_terminal_and_names_the_selector(
    stub_couch: tuple[str, list[str]],
) -> None:
    # pouchdb-server 4.2 crashes on an invalid selector instead of answering 400: a stub does.
    host = FakeHost()
    connector = make_connector(host, stub_couch[0], "stub", selector={"n": {"$nope": 1}})
    with pytest.raises(ConnectorError) as caught:
        await asyncio.wait_for(connector.run("0"), 10)
    error = caught.value
    assert error.terminal and error.field == "selector" and error.obj == "model 'accounts'"
    assert "invalid operator" in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"results":[{"seq":1,"id":"a"}],"last_seq":"2-g1A","pending":5}', ("2-g1A", 5)),  # CouchDB
        (b'{"results":[\n{"seq":1,"id":"a"}\n],\n"last_seq":7,"pending":0}\n', (7, 0)),  # with newlines
        (b'{"results":[{"seq":3,"id":"a"}],"last_seq":3}', (3, None)),  # PouchDB: no "pending"
        (b'{"results":[{"seq":1,"doc":{"last_seq":"mine"}}],"last_seq":9}', (9, None)),  # a doc's field
        (b'{"results":[{"seq":1,"doc":{"last_seq":"mine"}}]}', None),  # cut short: no top-level end
        (b'{"results":[],"last_seq":', None),  # not JSON
        (b"garbage", None),
    ],
)
def test_page_end_reads_last_seq_without_parsing_the_page(body: bytes, expected: object) -> None:
    assert page_end(body) == expected


def pacer() -> ReadPacer:
    return ReadPacer(busy_gap=0.002, coalesce=0.001, linger=0.005, linger_rate=2000, full_read=16384)


def test_read_pacer_does_not_delay_a_change_after_a_quiet_spell() -> None:
    p = pacer()
    assert p.after_read(300, 1, waited=0.5, now=10.0) == 0.0
    # A trickle of 200 changes/s: every read waits ~5 ms for its change, none is held back.
    for i in range(1, 50):
        assert p.after_read(300, 1, waited=0.0049, now=10.0 + i * 0.005) == 0.0


def test_read_pacer_coalesces_a_moderate_stream_and_lingers_in_a_fast_one() -> None:
    p = pacer()
    p.after_read(300, 1, waited=1.0, now=10.0)
    # Data already waiting (the read did not block): changes are streaming in.
    assert p.after_read(600, 2, waited=0.0, now=10.0015) == 0.001  # 2 in 1.5 ms: 1,333/s
    assert p.after_read(1800, 6, waited=0.0, now=10.0026) == 0.005  # 6 in 1.1 ms: 5,454/s
    assert p.after_read(9000, 30, waited=0.0, now=10.0078) == 0.005  # 30 in 5.2 ms: 5,769/s
    assert p.after_read(1500, 5, waited=0.0, now=10.0130) == 0.001  # 5 in 5.2 ms: 961/s
    # A read that waited ends the stream; a full read means the reader is behind: no pause.
    assert p.after_read(300, 1, waited=0.003, now=10.020) == 0.0
    assert p.after_read(60000, 200, waited=0.0, now=10.021) == 0.0


# -- pages that never end -------------------------------------------------------------------


class SmallPages(FastCloudant):
    """Pages cut at 4 MB (instead of 64) so a test streams little."""

    MAX_PAGE_BYTES: ClassVar[int] = 4 << 20


def endless_head(couch: CouchServer, db: str, poison: str, *, seq_first: bool) -> tuple[bytes, Any]:
    """A page that starts with the real rows before ``poison``, then ``poison``'s row, whose
    document never ends (as a proxy streaming a broken or endless body would send it)."""
    rows = server_changes(couch, db)
    index = next(i for i, r in enumerate(rows) if r["id"] == poison)
    before = [json.dumps(r) for r in rows[:index]]
    seq = rows[index]["seq"]
    if seq_first:  # CouchDB's layout: a row per line, seq first
        start = f'{{"seq":{json.dumps(seq)},"id":{json.dumps(poison)},"changes":[{{"rev":"1-x"}}],'
    else:  # PouchDB's: one line, seq last
        start = f'{{"id":{json.dumps(poison)},"changes":[{{"rev":"1-x"}}],'
    head = '{"results":[\n' + "".join(r + ",\n" for r in before) + start + '"doc":{"_id":"poison","pad":"'
    return head.encode(), seq


@pytest.mark.asyncio
@pytest.mark.parametrize("seq_first", [True, False], ids=["couchdb-layout", "pouchdb-layout"])
async def test_a_page_that_never_ends_is_cut_and_the_change_in_it_skipped_by_name(
    couch: CouchServer,
    couch_db: str,
    fault_proxy: Callable[[int], FaultProxy],
    caplog: pytest.LogCaptureFixture,
    seq_first: bool,
) -> None:
    for i in range(5):
        put(couch, couch_db, f"doc-{i}", {"n": i})
    head, seq = endless_head(couch, couch_db, "doc-1", seq_first=seq_first)
    proxy = fault_proxy(couch.port)
    proxy.endless_pages(head)
    host = FakeHost()
    # With its seq (CouchDB's layout) the change is stepped over; without (PouchDB's), the
    # continuous feed, read line by line, takes over (and reads the real, small doc-1).
    expected = ["doc-0", "doc-2", "doc-3", "doc-4"] if seq_first else [f"doc-{i}" for i in range(5)]
    async with running(make_connector(host, proxy.url, couch_db, cls=SmallPages), 0):
        await host.wait_keys(set(expected), timeout=60)
    assert [e.key for e in host.events] == expected
    assert SmallPages.MAX_PAGE_BYTES <= proxy.streamed < SmallPages.MAX_PAGE_BYTES + (8 << 20)
    if seq_first:
        named = f"skipped change 'doc-1' (seq {json.dumps(seq)}): its row is longer than 4 MB"
    else:
        named = "change 'doc-1' is longer than 4 MB; reading the feed change by change"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(named in w for w in warnings), warnings
    assert any(s.state == State.RUNNING and s.detail and named in s.detail for s in host.states), host.states


def test_split_page_takes_the_complete_rows_of_a_cut_page() -> None:
    rows = [
        {
            "seq": "1-a",
            "id": "a",
            "changes": [{"rev": "1-x"}],
            "doc": {"s": 'tricky "}{][\\', "n": [1, {"m": 2}]},
        },
        {"seq": 2, "id": "b", "doc": {"e": "", "u": "Zürich 東京"}},
        {"seq": [3, "c"], "id": "c", "deleted": True},
    ]
    for layout in ("couch", "pouch"):
        if layout == "couch":
            body = (
                b'{"results":[\n'
                + b",\n".join(json.dumps(r).encode() for r in rows)
                + b'\n],\n"last_seq":3}\n'
            )
        else:
            body = json.dumps({"results": rows, "last_seq": 3}, ensure_ascii=False).encode()
        for cut in range(len(body)):
            got, head = split_page(body[:cut])
            assert [json.loads(r) for r in got] == rows[: len(got)]
            if head is not None:  # cut inside the next row: its beginning
                row_text = json.dumps(rows[len(got)], ensure_ascii=layout == "couch").encode()
                assert row_text.startswith(head) and head, (cut, head)
        whole, head = split_page(body)
        assert [json.loads(r) for r in whole] == rows and head is None
    assert split_page(b"<html>") == ([], None)


@pytest.mark.parametrize(
    ("head", "identity", "described"),
    [
        (
            b'{"seq":"12-g1AAA","id":"doc-1","changes":[{"rev"',
            ("doc-1", "12-g1AAA"),
            "change 'doc-1' (seq \"12-g1AAA\")",
        ),
        (b'{"seq":[3,"x"], "id":"d","doc":{', ("d", [3, "x"]), "change 'd' (seq [3,\"x\"])"),
        (b'{"seq":7', (None, 7), "a change (seq 7)"),
        (
            b'{"id":"doc-1","changes":[{"rev":"1-a"}],"doc":{"seq":99,"pad":"xx',
            ("doc-1", None),
            "change 'doc-1'",
        ),
        (b'{"doc":{"id":"inner","seq":5}', (None, None), "a change"),
        (b"xxxx", (None, None), "a change"),
    ],
)
def test_row_identity_trusts_only_the_start_of_a_row(head: bytes, identity: Any, described: str) -> None:
    assert row_identity(head) == identity
    assert describe_row(head) == described


def test_line_splitter_keeps_the_head_of_a_dropped_line() -> None:
    splitter = LineSplitter(max_line=10)
    splitter.feed(b'{"seq":5,"id":"big","doc"')
    assert splitter.dropped == 1 and describe_row(splitter.dropped_head) == "change 'big' (seq 5)"
