"""Why a JetStream stream check or publish failed, said so a user can act on it: the server's
-ERR lines and JetStream's API errors become a BrokerError (or a PoisonError, for a message no
resend can help) naming the broker and the setting to look at, and whether retrying can help.
Why connecting failed is NATS's, shared with the source kind (clients/nats/errors.py).
"""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors

from eventdesk.clients.nats.errors import (
    JS_CLUSTER_NOT_AVAILABLE,
    JS_MESSAGE_TOO_BIG,
    JS_NOT_ENABLED,
    JS_STREAM_NOT_FOUND,
    JS_STREAM_SUBJECTS_OVERLAP,
)
from eventdesk.core.errors import BrokerError, PoisonError


def stream_error(exc: BaseException, label: str, stream: str) -> BrokerError:
    """Looking up or creating ``stream`` failed."""
    if isinstance(exc, nats.js.errors.NotFoundError) or getattr(exc, "err_code", None) == JS_STREAM_NOT_FOUND:
        return BrokerError(
            f"the JetStream stream {stream!r} does not exist (create it, or let EventDesk create it with "
            "--create-stream and --subjects)",
            obj=label,
            field="stream",
            terminal=True,
        )
    if getattr(exc, "err_code", None) == JS_CLUSTER_NOT_AVAILABLE:
        return BrokerError(
            "JetStream is not available right now (its cluster is electing a leader)",
            obj=label,
            field="stream",
        )
    if (
        isinstance(exc, nats.js.errors.ServiceUnavailableError)
        or getattr(exc, "err_code", None) == JS_NOT_ENABLED
    ):
        return BrokerError(
            "JetStream is not enabled on the server (start nats-server with -js)",
            obj=label,
            field="url",
            terminal=True,
        )
    if isinstance(exc, nats.errors.NoRespondersError):
        return BrokerError(
            "JetStream did not answer: it is not enabled on the server, or this account may not use it",
            obj=label,
            field="url",
            terminal=True,
        )
    if getattr(exc, "err_code", None) == JS_STREAM_SUBJECTS_OVERLAP:
        return BrokerError(
            f"cannot create stream {stream!r}: its subjects overlap another stream's",
            obj=label,
            field="subjects",
            terminal=True,
        )
    if isinstance(exc, nats.js.errors.APIError):
        return BrokerError(
            f"stream {stream!r}: {exc.description or exc}", obj=label, field="stream", terminal=True
        )
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return BrokerError(f"no answer about stream {stream!r} in time", obj=label, field="stream")
    return BrokerError(f"stream {stream!r}: {exc}", obj=label, field="stream")


def no_stream_error(subject: str, label: str) -> PoisonError:
    """A JetStream publish had no responder: no stream binds ``subject``."""
    return PoisonError(
        f"no JetStream stream is bound to subject {subject[:200]!r} (add it to a stream's subjects, "
        "or change the route's topic)",
        obj=label,
        field="topic",
    )


def permission_error(text: str, label: str) -> BrokerError:
    """The server's 'Permissions Violation for Publish to ...' (the subject is in the text)."""
    detail = text.removeprefix("nats: ").strip("'")
    return BrokerError(
        f"permission denied: {detail} (the account may not publish there)",
        obj=label,
        field="topic",
        terminal=True,
    )


def puback_error(reply: dict[str, Any], subject: str, label: str) -> BrokerError:
    """A PubAck carrying ``{"error": {...}}`` instead of a sequence number."""
    err = reply.get("error") or {}
    code = err.get("err_code")
    description = str(err.get("description") or err)
    why = f"the stream refused the message on {subject[:200]!r}: {description}"
    if code == JS_MESSAGE_TOO_BIG:
        return PoisonError(why, obj=label, field="payload")
    return BrokerError(why, obj=label)
