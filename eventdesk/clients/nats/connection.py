"""One NATS connection, for the source and the broker kind alike: nats-py's connect options
from a kind's settings (servers, credentials, TLS), one connect attempt over the servers, and
the servers as shown in messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ssl
import urllib.parse
from typing import Any, Protocol

from nats.aio.client import Client

from eventdesk.clients.nats.errors import KindError, connect_error
from eventdesk.clients.nats.login_files import creds_seed, nkey_seed, read_lines, seed_problem
from eventdesk.core.errors import BrokerError


class Endpoint(Protocol):
    """What connecting needs of a kind's settings: the broker's ``NatsSettings`` and the nats
    source kind's datasource settings both have it (their fields are settings.py's)."""

    @property
    def servers(self) -> list[str]: ...
    @property
    def username(self) -> str: ...
    @property
    def creds(self) -> str: ...
    @property
    def nkey(self) -> str: ...
    @property
    def ca_file(self) -> str: ...


def where(settings: Endpoint) -> str:
    """The servers, as shown in messages (no user names or passwords)."""
    return show_servers(settings.servers)


def show_servers(servers: list[str]) -> str:
    """NATS server URLs as messages and logs show them: scheme, host and port, never a user
    name, password or token."""
    return ", ".join(
        f"{p.scheme}://{p.hostname}:{p.port or 4222}" for p in map(urllib.parse.urlsplit, servers)
    )


def connect_options(
    settings: Endpoint, secret: str | None, label: str, timeout: float, error: KindError = BrokerError
) -> dict[str, Any]:
    """nats.connect's keyword arguments; raises a terminal ``error`` for unusable settings."""
    options: dict[str, Any] = {
        "servers": settings.servers,
        # EventDesk reconnects itself (the shared Backoff), so in-flight batches fail at once
        # with BrokerDisconnectedError instead of waiting in nats-py's reconnect buffer.
        "allow_reconnect": False,
        # WHY: nats-py's server selection (Client._select_next_server, 2.16) reads 0 as "no
        # limit": a connect to a server that refuses it then loops for ever (every
        # reconnect_time_wait) instead of failing. 1 (each server tried twice, at once) lets it
        # fail, and the caller's Backoff take over.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0,
        "connect_timeout": timeout,
        "name": f"eventdesk {label}",
    }
    if settings.username:
        options["user"] = settings.username
        options["password"] = secret or ""
    elif secret and not settings.creds and not settings.nkey:
        options["token"] = secret
    if settings.creds or settings.nkey:
        options |= file_login(settings, label, error)
    tls = settings.ca_file or any(u.startswith("tls://") for u in settings.servers)
    if tls:
        try:
            context = ssl.create_default_context(cafile=settings.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise error(
                f"cannot load the CA file: {exc}", obj=label, field="ca_file", terminal=True
            ) from None
        options["tls"] = context
    return options


def file_login(settings: Endpoint, label: str, error: KindError) -> dict[str, Any]:
    """nats.connect's options for a credentials file or an NKey seed file, both read and checked
    here so that a bad file is a terminal ``error`` naming its field (never its content)."""
    field = "creds" if settings.creds else "nkey"
    if importlib.util.find_spec("nkeys") is None:
        # nats-py signs the server's nonce with the optional nkeys package (nats-py[nkeys]).
        raise error(
            "a credentials file or an NKey seed needs the Python package 'nkeys' (pip install "
            "'nats-py[nkeys]'), which is not installed",
            obj=label,
            field=field,
            terminal=True,
        )
    what = "credentials file" if settings.creds else "NKey seed file"
    try:
        lines = read_lines(settings.creds or settings.nkey, what)
        seed = creds_seed(lines) if settings.creds else nkey_seed(lines)
    except ValueError as exc:
        raise error(str(exc), obj=label, field=field, terminal=True) from None
    problem = seed_problem(seed, what)
    if problem is not None:
        raise error(problem, obj=label, field=field, terminal=True)
    return {"user_credentials": settings.creds} if settings.creds else {"nkeys_seed_str": seed}


def login_field(settings: Endpoint) -> str:
    """The setting a refused login points at: the credentials file, the NKey seed file, or the
    secret (password or token)."""
    return "creds" if settings.creds else "nkey" if settings.nkey else "secret"


async def open_connection(
    settings: Endpoint,
    secret: str | None,
    label: str,
    timeout: float,
    error: KindError = BrokerError,
    **callbacks: Any,
) -> Client:
    """Connect (one attempt over the servers); an ``error`` (the broker kind's BrokerError, or
    the source kind's ConnectorError) says why not."""
    options = connect_options(settings, secret, label, timeout, error)
    nc = Client()
    try:
        await nc.connect(**options, **callbacks)
    except Exception as exc:
        # nats-py leaves the socket of a refused connection (bad credentials) open: close it;
        # after a failed TLS handshake its close() can wait for ever on the transport: bounded.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)
        raise connect_error(exc, label, where(settings), error, login_field(settings)) from None
    return nc
