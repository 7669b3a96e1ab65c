"""One NATS connection for the ``nats`` broker kind: nats-py's connect options from the
settings (credentials, TLS), the stream check or creation, and what a message carries beside
its payload (the ``Nats-Msg-Id`` and the envelope headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import ssl
import urllib.parse
from typing import Any, Protocol

import nats.js
import nats.js.api
from nats.aio.client import Client

from eventdesk.brokers.nats.errors import connect_error, stream_error
from eventdesk.brokers.nats.settings import NatsSettings
from eventdesk.core.contracts import MessageFields
from eventdesk.core.errors import BrokerError

MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
# Header values are percent-encoded (urllib.parse.unquote gives them back): a key may hold a
# CR or LF, which would end the header block, and nats-py strips leading and trailing spaces.
_HEADER_SAFE = "!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"


class Endpoint(Protocol):
    """What connecting needs of a kind's settings: the broker's ``NatsSettings`` and the nats
    source kind's datasource settings (connectors/nats/settings.py) both have it."""

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
    return ", ".join(
        f"{p.scheme}://{p.hostname}:{p.port or 4222}" for p in map(urllib.parse.urlsplit, settings.servers)
    )


def msg_id(f: MessageFields) -> str:
    """A deterministic id of one change: the same datasource, model, key and rev give the same
    id (an event without a rev: its capture id, the same on every resend of that event)."""
    rev = f.rev if f.rev is not None else "id:" + f.id
    digest = hashlib.blake2b("\x00".join((f.datasource, f.model, f.key, rev)).encode(), digest_size=16)
    return digest.hexdigest()


def header_value(value: str) -> str:
    return urllib.parse.quote(value, safe=_HEADER_SAFE)


def headers_for(f: MessageFields, stream: str) -> dict[str, str]:
    headers = {
        MSG_ID: msg_id(f),
        "EventDesk-Datasource": header_value(f.datasource),
        "EventDesk-Model": header_value(f.model),
        "EventDesk-Op": header_value(f.op),
        "EventDesk-Key": header_value(f.key),
        "EventDesk-Rev": header_value(f.rev or ""),
    }
    if stream:
        headers[EXPECTED_STREAM] = stream
    return headers


def connect_options(settings: Endpoint, secret: str | None, label: str, timeout: float) -> dict[str, Any]:
    """nats.connect's keyword arguments; raises a terminal BrokerError for unusable settings."""
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
        field = "creds" if settings.creds else "nkey"
        if importlib.util.find_spec("nkeys") is None:
            # nats-py signs the server's nonce with the optional nkeys package (nats-py[nkeys]).
            raise BrokerError(
                "a credentials file or an NKey seed needs the Python package 'nkeys' (pip install "
                "'nats-py[nkeys]'), which is not installed",
                obj=label,
                field=field,
                terminal=True,
            )
    if settings.creds:
        options["user_credentials"] = settings.creds
    if settings.nkey:
        try:
            with open(settings.nkey, encoding="utf-8") as fh:
                seed = next((line.strip() for line in fh if line.strip().startswith("S")), "")
        except OSError as exc:
            raise BrokerError(
                f"cannot read the NKey seed file: {exc.strerror or exc}",
                obj=label,
                field="nkey",
                terminal=True,
            ) from None
        if not seed:
            raise BrokerError(
                "the NKey seed file holds no seed (a line starting SU...)",
                obj=label,
                field="nkey",
                terminal=True,
            )
        options["nkeys_seed_str"] = seed
    tls = settings.ca_file or any(u.startswith("tls://") for u in settings.servers)
    if tls:
        try:
            context = ssl.create_default_context(cafile=settings.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(
                f"cannot load the CA file: {exc}", obj=label, field="ca_file", terminal=True
            ) from None
        options["tls"] = context
    return options


async def open_connection(
    settings: Endpoint, secret: str | None, label: str, timeout: float, **callbacks: Any
) -> Client:
    """Connect (one attempt over the servers); a BrokerError says why not."""
    options = connect_options(settings, secret, label, timeout)
    nc = Client()
    try:
        await nc.connect(**options, **callbacks)
    except Exception as exc:
        # nats-py leaves the socket of a refused connection (bad credentials) open: close it;
        # after a failed TLS handshake its close() can wait for ever on the transport: bounded.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)
        raise connect_error(exc, label, where(settings)) from None
    return nc


async def check_stream(nc: Client, settings: NatsSettings, label: str) -> str:
    """Make sure the configured stream exists (creating it if asked); a summary."""
    if not settings.stream:
        return "no stream named: any stream binding the subjects"
    js = nc.jetstream()
    try:
        info = await js.stream_info(settings.stream)
        return f"stream {settings.stream!r} ({', '.join(info.config.subjects or [])})"
    except Exception as exc:
        error = stream_error(exc, label, settings.stream)
        if error.field != "stream" or not error.terminal or not settings.create_stream:
            raise error from None
    config = nats.js.api.StreamConfig(
        name=settings.stream,
        subjects=settings.subject_list,
        num_replicas=settings.replicas,
        max_age=settings.max_age or None,
        duplicate_window=settings.duplicate_window,
    )
    try:
        await js.add_stream(config)
    except Exception as exc:
        raise stream_error(exc, label, settings.stream) from None
    return f"stream {settings.stream!r} created ({', '.join(settings.subject_list)})"
