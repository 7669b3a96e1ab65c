"""IBM Cloudant / Apache CouchDB connector: follows a database's ``_changes`` feed.

One worker thread per running model drives the ``ibmcloudant`` SDK: it reads the backlog in
``feed=normal`` pages, then follows the continuous feed, and puts the events into the
runtime's :class:`~eventdesk.core.intake.Intake`, from which the capture thread appends
whatever has accumulated as one batch. Cancelling ``run`` shuts the thread's sockets down, so
it ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

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
from urllib3.exceptions import NameResolutionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from eventdesk.core import json_codec
from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.envelope import Event, Op, new_event_id, new_event_ids, utc_now_iso
from eventdesk.core.errors import ConnectorError
from eventdesk.core.settings_schema import Field, Schema, redact_url
from eventdesk.core.workspace import DatasourceConfig, ModelConfig

log = logging.getLogger(__name__)

# CouchDB's rule for database names, plus the system databases one may follow.
_DATABASE_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
_SYSTEM_DATABASES = frozenset({"_users", "_replicator", "_global_changes"})


def check_database_name(value: object) -> str | None:
    name = str(value)
    if name in _SYSTEM_DATABASES or (len(name) <= 238 and _DATABASE_NAME.match(name)):
        return None
    return (
        f"not a CouchDB database name: {name!r} (lower-case letter first, then a-z, 0-9, _$()+-/; "
        "at most 238 characters)"
    )


class _HeaderRedactor(logging.Filter):
    """Masks the values of credential headers in the SDK's HTTP wire log.

    At debug level the IBM SDK turns on ``http.client``'s wire log and sends it to the
    ``ibm-cloud-sdk-core`` logger after masking ``Authorization``, but not the session
    cookie (``Cookie``, ``Set-Cookie``): a session is as good as the password while it lasts.
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
            "database",
            "str",
            required=True,
            validator=check_database_name,
            help="The database to follow (defaults to the model's name).",
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
            json_type="object",
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


_RETRYABLE_4XX = frozenset({408, 425, 429})


class _StopRequestedError(Exception):
    """The run was cancelled: the worker thread unwinds without reporting anything."""


class _FeedError(Exception):
    """The changes feed itself went wrong (an error line, an early end): retried."""


# -- pure helpers ---------------------------------------------------------------------------


def since_param(since: Any) -> str:
    """``since`` for the query string: a string as it is, anything else as JSON (ints as digits).

    The value stays opaque: it is never parsed or compared, only handed back to the server.
    """
    if isinstance(since, str):
        return since
    return json_codec.dumps(since).decode()


def op_of(change: dict[str, Any], rev: str | None) -> Op:
    """``deleted`` when the feed says so; otherwise a hint from the revision number."""
    if change.get("deleted") is True:
        return "deleted"
    # "1-" hints at a creation; a create and an update between two reads arrive as one "2-".
    return "created" if rev is not None and rev.startswith("1-") else "updated"


def change_to_event(
    change: dict[str, Any],
    *,
    datasource: str,
    model: str,
    database: str,
    event_id: str | None = None,
    received_at: str | None = None,
) -> Event | None:
    """The envelope of one ``_changes`` row, or None if the row is not a change.

    ``event_id`` and ``received_at`` are made here unless given (a reader of many rows makes
    them in bulk: :func:`~eventdesk.core.envelope.new_event_ids`).
    """
    key = change.get("id")
    if not isinstance(key, str) or "seq" not in change:
        return None
    doc = change.get("doc")
    rev: Any = None
    revs = change.get("changes")
    if isinstance(revs, list) and revs and isinstance(revs[0], dict):
        rev = revs[0].get("rev")
    if rev is None and isinstance(doc, dict):
        rev = doc.get("_rev")
    rev = None if rev is None else str(rev)
    deleted = change.get("deleted") is True
    if doc is None:  # include_docs off: the document's identity is all there is
        doc = {"_id": key, "_rev": rev, "_deleted": True} if deleted else {"_id": key, "_rev": rev}
    return Event(
        datasource=datasource,
        model=model,
        op=op_of(change, rev),
        key=key,
        rev=rev,
        seq=change["seq"],
        payload=doc,
        source={"connector": "cloudant", "database": database},
        id=event_id if event_id is not None else new_event_id(),
        received_at=received_at if received_at is not None else utc_now_iso(),
    )


def parse_line(line: bytes | bytearray) -> Any:
    """One line of the feed as JSON; raises ValueError if it is not JSON.

    What orjson refuses (besides broken JSON: lone UTF-16 surrogates, nesting deeper than
    1024) could not be captured or republished either, so it is skipped here, not later.
    """
    return json_codec.loads(line)


class LineSplitter:
    """Cuts a byte stream into lines; a long line is joined once, not once per chunk.

    A line longer than ``max_line`` is dropped (counted in ``dropped``; its first bytes kept
    in ``dropped_head`` to name it) rather than held in memory without bound.
    """

    def __init__(self, max_line: int) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._max_line = max_line
        self._skipping = False
        self.dropped = 0
        self.dropped_head = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the lines that ``chunk`` completes (without their newline)."""
        pieces = chunk.split(b"\n")
        tail = pieces.pop()
        lines: list[bytes] = []
        for piece in pieces:
            if self._skipping:
                self._skipping = False  # the end of the line being dropped
                continue
            if self._parts:
                self._parts.append(piece)
                piece = b"".join(self._parts)
                self._parts = []
                self._size = 0
            lines.append(piece)
        if tail and not self._skipping:
            self._parts.append(tail)
            self._size += len(tail)
            if self._size > self._max_line:
                self.dropped_head = b"".join(self._parts[:8])[:ROW_HEAD_BYTES]
                self._parts = []
                self._size = 0
                self._skipping = True
                self.dropped += 1
        return lines


class ChunkedBody:
    """Decodes an HTTP/1.1 chunked body fed in pieces of any size (``Transfer-Encoding: chunked``).

    :meth:`feed` returns the body bytes a piece completes; ``ended`` is set by the last chunk.
    Raises ValueError on a malformed chunk header.
    """

    MAX_HEADER = 1024  # a chunk-size line (hex size plus extensions) is never longer

    def __init__(self) -> None:
        self._pending = b""  # an incomplete chunk-size line
        self._left = 0  # bytes of the current chunk still to come, its closing CRLF included
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self._pending:
            data, self._pending = self._pending + data, b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and not self.ended:
            left = self._left
            if left:
                take = min(left, end - pos)
                body = min(take, left - 2)  # the last two bytes of a chunk are its CRLF
                if body > 0:
                    out.append(data[pos : pos + body])
                pos += take
                self._left = left - take
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                self._pending = data[pos:]
                if len(self._pending) > self.MAX_HEADER:
                    raise ValueError("a chunk header is too long")
                break
            size_text = data[pos:eol].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError(f"bad chunk size {size_text[:20]!r}") from None
            pos = eol + 2
            if size == 0:
                self.ended = True  # trailers, if any, are not needed
            else:
                self._left = size + 2
        return b"".join(out)


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` masked (secrets shorter than 4 characters would garble it)."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "***")
    return text


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (causes, contexts, urllib3 reasons, exception args)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += list(current.args)
        todo += [x for x in linked if isinstance(x, BaseException)]
    return seen


def describe_network_error(exc: BaseException) -> str:
    """A short, plain description of a transport failure (no URLs, no secrets)."""
    chain = _causes(exc)

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    if has(ConnectionRefusedError):
        return "connection refused (is the server running, and is the URL right?)"
    if has(NameResolutionError, socket.gaierror):
        return "cannot resolve the host name"
    if has(requests.exceptions.ConnectTimeout):
        return "connecting timed out"
    if has(ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return "the connection was reset"
    if has(requests.exceptions.ReadTimeout, Urllib3Timeout, TimeoutError):
        return "no data from the server in time (not even a heartbeat)"
    if has(requests.exceptions.SSLError):
        return f"TLS failed: {str(exc)[:200]}"
    if has(requests.exceptions.ChunkedEncodingError, ProtocolError, _FeedError):
        return "the server closed the connection"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _is_auth_request(exc: ApiException, service_url: str) -> bool:
    """Whether the failed request was the authenticator's (``/_session``, IAM), not ours."""
    url = str(getattr(exc.http_response, "url", "") or "")
    if not url:
        return False
    failed, ours = urlsplit(url), urlsplit(service_url)
    other_server = (failed.hostname, failed.port) != (ours.hostname, ours.port)
    return other_server or failed.path.endswith("/_session")


def classify(
    exc: BaseException, datasource: DatasourceConfig, model: ModelConfig | None, secret: str | None
) -> ConnectorError:
    """Turn an SDK or network failure into a ConnectorError naming the object and field at fault.

    400/401/403/404 (and other 4xx but 408/425/429) are terminal; the rest is retried.
    """
    if isinstance(exc, ConnectorError):
        return exc
    settings = datasource.settings
    url = str(settings.get("url") or "")
    shown_url = redact_url(url)
    if not isinstance(exc, ApiException):
        message = f"connection to {shown_url} failed: {describe_network_error(exc)}"
        return ConnectorError(scrub(message, secret), obj=datasource.label, field="url")

    status = int(exc.status_code or 0)
    reason = scrub(str(exc.message or "").strip() or "no reason given", secret)
    database = None if model is None else str(model.settings.get("database") or model.name)
    auth = settings.get("auth") or "none"

    def terminal(message: str, obj: str, field: str) -> ConnectorError:
        return ConnectorError(scrub(message, secret), obj=obj, field=field, terminal=True, status=status)

    retryable = status in _RETRYABLE_4XX or status >= 500
    if status in (401, 403) or (_is_auth_request(exc, url) and not retryable):
        if auth == "none":
            return terminal(
                f"the server wants credentials (HTTP {status}: {reason}); choose an authentication method",
                datasource.label,
                "auth",
            )
        if status == 403 and auth in ("basic", "session"):
            return terminal(
                f"user {settings.get('username')!r} may not read this (HTTP 403: {reason})",
                datasource.label,
                "username",
            )
        return terminal(
            f"the server rejected the credentials (HTTP {status}: {reason})", datasource.label, "secret"
        )
    if status == 404:
        if model is not None:
            return terminal(
                f"database {database!r} does not exist (HTTP 404: {reason})", model.label, "database"
            )
        return terminal(f"no CouchDB API at {shown_url} (HTTP 404: {reason})", datasource.label, "url")
    if status == 400 and model is not None:
        if model.settings.get("selector") and "database" not in reason.lower():
            return terminal(f"the server rejected the selector (HTTP 400: {reason})", model.label, "selector")
        return terminal(
            f"the server rejected database {database!r} (HTTP 400: {reason})", model.label, "database"
        )
    if retryable:
        what = "is busy" if status == 429 else "failed"
        message = f"the server {what} (HTTP {status}: {reason})"
        return ConnectorError(scrub(message, secret), obj=datasource.label, status=status)
    return terminal(f"the server refused the request (HTTP {status}: {reason})", datasource.label, "url")


def _retry_after(exc: BaseException) -> float | None:
    """The server's Retry-After in seconds, if it sent a numeric one."""
    response = getattr(exc, "http_response", None)
    value = None if response is None else response.headers.get("Retry-After")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


def _session_authenticator(username: str, password: str, timeout: float) -> CouchDbSessionAuthenticator:
    """A CouchDB session authenticator with a login that works with more servers.

    The SDK's login posts only ``username`` (pouchdb-server reads only ``name``: send both),
    sets no timeout, and on a refusal fails with a bare StopIteration (it looks for the
    session cookie whatever the status): raise ApiException with the status instead.
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
    settings = datasource.settings
    auth = settings.get("auth") or "none"
    username = str(settings.get("username") or "")
    timeout = float(settings.get("timeout") or 60.0)

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
        service.set_service_url(str(settings.get("url") or "").rstrip("/"))
    except ValueError as exc:
        raise bad(scrub(f"unusable URL: {exc}", secret), "url") from None
    service.set_http_config({"timeout": (timeout, read_timeout)})
    service.set_enable_gzip_compression(False)  # bodies are tiny; plain JSON suits every server
    return service


def _check_connection(datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None) -> str:
    """The blocking half of :meth:`CloudantConnector.test_connection`."""
    timeout = float(datasource.settings.get("timeout") or 60.0)
    service = make_service(datasource, secret, read_timeout=timeout)
    try:
        try:
            info = service.get_server_information().get_result()
        except Exception as exc:
            raise classify(exc, datasource, None, secret) from None
        if not isinstance(info, dict) or "version" not in info:
            raise ConnectorError(
                f"{redact_url(str(datasource.settings.get('url')))} does not answer like a CouchDB server",
                obj=datasource.label,
                field="url",
                terminal=True,
            )
        summary = f"CouchDB-compatible server {info['version']}"
        vendor = info.get("vendor")
        if isinstance(vendor, dict) and vendor.get("name"):
            summary += f" ({vendor['name']})"
        if model is not None:
            database = str(model.settings.get("database") or model.name)
            try:
                db_info = service.get_database_information(db=database).get_result()
            except Exception as exc:
                raise classify(exc, datasource, model, secret) from None
            count = db_info.get("doc_count", "?") if isinstance(db_info, dict) else "?"
            summary += f", database {database!r} with {count} document{'' if count == 1 else 's'}"
        elif (datasource.settings.get("auth") or "none") != "none":
            try:  # GET / needs no credentials on CouchDB: ask who we are
                session = service.get_session_information().get_result()
            except Exception as exc:
                raise classify(exc, datasource, None, secret) from None
            user = (session.get("userCtx") or {}).get("name") if isinstance(session, dict) else None
            if user:
                summary += f", signed in as {user!r}"
        return summary
    finally:
        service.get_http_client().close()


class _SocketTracker:
    """The sockets one run's HTTP client connected, so the loop can shut them down under it.

    Shutting a socket down wakes a thread blocked reading it, also while it waits for
    response headers (CouchDB and pouchdb-server send a continuous feed's headers only with
    the first change or heartbeat); closing does not.
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
            # The plain socket's shutdown, also for TLS: SSLSocket's would race the reader.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _TrackedHTTPConnection(HTTPConnection):
    tracker: ClassVar[_SocketTracker]

    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            self.tracker.add(self.sock)


class _TrackedHTTPSConnection(HTTPSConnection):
    tracker: ClassVar[_SocketTracker]

    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            self.tracker.add(self.sock)


def _track_sockets(service: CloudantV1, tracker: _SocketTracker) -> None:
    """Make every connection of ``service`` (made without a proxy) report to ``tracker``."""
    http = type("RunHTTPConnection", (_TrackedHTTPConnection,), {"tracker": tracker})
    https = type("RunHTTPSConnection", (_TrackedHTTPSConnection,), {"tracker": tracker})
    service.http_adapter.poolmanager.pool_classes_by_scheme = {
        "http": type("RunHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("RunHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }


def page_end(body: bytes | bytearray) -> tuple[Any, Any] | None:
    """``(last_seq, pending)`` read from the end of a ``feed=normal`` page without parsing the
    rest; None if the end is not ``"last_seq": …}`` as CouchDB, Cloudant and PouchDB write it.
    ``pending`` is None when the server does not send it (PouchDB)."""
    start = body.rfind(b'"last_seq"')
    if start < 0:
        return None
    try:
        end = json_codec.loads(b"{" + body[start:])
    except ValueError:
        return None
    if not isinstance(end, dict) or end.get("last_seq") is None:
        return None
    return end["last_seq"], end.get("pending")


ROW_HEAD_BYTES = 4096  # what is kept of a change too long to read, to name it

_PAGE_START = re.compile(rb'\s*\{\s*"results"\s*:\s*\[')
# A string (group 1 is its closing quote: absent when the text ends inside it) or a bracket.
_PAGE_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+(")?|[{}\[\]]')
_JSON_STRING = rb'"(?:[^"\\]|\\.)*"'
_HEAD_SEQ_ID = re.compile(
    rb'\s*\{\s*"seq"\s*:\s*('
    + _JSON_STRING
    + rb'|-?\d+|\[[^\]]*\])\s*,\s*"id"\s*:\s*('
    + _JSON_STRING
    + rb")"
)
_HEAD_ID = re.compile(rb'\s*\{\s*"id"\s*:\s*(' + _JSON_STRING + rb")")
_HEAD_SEQ = re.compile(rb'\s*\{\s*"seq"\s*:\s*(' + _JSON_STRING + rb"|-?\d+|\[[^\]]*\])")


def split_page(body: bytes | bytearray) -> tuple[list[bytes], bytes | None]:
    """The complete rows of a ``feed=normal`` page cut short, and the head of the row it was
    cut in (None if it was cut between rows or is not a page of changes).

    Works on CouchDB's layout (a row per line) and PouchDB's (one line): strings are skipped
    whole by a regular expression, so a long row costs a few tokens, not a loop per byte.
    """
    start_match = _PAGE_START.match(body)
    if start_match is None:
        return [], None
    rows: list[bytes] = []
    depth, start = 0, -1
    for token in _PAGE_TOKEN.finditer(body, start_match.end()):
        char = body[token.start()]
        if char == 0x22:  # '"'
            if token.start(1) < 0:
                break  # the page was cut inside this string
            continue
        if char in b"{[":
            if depth == 0:
                start = token.start()
            depth += 1
            continue
        depth -= 1
        if depth == 0:
            rows.append(bytes(body[start : token.end()]))
            start = -1
        elif depth < 0:
            break  # the end of "results"
    head = None if start < 0 else bytes(body[start : start + ROW_HEAD_BYTES])
    return rows, head


def row_identity(head: bytes) -> tuple[str | None, Any]:
    """``(id, seq)`` read from the start of a change's row, each None when it is not there.

    Only a row that starts with them is trusted (CouchDB writes ``{"seq":…,"id":…``; PouchDB
    ``{"id":…`` and ``seq`` last): a ``seq`` further in may be a field of the document.
    """
    found = _HEAD_SEQ_ID.match(head)
    if found is not None:
        seq_text, id_text = found.group(1), found.group(2)
    else:
        found_id, found_seq = _HEAD_ID.match(head), _HEAD_SEQ.match(head)
        id_text = found_id.group(1) if found_id else None
        seq_text = found_seq.group(1) if found_seq else None
    try:
        key = None if id_text is None else json_codec.loads(id_text)
        seq = None if seq_text is None else json_codec.loads(seq_text)
    except ValueError:
        return None, None
    return (key if isinstance(key, str) else None), seq


def describe_row(head: bytes) -> str:
    """``change 'ID' (seq SEQ)`` as far as the head of its row tells."""
    key, seq = row_identity(head)
    what = "a change" if key is None else f"change {key!r}"
    return what if seq is None else f"{what} (seq {json_codec.dumps(seq).decode()[:80]})"


READ_SIZE = 1 << 16  # bytes asked of the socket per read of the continuous feed
PAGE_READ_SIZE = 1 << 20  # bytes asked per read of a feed=normal page


class ReadPacer:
    """How long the continuous feed's reader waits before its next read (Nagle's idea, and
    Kafka's ``linger.ms``): every read, and so every batch captured, published and
    acknowledged, has a fixed cost, so while changes stream in it pays to let a few gather.

    - A read that waited for its data (``busy_gap`` or more) ends a quiet spell: no pause, so
      a change after a quiet spell (a trickle, up to a few hundred changes/s) has no delay.
    - A read that found a lot waiting (``full_read`` bytes or more) is behind: no pause.
    - Otherwise changes are streaming in: pause ``coalesce``, or ``linger`` while they arrive
      at ``linger_rate`` changes/s or more, for at most ``linger`` of added delay.

    The values and what they gained: docs/performance.md, "Reading the feed".
    """

    def __init__(
        self, *, busy_gap: float, coalesce: float, linger: float, linger_rate: float, full_read: int
    ) -> None:
        self.busy_gap = busy_gap
        self.coalesce = coalesce
        self.linger = linger
        self.linger_rate = linger_rate
        self.full_read = full_read
        self._last = float("-inf")  # when the previous read returned

    def after_read(self, size: int, changes: int, *, waited: float, now: float) -> float:
        """The pause after a read of ``size`` bytes holding ``changes`` changes, which waited
        ``waited`` seconds for its data and returned at ``now``."""
        since, self._last = now - self._last, now
        if size >= self.full_read or waited >= self.busy_gap:
            return 0.0
        if changes >= self.linger_rate * since:
            return self.linger
        return self.coalesce


# The page's bytes; the since of the page fetched after it (or None); whether it ended (a page
# cut at MAX_PAGE_BYTES did not).
_FetchedPage = tuple[bytes | bytearray, Any, bool]


class _PageFetcher:
    """Reads a backlog's ``feed=normal`` pages one ahead of their reader, on its own thread.

    A page's ``last_seq`` is read from its end as soon as its bytes are in, and the next
    request goes out at once: the server prepares page N+1 while page N is parsed and
    captured, instead of sitting idle meanwhile. At most
    ``AHEAD`` pages wait. A page is read as it arrives and cut at ``MAX_PAGE_BYTES`` (a
    server or proxy may send one that never ends). The fetcher stops by itself after a page
    whose end it cannot read or that was cut (the reader then parses it and starts a new
    fetcher from its ``last_seq``) or that makes no progress; its errors are raised by
    :meth:`get` in the reader's thread.
    """

    AHEAD = 2

    def __init__(self, run: _FeedRun, service: CloudantV1, since: Any, limit: int) -> None:
        self.run = run
        self.service = service
        self.since = since
        self.limit = limit
        self.pages: queue.Queue[_FetchedPage | BaseException] = queue.Queue(self.AHEAD)
        self.closed = threading.Event()
        self.thread = threading.Thread(
            target=self._main, name=f"{threading.current_thread().name}-pages", daemon=True
        )
        self.thread.start()

    def _main(self) -> None:
        since = self.since
        try:
            while not self.closed.is_set():
                with self.run._open_feed(
                    self.service, feed="normal", limit=self.limit, since=since
                ) as response:
                    body, ended = self._read_page(response)
                if not ended:
                    self._put((body, None, False))
                    return
                end = page_end(body)
                next_since = None if end is None or end[1] == 0 or end[0] == since else end[0]
                if not self._put((body, next_since, True)) or next_since is None:
                    return
                since = next_since
        except BaseException as exc:  # handed to the reader, which classifies it
            self._put(exc)

    def _read_page(self, response: requests.Response) -> tuple[bytearray, bool]:
        """The page's body as it arrives, and whether it ended before ``MAX_PAGE_BYTES``."""
        cap = self.run.connector.MAX_PAGE_BYTES
        body = bytearray()
        for chunk in response.iter_content(chunk_size=PAGE_READ_SIZE):
            body += chunk
            if len(body) > cap:
                return body, False
            if self.closed.is_set():
                raise _StopRequestedError
        return body, True

    def _put(self, item: _FetchedPage | BaseException) -> bool:
        while not self.closed.is_set():
            try:
                self.pages.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> _FetchedPage:
        """The next page (raises the fetcher's error; _StopRequestedError once stopping)."""
        while True:
            if self.run.stop_event.is_set():
                raise _StopRequestedError
            try:
                item = self.pages.get(timeout=0.05)
            except queue.Empty:
                if not self.thread.is_alive() and self.pages.empty():
                    raise _FeedError("the page reader ended unexpectedly") from None
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (at most one page's request)."""
        self.closed.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.pages.get_nowait()
        self.thread.join()


class _FeedRun:
    """One call of :meth:`CloudantConnector.run`: a worker thread and the loop side feeding it.

    The worker opens the continuous feed, parses lines into the host's intake and reconnects
    with backoff; the loop side waits for it to end and stops it. Only the loop side calls
    ``host``.
    """

    def __init__(self, connector: CloudantConnector, since: Any, loop: asyncio.AbstractEventLoop) -> None:
        settings = connector.model.settings
        self.connector = connector
        self.loop = loop
        self.database = str(settings.get("database") or connector.model.name)
        self.batch_size = int(settings.get("batch_size") or 1000)
        self.include_docs = bool(settings.get("include_docs", True))
        self.selector = settings.get("selector")
        # Where the next connection starts: the last seq read (and buffered) in this run.
        self.position: Any = (settings.get("since") or "now") if since is None else since
        self.intake = connector.host.intake(self.batch_size)
        self.stop_event = threading.Event()
        self.stopping = False  # loop side: no state reports once set
        self.finished: asyncio.Future[None] = loop.create_future()
        self.sockets = _SocketTracker()
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._opened = False
        self._running_reported = False
        self._ended = False
        self.thread = threading.Thread(
            target=self._main, name=f"eventdesk-cloudant-{connector.model.name}", daemon=True
        )

    # -- loop side ---------------------------------------------------------------------------
    async def wait_done(self) -> None:
        """Wait until the worker ends or a batch cannot be captured; re-raise the error.

        What the worker put before it ended is captured before this returns.
        """
        intake = self.intake
        await asyncio.wait({self.finished, intake.failure}, return_when=asyncio.FIRST_COMPLETED)
        if not intake.failure.done():
            await intake.drained()
        failure = intake.retrieve_failure()
        if failure is not None:
            raise failure
        self.finished.result()

    async def stop(self) -> None:
        """End the worker within STOP_TIMEOUT: close its socket under it; what it had read is
        still captured (at most the intake's limit, one or two batches)."""
        deadline = time.monotonic() + self.connector.STOP_TIMEOUT
        self.stopping = True
        self.stop_event.set()
        self.intake.close()
        self.sockets.shutdown_all()
        self._abort_response()
        await self.intake.drained()
        self.intake.retrieve_failure()  # the host reports it; retrieved so asyncio stays quiet
        if not self.finished.done():
            await asyncio.wait({self.finished}, timeout=max(0.0, deadline - time.monotonic()))
        if self.finished.done():
            self.finished.exception()  # retrieved: nobody else will
            self.thread.join(0.1)  # it has already called back; only its return is left
        if self.thread.is_alive():
            log.warning(
                "%s: the reader thread is still connecting; it ends on its own", self.connector.model.label
            )

    def _finish(self, error: BaseException | None) -> None:
        if not self.finished.done():
            if error is None:
                self.finished.set_result(None)
            else:
                self.finished.set_exception(error)

    def _set_state(self, change: StateChange) -> None:
        if not self.stopping:
            self.connector.host.set_state(change)

    def _abort_response(self) -> None:
        """Shut the current response's socket down (the one path left when a proxy is used)."""
        with self._lock:
            response = self._response
        if response is None:
            return
        connection = getattr(response.raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- worker thread -----------------------------------------------------------------------
    def _call_loop(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(callback, *args)

    def _report(self, change: StateChange) -> None:
        self._call_loop(self._set_state, change)

    def _main(self) -> None:
        error: BaseException | None = None
        service: CloudantV1 | None = None
        connector = self.connector
        try:
            service = make_service(
                connector.datasource, connector.secret, read_timeout=2 * connector.HEARTBEAT_MS / 1000
            )
            _track_sockets(service, self.sockets)
            self._follow(service)
        except _StopRequestedError:
            pass
        except ConnectorError as exc:
            error = exc
        except Exception as exc:  # a bug or an SDK surprise (unless stop() broke a read on purpose)
            if not self.stop_event.is_set():
                log.exception("%s: the changes reader failed", connector.model.label)
                error = ConnectorError(
                    scrub(f"unexpected {type(exc).__name__}: {exc}", connector.secret),
                    obj=connector.model.label,
                    terminal=True,
                )
        finally:
            if service is not None:
                service.get_http_client().close()
            self._call_loop(self._finish, error)

    def _follow(self, service: CloudantV1) -> None:
        connector = self.connector
        attempt = 0
        while True:
            opened_at = time.monotonic()
            try:
                self._read_once(service)
            except _StopRequestedError:
                raise
            except (ApiException, requests.RequestException, ProtocolError, OSError, _FeedError) as exc:
                if self.stop_event.is_set():
                    raise _StopRequestedError from None
                error = classify(exc, connector.datasource, connector.model, connector.secret)
                if error.terminal:
                    raise error from None
                if self._opened and time.monotonic() - opened_at >= 1.0:
                    attempt = 0  # it worked for a while: start the backoff over
                base = min(connector.BACKOFF_CAP, connector.BACKOFF_START * 2**attempt)
                delay = base / 2 + random.uniform(0, base / 2)
                hint = _retry_after(exc)
                if hint is not None:
                    delay = max(delay, min(connector.BACKOFF_CAP, hint))
                attempt += 1
                log.info("%s: %s; retrying in %.1f s", connector.model.label, error.describe(), delay)
                self._report(StateChange(State.RETRYING, detail=error.describe(), retry_in=round(delay, 3)))
                self._running_reported = False
                if self.stop_event.wait(delay):
                    raise _StopRequestedError from None
            else:  # the server ended the feed cleanly (last_seq): reopen, gently if it was at once
                attempt = 0
                if time.monotonic() - opened_at < 1.0 and self.stop_event.wait(connector.BACKOFF_START):
                    raise _StopRequestedError

    def _read_once(self, service: CloudantV1) -> None:
        """Catch up from ``position`` in pages, then follow the continuous feed until it ends."""
        self._opened = False
        self._ended = False
        if self.position == "now":  # pin "now" so a reconnect does not skip what happened meanwhile
            info = service.get_database_information(db=self.database).get_result()
            if isinstance(info, dict) and info.get("update_seq") is not None:
                self.position = info["update_seq"]
        self._catch_up(service)
        with self._open_feed(service, feed="continuous") as response:
            splitter = LineSplitter(self.connector.MAX_LINE_BYTES)
            for chunk in self._feed_bytes(response):
                if self.stop_event.is_set():
                    raise _StopRequestedError
                dropped = splitter.dropped
                lines = splitter.feed(chunk)
                if splitter.dropped != dropped:
                    message = (
                        f"skipped {describe_row(splitter.dropped_head)}: "
                        f"its line is longer than {self.connector.MAX_LINE_BYTES // (1 << 20)} MB"
                    )
                    log.warning("%s: %s", self.connector.model.label, message)
                    self._report(StateChange(State.RUNNING, detail=message))
                if lines:
                    self._accept(self._parse_lines(lines))
            if not self._ended:
                raise _FeedError("the server closed the changes feed")

    def _feed_bytes(self, response: requests.Response) -> Iterator[bytes]:
        """The continuous feed's body as it arrives, read in bulk.

        CouchDB and PouchDB send each change as its own HTTP chunk; read chunk by chunk
        (``iter_content``), a stream of changes costs a wake-up, a ``recv`` and urllib3's chunk
        parsing per change, CPU taken from a server that often shares the machine. Here the
        socket's buffered reader is read with ``read1`` (whatever has arrived), the chunks are
        decoded by :class:`ChunkedBody`, and while changes stream in the thread pauses between
        reads (:class:`ReadPacer`), so one read, and the batch it becomes, takes many changes.
        Falls back to ``iter_content`` when the response is not a plain chunked body or
        urllib3's internals differ. Measurements: docs/performance.md, "Reading the feed".
        """
        raw = response.raw
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if not (getattr(raw, "chunked", False) and encoding in ("", "identity") and hasattr(fp, "read1")):
            yield from response.iter_content(chunk_size=None)
            return
        assert fp is not None
        body = ChunkedBody()
        connector = self.connector
        pacer = ReadPacer(
            busy_gap=connector.BUSY_GAP_S,
            coalesce=connector.COALESCE_S,
            linger=connector.LINGER_S,
            linger_rate=connector.LINGER_RATE,
            full_read=READ_SIZE // 4,
        )
        clock = time.monotonic
        while not body.ended:
            asked = clock()
            data = fp.read1(READ_SIZE)
            if not data:
                raise _FeedError("the server closed the changes feed mid-chunk")
            now = clock()
            try:
                payload = body.feed(data)
            except ValueError as exc:
                raise _FeedError(f"the changes feed is not valid HTTP chunked encoding: {exc}") from None
            if payload:
                yield payload
            pause = pacer.after_read(len(data), payload.count(b"\n"), waited=now - asked, now=now)
            if pause and self.stop_event.wait(pause):
                raise _StopRequestedError

    def _catch_up(self, service: CloudantV1) -> None:
        """Read the backlog as ``feed=normal`` pages, which servers send faster than a continuous feed.

        A :class:`_PageFetcher` reads the pages ahead, so the server prepares the next page
        while this thread parses the last one. A page that is not valid JSON ends the
        catch-up: the continuous feed, read line by line, then skips just the bad change.
        """
        limit = min(max(self.batch_size, 100), 1000)  # bounds the memory one page takes
        fetcher = _PageFetcher(self, service, self.position, limit)
        try:
            while True:
                body, next_since, ended = fetcher.get()
                if self.stop_event.is_set():
                    raise _StopRequestedError
                if not ended:
                    fetcher.close()
                    progressed = self._take_cut_page(body)
                    body = b""  # not held while the next page is read
                    if not progressed:
                        return
                    fetcher = _PageFetcher(self, service, self.position, limit)
                    continue
                try:
                    page = parse_line(body)
                except ValueError as exc:
                    log.warning(
                        "%s: a page of changes is not JSON (%s); reading change by change",
                        self.connector.model.label,
                        exc,
                    )
                    return
                rows = page.get("results") if isinstance(page, dict) else None
                if not isinstance(rows, list):
                    log.warning(
                        "%s: unexpected page of changes; reading change by change", self.connector.model.label
                    )
                    return
                self._accept(rows)
                if page.get("last_seq") is not None:
                    self.position = page["last_seq"]
                if len(rows) < limit or page.get("pending") == 0:
                    return
                if next_since is None or next_since != self.position:
                    # The fetcher could not read this page's end (or read ahead from elsewhere):
                    # start over from what was accepted.
                    fetcher.close()
                    fetcher = _PageFetcher(self, service, self.position, limit)
        finally:
            fetcher.close()

    def _take_cut_page(self, body: bytes | bytearray) -> bool:
        """Accept the complete changes of a page cut at MAX_PAGE_BYTES and step over a change
        too long to read; False when that makes no progress (then the continuous feed,
        read line by line, takes over)."""
        label = self.connector.model.label
        limit_mb = self.connector.MAX_PAGE_BYTES // (1 << 20)
        rows, head = split_page(body)
        before = self.position
        log.warning(
            "%s: a page of changes went past %d MB without ending; taking the %d complete changes in it",
            label,
            limit_mb,
            len(rows),
        )
        self._accept(self._parse_lines(rows))
        if head is not None:
            _key, seq = row_identity(head)
            what = describe_row(head)
            if seq is not None and seq != before:
                message = f"skipped {what}: its row is longer than {limit_mb} MB"
                log.warning("%s: %s", label, message)
                self._report(StateChange(State.RUNNING, detail=message))
                self.position = seq
                return True
            message = f"{what} is longer than {limit_mb} MB; reading the feed change by change"
        elif rows:
            return True
        else:
            message = (
                f"a page of changes went past {limit_mb} MB without ending; reading the feed change by change"
            )
        log.warning("%s: %s", label, message)
        self._report(StateChange(State.RUNNING, detail=message))
        return bool(self.position != before)

    @contextlib.contextmanager
    def _open_feed(
        self, service: CloudantV1, *, feed: str, limit: int | None = None, since: Any = None
    ) -> Iterator[requests.Response]:
        """POST ``_changes`` from ``position`` as a stream the loop side can abort.

        Built like ``post_changes_as_stream`` but by hand for one reason: pouchdb-server reads
        a ``_selector`` filter's selector only from the query string (and crashes without it),
        CouchDB and Cloudant only from the body; CouchDB ignores unknown query parameters, so
        the selector goes in both.
        """
        params: dict[str, Any] = {
            "feed": feed,
            "include_docs": self.include_docs,
            "since": since_param(self.position if since is None else since),
            "limit": limit,
        }
        if feed == "continuous":
            params["heartbeat"] = self.connector.HEARTBEAT_MS
        body: dict[str, Any] = {}
        if self.selector:
            params["filter"] = "_selector"
            params["selector"] = json.dumps(self.selector, separators=(",", ":"))
            body["selector"] = self.selector
        headers = get_sdk_headers(
            service_name=service.DEFAULT_SERVICE_NAME,
            service_version="V1",
            operation_id="post_changes_as_stream",
        )
        # identity: a gzip stream holds lines back until its compressor flushes.
        headers.update(
            {"Accept": "application/json", "Accept-Encoding": "identity", "Content-Type": "application/json"}
        )
        (db,) = service.encode_path_vars(self.database)
        request = service.prepare_request(
            method="POST", url=f"/{db}/_changes", headers=headers, params=params, data=json.dumps(body)
        )
        response: requests.Response = service.send(request, stream=True).get_result()
        with self._lock:
            if self.stop_event.is_set():
                response.close()
                raise _StopRequestedError
            self._response = response
        try:
            self._opened = True
            if not self._running_reported:
                self._running_reported = True
                self._report(StateChange(State.RUNNING))
            yield response
        finally:
            with self._lock:
                self._response = None
            response.close()

    def _parse_lines(self, lines: list[bytes]) -> list[Any]:
        """The JSON rows of ``lines``; heartbeats dropped, non-JSON lines skipped with a warning."""
        rows: list[Any] = []
        # One scan for long numbers over all the lines, not one per line.
        exact = json_codec.needs_exact(b"\n".join(lines))
        parse = json_codec.loads_exact if exact else json_codec.loads_scanned
        for line in lines:
            if not line.strip():
                continue  # heartbeat
            try:
                rows.append(parse(line))
            except ValueError as exc:
                log.warning(
                    "%s: skipped a line of the changes feed that is not JSON (%d bytes): %s",
                    self.connector.model.label,
                    len(line),
                    exc,
                )
        return rows

    def _accept(self, rows: list[Any]) -> None:
        """Buffer the changes among ``rows`` and move ``position`` past them."""
        label = self.connector.model.label
        names = {
            "datasource": self.connector.datasource.name,
            "model": self.connector.model.name,
            "database": self.database,
        }
        events: list[Event] = []
        position = self.position
        feed_error: str | None = None
        ids = iter(new_event_ids(len(rows)))  # one lock and clock read, not one per change
        received_at = utc_now_iso()
        for row in rows:
            if not isinstance(row, dict):
                log.warning("%s: skipped a row of the changes feed that is not an object", label)
            elif "id" in row:
                event = change_to_event(row, **names, event_id=next(ids), received_at=received_at)
                if event is None:
                    log.warning("%s: skipped a change without a usable id or seq", label)
                    continue
                events.append(event)
                position = event.seq
            elif "last_seq" in row:
                position = row["last_seq"]
                self._ended = True
            elif "error" in row:
                feed_error = f"the changes feed reported {row.get('error')}: {row.get('reason')}"
                break
            else:
                log.warning("%s: skipped a row of the changes feed that is not a change", label)
        if events:
            try:
                self.intake.put(events)
            except Exception:  # closed (stopping), or an earlier batch failed: the loop reports it
                raise _StopRequestedError from None
        self.position = position
        if feed_error is not None:
            raise _FeedError(feed_error)


class CloudantConnector(Connector):
    """Follows the ``_changes`` feed of one database: backlog in pages, then continuous.

    It drives the SDK's HTTP calls itself instead of using ChangesFollower, whose
    ``start_one_off()`` never ends against pouchdb-server and whose ``stop()`` can block for
    a whole long poll: a continuous stream read in a worker thread gives the lowest latency,
    and shutting its socket down stops it at once.
    """

    kind: ClassVar[str] = "cloudant"
    datasource_schema: ClassVar[Schema] = DATASOURCE_SCHEMA
    model_schema: ClassVar[Schema] = MODEL_SCHEMA

    HEARTBEAT_MS: ClassVar[int] = 5000
    """The server sends an empty line this often; silence for twice as long is a dead link."""
    BACKOFF_START: ClassVar[float] = 0.2
    BACKOFF_CAP: ClassVar[float] = 10.0
    STOP_TIMEOUT: ClassVar[float] = 0.8
    """How long a cancelled run waits for its worker thread (on top of a delivery in flight)."""
    MAX_LINE_BYTES: ClassVar[int] = 64 * 1024 * 1024
    """A change longer than this is skipped (and reported) rather than held in memory..."""
    MAX_PAGE_BYTES: ClassVar[int] = 64 * 1024 * 1024
    """...and a page of the backlog is cut here: its complete changes are taken."""
    BUSY_GAP_S: ClassVar[float] = 0.002
    """A read of the continuous feed that waited less than this means changes stream in..."""
    COALESCE_S: ClassVar[float] = 0.001
    """...and the reader then lets this long pass before the next read (see ReadPacer)..."""
    LINGER_S: ClassVar[float] = 0.010
    """...or this long, while they arrive at LINGER_RATE changes/s or more."""
    LINGER_RATE: ClassVar[float] = 2000.0

    async def run(self, since: Any) -> None:
        loop = asyncio.get_running_loop()
        self.host.set_state(StateChange(State.CONNECTING))
        feed = _FeedRun(self, since, loop)
        feed.thread.start()
        try:
            await feed.wait_done()
        finally:
            await feed.stop()

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        """Ask for the server's (and the database's) info; raise ConnectorError if that fails."""
        return await asyncio.to_thread(_check_connection, datasource, secret, model)
