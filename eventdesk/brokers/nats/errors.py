"""Why a NATS connection or a JetStream publish failed, said so a user can act on it: nats-py's
exceptions, the server's -ERR lines and JetStream's API errors become a BrokerError (or a
PoisonError, for a message no resend can help) naming the broker and the setting to look at,
and whether retrying can help. Secrets never reach these texts (nats-py's do not hold them).
"""

from __future__ import annotations

import ssl
from typing import Any

import nats.errors
import nats.js.errors

from eventdesk.core.errors import BrokerError, PoisonError

# JetStream API error codes (nats-server's errors.json).
JS_STREAM_NOT_FOUND = 10059
JS_STREAM_SUBJECTS_OVERLAP = 10065
JS_MESSAGE_TOO_BIG = 10054  # "message size exceeds maximum allowed"
JS_INSUFFICIENT_RESOURCES = 10023
JS_NOT_ENABLED = 10076


def connect_error(exc: BaseException, label: str, where: str) -> BrokerError:
    """Say why connecting to ``where`` failed; terminal when no retry can help."""
    text = str(exc)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text.lower():
        return BrokerError(
            f"{where} refused the credentials (authorization violation): check the user name and "
            "password or token, the credentials file or the NKey seed file",
            obj=label,
            field="secret",
            terminal=True,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return BrokerError(
            f"the server's certificate could not be verified ({exc.verify_message}); set the CA file to "
            "the CA that signed it",
            obj=label,
            field="ca_file",
            terminal=True,
        )
    if isinstance(exc, ssl.SSLError):
        return BrokerError(
            f"TLS with {where} failed: {exc.reason or exc}", obj=label, field="url", terminal=True
        )
    if isinstance(exc, nats.errors.SecureConnRequiredError):
        return BrokerError(
            f"{where} requires TLS: use a tls:// URL (and the CA file of its certificate)",
            obj=label,
            field="url",
            terminal=True,
        )
    if isinstance(exc, nats.errors.SecureConnWantedError | nats.errors.SecureConnFailedError):
        return BrokerError(
            f"TLS with {where} failed: {text or type(exc).__name__} (does the server offer TLS?)",
            obj=label,
            field="url",
            terminal=True,
        )
    if "tls" in text.lower() and ("required" in text.lower() or "handshake" in text.lower()):
        return BrokerError(
            f"TLS problem with {where}: {text} (a server that wants TLS needs a tls:// URL or a CA file)",
            obj=label,
            field="url",
            terminal=True,
        )
    if isinstance(exc, ConnectionRefusedError):
        return BrokerError(
            f"{where} refused the connection (is nats-server running?)", obj=label, field="url"
        )
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return BrokerError(f"no answer from {where}", obj=label, field="url")
    if isinstance(exc, nats.errors.NoServersError):
        return BrokerError(f"cannot connect to {where}: no server answered", obj=label, field="url")
    if isinstance(exc, OSError):
        return BrokerError(f"cannot connect to {where}: {exc.strerror or exc}", obj=label, field="url")
    return BrokerError(f"cannot connect to {where}: {text or type(exc).__name__}", obj=label, field="url")


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
