"""What went wrong, said plainly: SDK and network failures become ConnectorErrors.

:func:`classify` names the object and field at fault (the datasource's ``url``, ``auth``,
``username`` or ``secret``; the model's ``database`` or ``selector``) and decides whether a
failure is terminal (bad credentials, a missing database) or retried (network trouble, 5xx,
408/425/429). Messages never carry a secret.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import requests
from ibm_cloud_sdk_core import ApiException
from urllib3.exceptions import NameResolutionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from eventdesk.connectors.cloudant.settings import CloudantDatasourceSettings, CloudantModelSettings
from eventdesk.core.errors import ConnectorError
from eventdesk.core.object_configs import DatasourceConfig, ModelConfig
from eventdesk.core.settings_schema import redact_url

_RETRYABLE_4XX = frozenset({408, 425, 429})


class StopRequestedError(Exception):
    """The run was cancelled: the worker thread unwinds without reporting anything."""


class FeedError(Exception):
    """The changes feed itself went wrong (an error line, an early end): retried."""


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
    if has(requests.exceptions.ChunkedEncodingError, ProtocolError, FeedError):
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
    settings = CloudantDatasourceSettings.from_validated(datasource.settings)
    url = settings.url
    shown_url = redact_url(url)
    if not isinstance(exc, ApiException):
        message = f"connection to {shown_url} failed: {describe_network_error(exc)}"
        return ConnectorError(scrub(message, secret), obj=datasource.label, field="url")

    status = int(exc.status_code or 0)
    reason = scrub(str(exc.message or "").strip() or "no reason given", secret)
    model_settings = None if model is None else CloudantModelSettings.from_validated(model.settings)
    database = None if model_settings is None else model_settings.database
    auth = settings.auth

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
                f"user {settings.username!r} may not read this (HTTP 403: {reason})",
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
    if status == 400 and model is not None and model_settings is not None:
        if model_settings.selector and "database" not in reason.lower():
            return terminal(f"the server rejected the selector (HTTP 400: {reason})", model.label, "selector")
        return terminal(
            f"the server rejected database {database!r} (HTTP 400: {reason})", model.label, "database"
        )
    if retryable:
        what = "is busy" if status == 429 else "failed"
        message = f"the server {what} (HTTP {status}: {reason})"
        return ConnectorError(scrub(message, secret), obj=datasource.label, status=status)
    return terminal(f"the server refused the request (HTTP {status}: {reason})", datasource.label, "url")
