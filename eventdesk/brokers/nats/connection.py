"""What the ``nats`` broker kind does on a connection beside publishing: the stream check or
creation, and what a message carries beside its payload (the ``Nats-Msg-Id`` and the envelope
headers, named in clients/nats/headers.py). Connecting itself (credentials, TLS) is NATS's,
shared with the source kind (clients/nats/connection.py).
"""

from __future__ import annotations

import hashlib

import nats.js.api
from nats.aio.client import Client

from eventdesk.brokers.nats.errors import stream_error
from eventdesk.brokers.nats.settings import NatsSettings
from eventdesk.clients.nats.headers import (
    DATASOURCE_HEADER,
    KEY_HEADER,
    MODEL_HEADER,
    OP_HEADER,
    REV_HEADER,
    header_value,
)
from eventdesk.core.contracts import MessageFields

MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"


def msg_id(f: MessageFields, subject: str) -> str:
    """A deterministic id of one change on one subject: the same datasource, model, key and rev
    give the same id (an event without a rev: its capture id, the same on every resend of that
    event). The subject is part of it: two routes of one model into one stream (an envelope
    route and a payload route, say) publish two messages, not one and a duplicate; a route
    re-sending after a crash or failover publishes to the same subject, so the stream's
    duplicate window still drops the resend."""
    rev = f.rev if f.rev is not None else "id:" + f.id
    parts = (f.datasource, f.model, f.key, rev, subject)
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()


def headers_for(f: MessageFields, stream: str, subject: str) -> dict[str, str]:
    headers = {
        MSG_ID: msg_id(f, subject),
        DATASOURCE_HEADER: header_value(f.datasource),
        MODEL_HEADER: header_value(f.model),
        OP_HEADER: header_value(f.op),
        KEY_HEADER: header_value(f.key),
        REV_HEADER: header_value(f.rev or ""),
    }
    if stream:
        headers[EXPECTED_STREAM] = stream
    return headers


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
