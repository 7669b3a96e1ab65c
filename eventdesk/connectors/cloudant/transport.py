"""The HTTP side of the connector: the ``ibmcloudant`` client and what it needs to follow a feed.

Builds the client (:func:`make_service`) with the authenticator a datasource asks for, sends
the ``_changes`` request (:func:`post_changes`), reads a continuous feed's body in bulk
(:func:`feed_bytes`) and lets the loop stop a reader blocked on a socket
(:class:`SocketTracker`, :func:`abort_response`). Every place that works around a behaviour
of the SDK, ``requests`` or ``urllib3`` is here, marked ``WHY:`` with what breaks without it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import (
    Authenticator,
    BasicAuthenticator,
    IAMAuthenticator,
    NoAuthAuthenticator,
)
from ibmcloudant import CouchDbSessionAuthenticator
from ibmcloudant.cloudant_v1 import CloudantV1
from ibmcloudant.common import get_sdk_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from eventdesk.connectors.cloudant.errors import FeedError, StopRequestedError, scrub
from eventdesk.connectors.cloudant.feed_stream import ChunkedBody, ReadPacer
from eventdesk.connectors.cloudant.settings import CloudantDatasourceSettings
from eventdesk.core.errors import ConnectorError
from eventdesk.core.object_configs import DatasourceConfig

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16  # bytes asked of the socket per read of the continuous feed


class _HeaderRedactor(logging.Filter):
    """Masks the values of credential headers in the SDK's HTTP wire log.

    WHY: at debug level the IBM SDK turns on ``http.client``'s wire log and sends it to the
    ``ibm-cloud-sdk-core`` logger after masking ``Authorization``, but not the session
    cookie (``Cookie``, ``Set-Cookie``): without this a debug log holds a session, which is
    as good as the password while it lasts.
    """

    _HEADER = re.compile(
        r"(?i)\b(Cookie|Set-Cookie|Authorization|Proxy-Authorization): (?:(?!\\r\\n)[^\r\n])*"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ookie" in message or "uthorization" in message:
            record.msg = self._HEADER.sub(r"\1: [redacted]", message)
            record.args = None
        return True


logging.getLogger("ibm-cloud-sdk-core").addFilter(_HeaderRedactor())


def _session_authenticator(username: str, password: str, timeout: float) -> CouchDbSessionAuthenticator:
    """A CouchDB session authenticator with a login that works with more servers.

    WHY: the SDK's login posts only ``username`` (pouchdb-server reads only ``name``, and
    refuses the login without it: send both), sets no timeout (a silent server would hang the
    reader for good), and on a refusal fails with a bare StopIteration (it looks for the
    session cookie whatever the status, so bad credentials would read as a crash): raise
    ApiException with the status instead, which :func:`~.errors.classify` names.
    """
    authenticator = CouchDbSessionAuthenticator(username, password)
    manager = authenticator.token_manager

    def request_token() -> Any:
        response = manager.http_client.request(
            method="POST",
            url=manager.url + "/_session",
            headers=manager.headers,
            json={"name": username, "username": username, "password": password},
            cookies=manager.jar,
            timeout=timeout,
        )
        if not response.ok:
            raise ApiException(response.status_code, http_response=response)
        return response

    manager.request_token = request_token
    return authenticator


def make_service(datasource: DatasourceConfig, secret: str | None, *, read_timeout: float) -> CloudantV1:
    """A CloudantV1 client for ``datasource`` with the authenticator its settings ask for."""
    settings = CloudantDatasourceSettings.from_validated(datasource.settings)
    auth, username, timeout = settings.auth, settings.username, float(settings.timeout)

    def bad(message: str, field: str) -> ConnectorError:
        return ConnectorError(message, obj=datasource.label, field=field, terminal=True)

    authenticator: Authenticator
    try:
        if auth == "none":
            authenticator = NoAuthAuthenticator()
        elif auth in ("basic", "session"):
            if not username:
                raise bad(f"{auth} authentication needs a username", "username")
            if not secret:
                raise bad(f"{auth} authentication needs a password", "secret")
            if auth == "basic":
                authenticator = BasicAuthenticator(username, secret)
            else:
                authenticator = _session_authenticator(username, secret, timeout)
        elif auth == "iam":
            if not secret:
                raise bad("IAM authentication needs an API key", "secret")
            authenticator = IAMAuthenticator(secret)
        else:
            raise bad(f"unknown authentication method {auth!r}", "auth")
    except ValueError as exc:  # the SDK's own checks of the credentials
        raise bad(scrub(f"unusable credentials: {exc}", secret), "secret") from None
    service = CloudantV1(authenticator=authenticator)
    try:
        service.set_service_url(settings.url.rstrip("/"))
    except ValueError as exc:
        raise bad(scrub(f"unusable URL: {exc}", secret), "url") from None
    # (connect, read): the read timeout is what notices a feed gone silent (no heartbeat).
    service.set_http_config({"timeout": (timeout, read_timeout)})
    service.set_enable_gzip_compression(False)  # bodies are tiny; plain JSON suits every server
    return service


def post_changes(
    service: CloudantV1, database: str, params: dict[str, Any], selector: dict[str, Any] | None
) -> requests.Response:
    """POST ``/{database}/_changes`` with ``params`` and return the response as a stream.

    WHY built by hand rather than with ``post_changes_as_stream``: pouchdb-server reads a
    ``_selector`` filter's selector only from the query string (and crashes without it),
    CouchDB and Cloudant only from the body; CouchDB ignores unknown query parameters, so
    the selector goes in both.
    """
    body: dict[str, Any] = {}
    if selector:
        params = {**params, "filter": "_selector", "selector": json.dumps(selector, separators=(",", ":"))}
        body["selector"] = selector
    headers = get_sdk_headers(
        service_name=service.DEFAULT_SERVICE_NAME,
        service_version="V1",
        operation_id="post_changes_as_stream",
    )
    # WHY identity: a gzip stream holds lines back until its compressor flushes, which would
    # delay every change of a continuous feed.
    headers.update(
        {"Accept": "application/json", "Accept-Encoding": "identity", "Content-Type": "application/json"}
    )
    (db,) = service.encode_path_vars(database)
    request = service.prepare_request(
        method="POST", url=f"/{db}/_changes", headers=headers, params=params, data=json.dumps(body)
    )
    response: requests.Response = service.send(request, stream=True).get_result()
    return response


def feed_bytes(response: requests.Response, pacer: ReadPacer, stop_event: threading.Event) -> Iterator[bytes]:
    """The continuous feed's body as it arrives, read in bulk; raises StopRequestedError once
    ``stop_event`` is set during a pause.

    WHY not ``iter_content``: CouchDB and PouchDB send each change as its own HTTP chunk; read
    chunk by chunk, a stream of changes costs a wake-up, a ``recv`` and urllib3's chunk
    parsing per change, CPU taken from a server that often shares the machine. Here the
    socket's buffered reader (urllib3's ``HTTPResponse._fp.fp``, a private path) is read with
    ``read1`` (whatever has arrived), the chunks are decoded by :class:`ChunkedBody`, and
    while changes stream in the thread pauses between reads (:class:`ReadPacer`), so one
    read, and the batch it becomes, takes many changes. When the response is not a plain
    chunked body, or urllib3's internals differ (the private path is missing), it falls back
    to ``iter_content``: slower, never wrong. Measurements: docs/performance.md, "Reading the feed".
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    plain_chunked = bool(getattr(response.raw, "chunked", False)) and encoding in ("", "identity")
    fp = socket_reader(response) if plain_chunked else None
    if fp is None:
        if plain_chunked:
            _warn_slow_read_once()
        yield from response.iter_content(chunk_size=None)
        return
    body = ChunkedBody()
    clock = time.monotonic
    while not body.ended:
        asked = clock()
        data = fp.read1(READ_SIZE)
        if not data:
            raise FeedError("the server closed the changes feed mid-chunk")
        now = clock()
        try:
            payload = body.feed(data)
        except ValueError as exc:
            raise FeedError(f"the changes feed is not valid HTTP chunked encoding: {exc}") from None
        if payload:
            yield payload
        pause = pacer.after_read(len(data), payload.count(b"\n"), waited=now - asked, now=now)
        if pause and stop_event.wait(pause):
            raise StopRequestedError


def socket_reader(response: requests.Response) -> Any | None:
    """The buffered reader of the socket under ``response``, or None if urllib3 has none
    where :func:`feed_bytes` looks (``HTTPResponse._fp.fp``, private; read with ``getattr``).
    tests/connectors/test_cloudant.py checks that the installed urllib3 still has it."""
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    return fp if hasattr(fp, "read1") else None


_slow_read_warned = threading.Event()


def _warn_slow_read_once() -> None:
    if not _slow_read_warned.is_set():
        _slow_read_warned.set()
        log.warning(
            "urllib3's response has no socket reader at HTTPResponse._fp.fp (a newer urllib3?): "
            "the changes feed is read chunk by chunk, which costs more CPU per change"
        )


class SocketTracker:
    """The sockets one run's HTTP client connected, so the loop can shut them down under it.

    WHY: a thread blocked in a read of ``requests``/``urllib3`` cannot be interrupted, and
    closing its socket does not wake it. Shutting the socket down does, also while it waits
    for response headers (CouchDB and pouchdb-server send a continuous feed's headers only
    with the first change or heartbeat, up to 5 s later): a cancelled run ends at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets = [s for s in self._sockets if s.fileno() != -1]
            self._sockets.append(sock)
            closed = self._closed
        if closed:  # connected just after stop(): fail this request too
            self._shutdown(sock)

    def shutdown_all(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            # WHY the plain socket's shutdown, also for TLS: SSLSocket's would race the reader.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _TrackedHTTPConnection(HTTPConnection):
    tracker: ClassVar[SocketTracker]

    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            self.tracker.add(self.sock)


class _TrackedHTTPSConnection(HTTPSConnection):
    tracker: ClassVar[SocketTracker]

    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            self.tracker.add(self.sock)


def track_sockets(service: CloudantV1, tracker: SocketTracker) -> None:
    """Make every connection of ``service`` (made without a proxy) report to ``tracker``.

    WHY through the pool manager's ``pool_classes_by_scheme``: urllib3 offers no hook when a
    connection opens its socket; connection classes of this run's own (one subclass per run,
    so two runs never share a tracker) are the one public way to see every socket it makes.
    """
    http = type("RunHTTPConnection", (_TrackedHTTPConnection,), {"tracker": tracker})
    https = type("RunHTTPSConnection", (_TrackedHTTPSConnection,), {"tracker": tracker})
    service.http_adapter.poolmanager.pool_classes_by_scheme = {
        "http": type("RunHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("RunHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }


def abort_response(response: requests.Response) -> None:
    """Shut the socket of ``response`` down under its reader.

    WHY: through a proxy urllib3 makes its connections another way, which
    :func:`track_sockets` does not see; the response's connection (urllib3's private
    ``HTTPResponse._connection``, read with ``getattr`` so a change there only loses this
    path) is the one way left to wake the reader.
    """
    sock = response_socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def response_socket(response: requests.Response) -> socket.socket | None:
    """The socket under ``response`` (urllib3's private ``HTTPResponse._connection.sock``),
    or None once the response is done with it, or where urllib3 keeps it elsewhere.
    tests/connectors/test_cloudant.py checks that the installed urllib3 still has it."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None
