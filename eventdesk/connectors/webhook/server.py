"""The webhook receiver's HTTP server: one aiohttp server per datasource, its models' paths on it.

It runs on the running asyncio loop (so it works under qasync and headless) and guards itself
against clients that cost without sending: a connection must send its request head within
``HEAD_TIMEOUT`` and its body within ``BODY_TIMEOUT`` (408 otherwise), an idle keep-alive
connection is closed after ``IDLE_TIMEOUT``, and at most :func:`connection_limit` connections
are open (one more closes the oldest that has not sent a request yet, or itself when every one
is in a request), so silent connections never exhaust the file descriptors and a real sender
still gets through. A body over ``max_body`` is 413 as soon as that is known.

Models of one datasource share its server through :class:`WebhookServers`, refcounted: the first
model to start binds the port, the last to stop closes it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from eventdesk.connectors.webhook.errors import BadRequestError, listen_error
from eventdesk.connectors.webhook.settings import WebhookDatasourceSettings
from eventdesk.core.errors import ConnectorError
from eventdesk.core.log_repeats import throttle
from eventdesk.core.workspace import DatasourceConfig, ModelConfig

try:
    import resource
except ImportError:  # Windows: no file limit to respect
    resource = None  # type: ignore[assignment]

# One logger for the whole receiver, not one per module: the repeat filter that :func:`throttle`
# installs sees only the records logged on its own logger, not those of its children.
LOGGER_NAME = "eventdesk.connectors.webhook"
log = logging.getLogger(LOGGER_NAME)
http_log = logging.getLogger(LOGGER_NAME + ".http")  # aiohttp's own messages about our connections

SHUTDOWN_TIMEOUT = 1.0
HEAD_TIMEOUT = 10.0  # seconds from connect to a complete request line and headers
BODY_TIMEOUT = 30.0  # seconds to receive a whole body
IDLE_TIMEOUT = 15.0  # seconds an idle keep-alive connection stays open
MAX_CONNECTIONS = 512  # per server; lowered to a quarter of the file limit (RLIMIT_NOFILE)


def connection_limit() -> int:
    """Connections one server keeps open: ``MAX_CONNECTIONS``, or a quarter of the file limit."""
    if resource is None:
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, soft // 4))


def json_response(status: int, body: dict[str, Any], *, close: bool = False) -> web.Response:
    resp = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    if close:
        resp.force_close()
    return resp


class Endpoint(Protocol):
    """What a path on the server hands its requests to: the connector of one running model."""

    @property
    def model(self) -> ModelConfig: ...

    async def receive(self, request: web.BaseRequest, server: WebhookServer) -> web.StreamResponse: ...


class _ClientFaultFilter(logging.Filter):
    """A request aiohttp could not parse is the client's fault: one warning line naming the
    problem, not an error with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            args = record.args if isinstance(record.args, tuple) else ()
            record.msg, record.args = f"{record.msg}: %d %s", (*args, exc.code, exc.message)
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


if not any(isinstance(f, _ClientFaultFilter) for f in http_log.filters):
    http_log.addFilter(_ClientFaultFilter())


class GuardedServer(web.Server):
    """aiohttp's low-level server with a connection limit and a deadline for the request head.

    Connections that have not sent a complete request head yet are "fresh", oldest first.
    One connection over the limit closes the oldest fresh one (a silent or slow client), or
    itself when every open connection is in a request.
    """

    def __init__(self, handler: Any, *, label: str, limit: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.label = label
        self.limit = limit
        self.open = 0
        self._fresh: dict[RequestHandler, asyncio.TimerHandle] = {}

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open += 1
        if self.open > self.limit:
            oldest = next(iter(self._fresh), None)
            if oldest is None:
                log.warning(
                    "%s: refused a connection: all %d open ones are in a request", self.label, self.limit
                )
                handler.force_close()
                return
            log.warning(
                "%s: %d connections open (the limit): closed the oldest that had sent no request",
                self.label,
                self.limit,
            )
            self.drop(oldest)
        loop = asyncio.get_running_loop()
        self._fresh[handler] = loop.call_later(HEAD_TIMEOUT, self.drop, handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.open -= 1
        self.request_started(handler)
        super().connection_lost(handler, exc)

    def request_started(self, handler: RequestHandler) -> None:
        timer = self._fresh.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def drop(self, handler: RequestHandler) -> None:
        self.request_started(handler)
        handler.force_close()


class WebhookServer:
    """One aiohttp server (one port) and the model endpoints registered on it."""

    def __init__(self, datasource: DatasourceConfig, settings: WebhookDatasourceSettings) -> None:
        self.datasource = datasource.name
        self.label = datasource.label
        self.host = settings.host
        self.port = settings.port
        self.max_body = settings.max_body
        self.signature_header = settings.signature_header
        self.endpoints: dict[str, Endpoint] = {}
        self.users = 0
        self.unknown_paths = 0
        self._runner: web.ServerRunner | None = None
        self._guard: GuardedServer | None = None
        self.started: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def guard(self) -> GuardedServer | None:
        """The server's connection guard (its limit, the head deadline) while it runs."""
        return self._guard

    async def start(self) -> None:
        throttle(LOGGER_NAME, http_log.name, "asyncio")
        server = GuardedServer(
            self._handle,
            label=self.label,
            limit=connection_limit(),
            handler_cancellation=False,
            keepalive_timeout=IDLE_TIMEOUT,
            logger=http_log,
        )
        self._guard = server
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise listen_error(exc, self.label, self.host, self.port) from None
        self._runner = runner
        log.info("%s: listening on %s", self.label, self.url)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("%s: stopped listening on %s", self.label, self.url)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self._guard is not None:
            self._guard.request_started(request.protocol)
        endpoint = self.endpoints.get(request.path)
        if endpoint is None:
            self.unknown_paths += 1
            known = ", ".join(sorted(self.endpoints)) or "none"
            return json_response(
                404, {"error": f"no running model listens on {request.path}; running paths: {known}"}
            )
        if request.method != "POST":
            resp = json_response(405, {"error": "use POST"})
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
        try:
            # A body already in (the common small POST) needs no timer.
            async with asyncio.timeout(None if request.content.is_eof() else BODY_TIMEOUT):
                while True:
                    chunk = await request.content.readany()
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise BadRequestError(413, f"the body is over the limit of {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise BadRequestError(408, f"the body did not arrive within {BODY_TIMEOUT:g} s") from None
        return b"".join(chunks)


class WebhookServers:
    """Running servers by (host, port), shared by the models of one datasource, refcounted."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, int], WebhookServer] = {}

    def get(self, host: str, port: int) -> WebhookServer | None:
        return self._servers.get((host, port))

    async def acquire(
        self, datasource: DatasourceConfig, settings: WebhookDatasourceSettings
    ) -> WebhookServer:
        key = (settings.host, settings.port)
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
            server = self._servers[key] = WebhookServer(datasource, settings)
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
