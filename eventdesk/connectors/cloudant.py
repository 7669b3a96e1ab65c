"""IBM Cloudant / Apache CouchDB connector: follows a database's ``_changes`` feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import orjson
import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import BasicAuthenticator, IAMAuthenticator, NoAuthAuthenticator
from ibmcloudant import CouchDbSessionAuthenticator
from ibmcloudant.cloudant_v1 import CloudantV1

from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.envelope import Event, Op
from eventdesk.core.errors import ConnectorError
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.core.workspace import DatasourceConfig, ModelConfig

DATASOURCE_SCHEMA = Schema(
    kind="cloudant",
    title="Cloudant / CouchDB",
    description="An IBM Cloudant or Apache CouchDB server (any server speaking the CouchDB API).",
    fields=(
        Field(
            "url",
            "url",
            label="URL",
            required=True,
            url_schemes=("http", "https"),
            help="Base URL of the server, e.g. https://ACCOUNT.cloudantnosqldb.appdomain.cloud",
        ),
        Field(
            "auth",
            "choice",
            label="Authentication",
            default="none",
            choices=("none", "basic", "iam", "session"),
            help="none; basic (username + password); iam (IBM Cloud API key); session (CouchDB cookie).",
        ),
        Field("username", "str", default="", help="User name for basic or session authentication."),
        Field(
            "secret",
            "secret",
            label="Password / API key",
            help="Password (basic, session) or IAM API key (iam). Kept in the OS keyring.",
        ),
        Field(
            "timeout",
            "float",
            label="Request timeout (s)",
            default=60.0,
            minimum=1,
            maximum=600,
            advanced=True,
            help="How long one request may take before it is retried.",
        ),
    ),
    cross_checks=(
        lambda v: (
            ("username", "basic and session authentication need a username")
            if v["auth"] in ("basic", "session") and not v["username"]
            else None
        ),
    ),
)

MODEL_SCHEMA = Schema(
    kind="cloudant-model",
    title="Database",
    description="One database's change feed.",
    fields=(
        Field(
            "database", "str", required=True, help="The database to follow (defaults to the model's name)."
        ),
        Field(
            "since",
            "choice",
            default="now",
            choices=("now", "0"),
            help="Where the first run starts: now (new changes only) or 0 (everything). Later runs resume "
            "from the checkpoint.",
        ),
        Field(
            "include_docs",
            "bool",
            label="Include documents",
            default=True,
            help="Fetch each changed document with its change.",
        ),
        Field(
            "selector",
            "json",
            label="Server-side selector",
            default=None,
            help='A Mango selector evaluated by the server, e.g. {"region": "Bangalore"}.',
        ),
        Field(
            "batch_size",
            "int",
            label="Batch size",
            default=1000,
            minimum=1,
            maximum=10000,
            advanced=True,
            help="Largest number of changes handed over at once.",
        ),
    ),
)


log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({400, 401, 403, 404})
_END = object()


def _op_of(change: dict[str, Any], rev: str | None) -> Op:
    if change.get("deleted"):
        return "deleted"
    # A "1-" revision only hints at a creation: create+update between reads arrive as one "2-" change.
    return "created" if rev is not None and rev.startswith("1-") else "updated"


def make_service(datasource: DatasourceConfig, secret: str | None) -> CloudantV1:
    """A CloudantV1 client for ``datasource`` with the authenticator its settings ask for."""
    s = datasource.settings
    auth = s["auth"]
    authenticator: Any
    if auth == "none":
        authenticator = NoAuthAuthenticator()
    elif auth == "basic":
        authenticator = BasicAuthenticator(s["username"], secret or "")
    elif auth == "iam":
        if not secret:
            raise ConnectorError(
                "IAM authentication needs an API key", obj=datasource.label, field="secret", terminal=True
            )
        authenticator = IAMAuthenticator(secret)
    else:
        authenticator = CouchDbSessionAuthenticator(s["username"], secret or "")
    service = CloudantV1(authenticator=authenticator)
    service.set_service_url(s["url"].rstrip("/"))
    service.set_enable_gzip_compression(False)
    return service


def classify(exc: BaseException, datasource: DatasourceConfig, model: ModelConfig | None) -> ConnectorError:
    """Turn an SDK or network failure into a ConnectorError naming the object and field at fault."""
    if isinstance(exc, ConnectorError):
        return exc
    url = datasource.settings["url"]
    if isinstance(exc, ApiException):
        status = int(exc.status_code or 0)
        reason = (exc.message or "").strip() or "no reason given"
        if status in (401, 403):
            field = "secret" if datasource.settings["auth"] != "none" else "auth"
            return ConnectorError(
                f"the server refused the credentials (HTTP {status}: {reason})",
                obj=datasource.label,
                field=field,
                terminal=True,
                status=status,
            )
        if status == 404 and model is not None:
            return ConnectorError(
                f"database {model.settings['database']!r} does not exist on {url} (HTTP 404)",
                obj=model.label,
                field="database",
                terminal=True,
                status=status,
            )
        if status == 404:
            return ConnectorError(
                f"{url} is not a CouchDB/Cloudant server (HTTP 404)",
                obj=datasource.label,
                field="url",
                terminal=True,
                status=status,
            )
        if status == 400:
            field = "selector" if model is not None and model.settings.get("selector") else "database"
            return ConnectorError(
                f"the server rejected the request (HTTP 400: {reason})",
                obj=model.label if model else datasource.label,
                field=field,
                terminal=True,
                status=status,
            )
        if status == 429:
            return ConnectorError(
                "rate limited by the server (HTTP 429)", obj=datasource.label, field="url", status=status
            )
        return ConnectorError(
            f"server error (HTTP {status}: {reason})", obj=datasource.label, field="url", status=status
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ConnectorError(f"cannot reach {url}: {_short(exc)}", obj=datasource.label, field="url")
    if isinstance(exc, requests.exceptions.Timeout):
        return ConnectorError(f"no answer from {url} in time", obj=datasource.label, field="url")
    return ConnectorError(f"{type(exc).__name__}: {_short(exc)}", obj=datasource.label, field="url")


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Connection reset",
        "Name or service not known",
        "Read timed out",
        "Remote end closed",
        "Connection aborted",
        "timed out",
    ):
        if marker in text:
            return marker.lower()
    return text[:200]


class CloudantConnector(Connector):
    """Follows ``_changes`` (continuous feed, documents included) of one database.

    It drives ``post_changes_as_stream`` itself rather than the SDK's ChangesFollower: the
    follower's ``stop()`` can block for a whole long poll and ``start_one_off()`` never ends
    against pouchdb-server; a continuous stream gives the lowest latency and can be closed at
    once. A reader thread parses lines into a bounded queue (back-pressure reaches the server
    through TCP); a delivery thread hands whatever has accumulated to the runtime as one batch.
    """

    kind: ClassVar[str] = "cloudant"
    datasource_schema: ClassVar[Schema] = DATASOURCE_SCHEMA
    model_schema: ClassVar[Schema] = MODEL_SCHEMA

    heartbeat_ms: ClassVar[int] = 5000
    backoff_start: ClassVar[float] = 0.2
    backoff_cap: ClassVar[float] = 10.0
    stop_join: ClassVar[float] = 0.8

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4 * int(self.model.settings["batch_size"]))
        self._response: Any = None
        self._response_lock = threading.Lock()

    # -- the loop side -----------------------------------------------------------------------
    async def run(self, since: Any) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish(error: BaseException | None) -> None:
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

        reader = threading.Thread(
            target=self._read_forever,
            args=(since, loop, finish),
            name=f"cloudant-read:{self.model.name}",
            daemon=True,
        )
        sender = threading.Thread(
            target=self._deliver_forever,
            args=(loop, finish),
            name=f"cloudant-deliver:{self.model.name}",
            daemon=True,
        )
        reader.start()
        sender.start()
        try:
            await done
        finally:
            self._stop.set()
            self._abort_stream()
            await loop.run_in_executor(None, self._join, (reader, sender))

    def _join(self, threads: tuple[threading.Thread, ...]) -> None:
        deadline = time.monotonic() + self.stop_join
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.debug("thread %s still ends its read; it exits at the next heartbeat", t.name)

    def _abort_stream(self) -> None:
        """Make a blocked read in the reader thread fail now (closing alone does not wake it)."""
        with self._response_lock:
            response = self._response
        if response is None:
            return
        raw = getattr(response, "raw", None)
        conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()

    # -- threads ---------------------------------------------------------------------------
    def _set_state(self, loop: asyncio.AbstractEventLoop, change: StateChange) -> None:
        loop.call_soon_threadsafe(self.host.set_state, change)

    def _read_forever(
        self, since: Any, loop: asyncio.AbstractEventLoop, finish: Callable[[BaseException | None], None]
    ) -> None:
        try:
            service = make_service(self.datasource, self.secret)
        except ConnectorError as exc:
            loop.call_soon_threadsafe(finish, exc)
            return
        attempt = 0
        position = since
        while not self._stop.is_set():
            try:
                for change in self._stream(service, position, loop):
                    attempt = 0
                    if "seq" in change:
                        position = change["seq"]
                    self._put(change)
                if self._stop.is_set():
                    return
                raise ConnectorError(
                    "the server ended the change feed", obj=self.datasource.label, field="url"
                )
            except Exception as exc:
                if self._stop.is_set():
                    return
                error = classify(exc, self.datasource, self.model)
                if error.terminal:
                    loop.call_soon_threadsafe(finish, error)
                    return
                attempt += 1
                delay = min(self.backoff_cap, self.backoff_start * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                log.info("%s: %s; retrying in %.1f s", self.model.label, error.detail, delay)
                self._set_state(loop, StateChange(State.RETRYING, error.describe(), retry_in=delay))
                if self._stop.wait(delay):
                    return

    def _stream(
        self, service: CloudantV1, since: Any, loop: asyncio.AbstractEventLoop
    ) -> Iterator[dict[str, Any]]:
        settings = self.model.settings
        selector = settings.get("selector")
        timeout = float(self.datasource.settings["timeout"])
        read_timeout = max(2.5 * self.heartbeat_ms / 1000, 1.0)
        response = service.post_changes_as_stream(
            db=settings["database"],
            feed="continuous",
            heartbeat=self.heartbeat_ms,
            include_docs=bool(settings["include_docs"]),
            since="now" if since is None else str(since),
            filter="_selector" if selector else None,
            selector=selector if selector else None,
            headers={"Accept-Encoding": "identity"},
            timeout=(min(timeout, 10.0), read_timeout),
        ).get_result()
        with self._response_lock:
            self._response = response
        try:
            if self._stop.is_set():
                return
            self._set_state(loop, StateChange(State.RUNNING))
            for line in response.iter_lines(chunk_size=None):
                if self._stop.is_set():
                    return
                if not line:
                    continue  # heartbeat
                try:
                    change = orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.warning(
                        "%s: skipped a change line that is not JSON (%d bytes)", self.model.label, len(line)
                    )
                    continue
                if not isinstance(change, dict):
                    continue
                if "error" in change:
                    raise ConnectorError(
                        f"the change feed reported {change.get('error')}: {change.get('reason')}",
                        obj=self.model.label,
                        field="database",
                    )
                if "last_seq" in change and "id" not in change:
                    return  # the server closed the feed; resume from the last seq
                yield change
        finally:
            with self._response_lock:
                self._response = None
            response.close()

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _deliver_forever(
        self, loop: asyncio.AbstractEventLoop, finish: Callable[[BaseException | None], None]
    ) -> None:
        batch_size = int(self.model.settings["batch_size"])
        ds_name = self.datasource.name
        model_name = self.model.name
        database = self.model.settings["database"]
        source = {"connector": self.datasource.kind, "database": database}
        try:
            while not self._stop.is_set():
                try:
                    first = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                changes = [first]
                while len(changes) < batch_size:
                    try:
                        changes.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                events = []
                for change in changes:
                    doc = change.get("doc")
                    revs = change.get("changes") or []
                    rev = (doc or {}).get("_rev") or (revs[0].get("rev") if revs else None)
                    events.append(
                        Event(
                            datasource=ds_name,
                            model=model_name,
                            op=_op_of(change, rev),
                            key=str(change.get("id")),
                            rev=rev,
                            seq=change.get("seq"),
                            payload=doc if doc is not None else {"_id": change.get("id"), "_rev": rev},
                            source=source,
                        )
                    )
                if self._stop.is_set():
                    return  # not delivered: the checkpoint did not move, so these are read again
                future = asyncio.run_coroutine_threadsafe(
                    self.host.deliver(events, changes[-1].get("seq")), loop
                )
                future.result()
        except Exception as exc:  # a capture failure is terminal for this model: never skip events
            if not self._stop.is_set():
                log.exception("%s: delivery failed", self.model.label)
                loop.call_soon_threadsafe(
                    finish,
                    ConnectorError(f"could not store events: {exc}", obj=self.model.label, terminal=True),
                )

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        def check() -> str:
            try:
                service = make_service(datasource, secret)
                info = service.get_server_information().get_result()
                version = info.get("version", "?")
                vendor = (info.get("vendor") or {}).get("name", "CouchDB-compatible server")
                summary = f"{vendor} {version} at {datasource.settings['url']}"
                if datasource.settings["auth"] != "none":
                    service.get_session_information().get_result()
                if model is not None:
                    db = service.get_database_information(db=model.settings["database"]).get_result()
                    summary += (
                        f"; database {model.settings['database']!r} has {db.get('doc_count', '?')} documents"
                    )
                return summary
            except Exception as exc:
                raise classify(exc, datasource, model) from None

        return await asyncio.to_thread(check)
