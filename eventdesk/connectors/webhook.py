"""Webhook connector: systems that announce changes by HTTP POST (the seed lists webhooks first).

A ``webhook`` datasource is one local HTTP server (aiohttp, on the running asyncio loop, so it
works under qasync and headless); each model is one path on it. A POSTed JSON object (or an
array of them) becomes one event per object.

Promises:

- **2xx only once captured.** A request is answered after ``host.deliver`` returned, i.e.
  after its events and the checkpoint are committed: a sender that retries on anything else
  gets at-least-once delivery.
- **Nothing bad reaches capture.** A bad or missing signature (when a shared secret is set)
  is 401 and counted; a body over the limit is 413; invalid JSON or an unusable body is 400
  with the reason.
- **Group commit.** Concurrent requests for a model queue up while the previous batch is
  being committed and are committed together, so the receiver scales with concurrency
  instead of paying one SQLite transaction per request.

Models of one datasource share its server through a small refcounted table of running
servers (:class:`WebhookServers`): the first model to start binds the port, the last to stop
closes it.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import logging
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiohttp import web

from eventdesk.core import ports
from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.envelope import Event, Op
from eventdesk.core.errors import ConnectorError
from eventdesk.core.settings_schema import Field, Schema, check_host
from eventdesk.core.workspace import DatasourceConfig, ModelConfig

log = logging.getLogger(__name__)

DEFAULT_PORT = 8787
DEFAULT_MAX_BODY = 1024 * 1024
MAX_BATCH = 5000  # events committed in one transaction
STATE_REFRESH = 1.0  # seconds between state updates that only count rejected requests
SHUTDOWN_TIMEOUT = 1.0

OP_WORDS: dict[str, Op] = {
    "created": "created",
    "create": "created",
    "insert": "created",
    "inserted": "created",
    "new": "created",
    "updated": "updated",
    "update": "updated",
    "modified": "updated",
    "changed": "updated",
    "change": "updated",
    "upsert": "updated",
    "deleted": "deleted",
    "delete": "deleted",
    "removed": "deleted",
    "remove": "deleted",
}


def _check_path(value: Any) -> str | None:
    if value and (not str(value).startswith("/") or any(c in str(value) for c in "?# ")):
        return "a path starts with '/' and has no '?', '#' or spaces, e.g. /hooks/accounts"
    return None


def _check_header(value: Any) -> str | None:
    text = str(value)
    if text and not all(c.isalnum() or c in "-_" for c in text):
        return f"not an HTTP header name: {text!r}"
    return None


DATASOURCE_SCHEMA = Schema(
    kind="webhook",
    title="Webhook",
    description="Receive change events by HTTP POST on a local address (GitHub-, Stripe-style webhooks).",
    fields=(
        Field(
            "host",
            "str",
            label="Listen address",
            default="127.0.0.1",
            required=True,
            validator=check_host,
            help="Address to listen on; 0.0.0.0 accepts other machines too (set a shared secret then).",
        ),
        Field(
            "port",
            "int",
            default=DEFAULT_PORT,
            minimum=1,
            maximum=65535,
            help="TCP port to listen on; each model is a path on it.",
        ),
        Field(
            "max_body",
            "int",
            label="Max body size (bytes)",
            default=DEFAULT_MAX_BODY,
            minimum=64,
            maximum=256 * 1024 * 1024,
            help="Larger requests are refused with 413.",
        ),
        Field(
            "secret",
            "secret",
            label="Shared secret",
            help="Optional. When set, every request must carry an HMAC-SHA256 of its body made with "
            "this secret, in the signature header. Kept in the OS keyring.",
        ),
        Field(
            "signature_header",
            "str",
            default="X-Hub-Signature-256",
            validator=_check_header,
            help="Header holding the signature: 'sha256=<hex>' (GitHub) or plain hex.",
        ),
        Field(
            "op_field",
            "str",
            label="Op field",
            default="op",
            help="JSON field naming the change (created/updated/deleted); absent means created.",
        ),
        Field(
            "op_header",
            "str",
            label="Op header",
            default="X-Event-Op",
            validator=_check_header,
            advanced=True,
            help="Header naming the change, used when the body has no op field.",
        ),
        Field(
            "key_field",
            "str",
            label="Key field",
            default="id",
            required=True,
            help="JSON field holding the document's id (the event key).",
        ),
    ),
)

MODEL_SCHEMA = Schema(
    kind="webhook-model",
    title="Webhook path",
    description="One path on the datasource's server; each POST to it is one event (or an array of them).",
    fields=(
        Field(
            "path",
            "str",
            default="",
            validator=_check_path,
            help="Empty: /hooks/<model name>.",
        ),
        Field("op_field", "str", label="Op field", default="", help="Empty: the datasource's op field."),
        Field("key_field", "str", label="Key field", default="", help="Empty: the datasource's key field."),
    ),
)


class BadRequestError(Exception):
    """The request cannot become events: answered with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# -- pure helpers ---------------------------------------------------------------------------


def model_path(model: ModelConfig) -> str:
    return str(model.settings.get("path") or "") or f"/hooks/{model.name}"


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex>`` as GitHub sends it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    given = header.strip()
    if given.lower().startswith("sha256="):
        given = given[7:]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.lower())


def parse_op(value: Any, where: str) -> Op:
    op = OP_WORDS.get(str(value).strip().lower()) if isinstance(value, str) else None
    if op is None:
        raise BadRequestError(400, f"{where} is {value!r}; expected created, updated or deleted")
    return op


@dataclass(frozen=True)
class BodyRules:
    """How a body becomes events: which fields hold the op and the key."""

    datasource: str
    model: str
    op_field: str
    op_header: str
    key_field: str

    def events(self, body: bytes, headers: Any) -> list[Event]:
        """Parse ``body`` (one JSON object or an array of them) into events, or raise BadRequestError."""
        if not body.strip():
            raise BadRequestError(400, "the body is empty; expected a JSON object")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(400, f"invalid JSON: {exc}") from None
        docs = data if isinstance(data, list) else [data]
        if not docs:
            raise BadRequestError(400, "the body is an empty array; expected JSON objects")
        header_op = headers.get(self.op_header) if self.op_header else None
        out: list[Event] = []
        for i, doc in enumerate(docs):
            where = f"item {i}" if isinstance(data, list) else "the body"
            if not isinstance(doc, dict):
                raise BadRequestError(400, f"{where} is {type(doc).__name__}; expected a JSON object")
            if self.op_field and self.op_field in doc:
                op = parse_op(doc[self.op_field], f"{where}: field {self.op_field!r}")
            elif header_op is not None:
                op = parse_op(header_op, f"header {self.op_header}")
            else:
                op = "created"
            key = doc.get(self.key_field)
            if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
                raise BadRequestError(
                    400,
                    f"{where} has no usable key field {self.key_field!r} (a non-empty string or number)",
                )
            rev = doc.get("_rev")
            out.append(
                Event(
                    datasource=self.datasource,
                    model=self.model,
                    op=op,
                    key=str(key),
                    rev=rev if isinstance(rev, str) else None,
                    seq=None,
                    payload=doc,
                    source={"connector": "webhook"},
                )
            )
        for ev in out:
            ev.seq = ev.id  # an opaque position: the event's own (monotonic, sortable) id
        return out


def _json_response(status: int, body: dict[str, Any], *, close: bool = False) -> web.Response:
    resp = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    if close:
        resp.force_close()
    return resp


def port_in_use_error(label: str, host: str, port: int) -> ConnectorError:
    return ConnectorError(
        f"cannot listen on {host}:{port}: the port is already in use by another program; choose another port",
        obj=label,
        field="port",
        terminal=True,
    )


# -- the server shared by a datasource's models ---------------------------------------------


@dataclass
class _Pending:
    events: list[Event]
    done: asyncio.Future[None]


class WebhookServer:
    """One aiohttp server (one port) and the model endpoints registered on it."""

    def __init__(self, datasource: DatasourceConfig) -> None:
        self.datasource = datasource.name
        self.label = datasource.label
        self.host = str(datasource.settings["host"])
        self.port = int(datasource.settings["port"])
        self.max_body = int(datasource.settings["max_body"])
        self.signature_header = str(datasource.settings["signature_header"])
        self.endpoints: dict[str, WebhookConnector] = {}
        self.users = 0
        self.unknown_paths = 0
        self._runner: web.ServerRunner | None = None
        self.started: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        server = web.Server(self._handle, handler_cancellation=False)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise port_in_use_error(self.label, self.host, self.port) from None
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES) or isinstance(exc, socket.gaierror):
                field_name = "port" if exc.errno == errno.EACCES else "host"
                raise ConnectorError(
                    f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                    obj=self.label,
                    field=field_name,
                    terminal=True,
                ) from None
            raise ConnectorError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                obj=self.label,
                field="port",
                terminal=True,
            ) from None
        self._runner = runner
        log.info("%s: listening on %s", self.label, self.url)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("%s: stopped listening on %s", self.label, self.url)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        endpoint = self.endpoints.get(request.path)
        if endpoint is None:
            self.unknown_paths += 1
            known = ", ".join(sorted(self.endpoints)) or "none"
            return _json_response(
                404, {"error": f"no running model listens on {request.path}; running paths: {known}"}
            )
        if request.method != "POST":
            resp = _json_response(405, {"error": "use POST"})
            resp.headers["Allow"] = "POST"
            return resp
        return await endpoint.receive(request, self)

    async def read_body(self, request: web.BaseRequest) -> bytes:
        """The whole body, or BadRequestError(413) as soon as it is known to be too large."""
        limit = self.max_body
        if request.content_length is not None and request.content_length > limit:
            raise BadRequestError(413, f"the body is {request.content_length} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BadRequestError(413, f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class WebhookServers:
    """Running servers by (host, port), shared by the models of one datasource, refcounted."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, int], WebhookServer] = {}

    def get(self, host: str, port: int) -> WebhookServer | None:
        return self._servers.get((host, port))

    async def acquire(self, datasource: DatasourceConfig) -> WebhookServer:
        key = (str(datasource.settings["host"]), int(datasource.settings["port"]))
        server = self._servers.get(key)
        if server is not None and server.datasource != datasource.name:
            raise ConnectorError(
                f"port {key[1]} is already used by datasource {server.datasource!r}; give each webhook "
                "datasource its own port",
                obj=datasource.label,
                field="port",
                terminal=True,
            )
        if server is None:
            server = self._servers[key] = WebhookServer(datasource)
            server.started = asyncio.ensure_future(server.start())
        server.users += 1
        assert server.started is not None
        try:
            await asyncio.shield(server.started)
        except BaseException:
            server.users -= 1
            if server.users <= 0 and self._servers.get(key) is server:
                del self._servers[key]
                if server.started.done() and not server.started.cancelled():
                    server.started.exception()  # retrieved: it is re-raised here
                await server.close()
            raise
        return server

    async def release(self, server: WebhookServer) -> None:
        server.users -= 1
        if server.users > 0:
            return
        key = (server.host, server.port)
        if self._servers.get(key) is server:
            del self._servers[key]
        await server.close()


SERVERS = WebhookServers()


# -- the connector ----------------------------------------------------------------------------


@dataclass
class _Counts:
    accepted: int = 0
    rejected: Counter[int] = field(default_factory=Counter)


class WebhookConnector(Connector):
    """Receives one model's events on its path and commits them in batches."""

    kind: ClassVar[str] = "webhook"
    datasource_schema: ClassVar[Schema] = DATASOURCE_SCHEMA
    model_schema: ClassVar[Schema] = MODEL_SCHEMA

    def __init__(
        self, *, datasource: DatasourceConfig, model: ModelConfig, secret: str | None, host: Any
    ) -> None:
        super().__init__(datasource=datasource, model=model, secret=secret, host=host)
        ds, ms = datasource.settings, model.settings
        self.path = model_path(model)
        self.rules = BodyRules(
            datasource=datasource.name,
            model=model.name,
            op_field=str(ms.get("op_field") or ds.get("op_field") or ""),
            op_header=str(ds.get("op_header") or ""),
            key_field=str(ms.get("key_field") or ds.get("key_field") or "id"),
        )
        self.counts = _Counts()
        self._pending: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._accepting = False
        self._server: WebhookServer | None = None
        self._state_timer: asyncio.TimerHandle | None = None

    @property
    def url(self) -> str:
        return (self._server.url if self._server else "") + self.path

    async def run(self, since: Any) -> None:
        self._wake = asyncio.Event()
        server = await SERVERS.acquire(self.datasource)
        self._server = server
        try:
            other = server.endpoints.get(self.path)
            if other is not None and other is not self:
                raise ConnectorError(
                    f"path {self.path} is already served by model {other.model.name!r}",
                    obj=self.model.label,
                    field="path",
                    terminal=True,
                )
            server.endpoints[self.path] = self
            self._accepting = True
            self._report_state()
            await self._commit_forever()
        finally:
            self._accepting = False
            if server.endpoints.get(self.path) is self:
                del server.endpoints[self.path]
            if self._state_timer is not None:
                self._state_timer.cancel()
            self._fail_pending()
            await SERVERS.release(server)
            self._server = None

    async def _commit_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch: list[_Pending] = []
                size = 0
                while self._pending and (not batch or size + len(self._pending[0].events) <= MAX_BATCH):
                    item = self._pending.pop(0)
                    batch.append(item)
                    size += len(item.events)
                events = [ev for item in batch for ev in item.events]
                try:
                    await self.host.deliver(events, events[-1].seq)
                except BaseException as exc:
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(
                                exc if isinstance(exc, Exception) else ConnectionAbortedError()
                            )
                    raise
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)
                self.counts.accepted += size

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, []
        for item in pending:
            if not item.done.done():
                item.done.set_exception(ConnectionAbortedError("the model was stopped"))

    def _report_state(self) -> None:
        self._state_timer = None
        rejected = self.counts.rejected
        detail = f"listening on {self.url}"
        if rejected:
            detail += "; rejected " + ", ".join(f"{n} x {status}" for status, n in sorted(rejected.items()))
        self.host.set_state(StateChange(State.RUNNING, detail))

    def _reject(self, status: int, reason: str) -> web.Response:
        self.counts.rejected[status] += 1
        log.warning("%s: %s rejected with %d: %s", self.model.label, self.path, status, reason)
        if self._state_timer is None:
            loop = asyncio.get_running_loop()
            self._state_timer = loop.call_later(STATE_REFRESH, self._report_state)
        return _json_response(status, {"error": reason}, close=status == 413)

    async def receive(self, request: web.BaseRequest, server: WebhookServer) -> web.StreamResponse:
        try:
            body = await server.read_body(request)
            if self.secret and not signature_ok(
                self.secret, body, request.headers.get(server.signature_header)
            ):
                missing = server.signature_header not in request.headers
                raise BadRequestError(
                    401,
                    f"{'missing' if missing else 'bad'} signature in header {server.signature_header} "
                    "(expected sha256=<HMAC-SHA256 of the body with the shared secret>)",
                )
            events = self.rules.events(body, request.headers)
        except BadRequestError as exc:
            return self._reject(exc.status, exc.reason)
        if not self._accepting or self._wake is None:
            return _json_response(503, {"error": "the model is stopping; send again"})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(events, done))
        self._wake.set()
        try:
            await done
        except Exception as exc:
            log.warning("%s: could not capture a request: %s", self.model.label, exc)
            resp = _json_response(503, {"error": "not captured; send again"})
            resp.headers["Retry-After"] = "1"
            return resp
        return _json_response(200, {"accepted": len(events), "ids": [ev.id for ev in events]})

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        settings = DATASOURCE_SCHEMA.validate(datasource.settings, datasource.label)
        host, port = str(settings["host"]), int(settings["port"])
        path = f" {model_path(model)}" if model is not None else ""
        running = SERVERS.get(host, port)
        if running is not None and running.datasource == datasource.name:
            return f"listening on {running.url}{path.strip()}"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_port_free, host, port, datasource.label)
        return f"{host}:{port} is free; the receiver{path} listens there while the model runs"


def check_port_free(host: str, port: int, label: str) -> None:
    """Raise a ConnectorError naming ``port`` (or ``host``) if nothing could listen there now."""
    ports.check_port_free(host, port, label, ConnectorError, port_in_use_error)


__all__ = [
    "DATASOURCE_SCHEMA",
    "MODEL_SCHEMA",
    "SERVERS",
    "BodyRules",
    "WebhookConnector",
    "check_port_free",
    "model_path",
    "sign",
    "signature_ok",
]
