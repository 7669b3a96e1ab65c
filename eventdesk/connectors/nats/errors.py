"""Why following a NATS stream or subject failed, said so a user can act on it: connection
failures are named by NATS's ``connect_error`` (clients/nats/errors.py) as
:class:`ConnectorError`s of the datasource; a missing stream, a filter subject the stream
does not bind, a permission the account lacks, a stream that lost the checkpoint's messages are
named on the model, with the field to look at. Secrets never reach these texts.
"""

from __future__ import annotations

import re

import nats.errors
import nats.js.errors

from eventdesk.clients.nats.errors import (
    JS_CLUSTER_NOT_AVAILABLE,
    JS_CONSUMER_FILTER_NOT_SUBSET,
    JS_NOT_ENABLED,
    JS_STREAM_NOT_FOUND,
)
from eventdesk.core.errors import ConnectorError

_PERMISSION = re.compile(r"Permissions Violation for (Publish|Subscription) to \"?([^\"']+)", re.IGNORECASE)


def permission_denied(text: str) -> str | None:
    """The subject of a server's 'Permissions Violation for ...' line, or None."""
    match = _PERMISSION.search(text)
    return match.group(2) if match else None


def permission_error(subject: str, model: str, field: str) -> ConnectorError:
    what = "JetStream's API" if subject.upper().startswith("$JS.") else f"subject {subject[:200]!r}"
    return ConnectorError(
        f"permission denied: the account may not use {what} (grant it in the server's "
        "authorization, or use another user)",
        obj=model,
        field=field,
        terminal=True,
    )


def stream_error(exc: BaseException, model: str, stream: str, where: str) -> ConnectorError:
    """Looking up the stream, or creating or reading its consumer, failed."""
    code = getattr(exc, "err_code", None)
    if (isinstance(exc, nats.js.errors.NotFoundError) and code in (None, JS_STREAM_NOT_FOUND)) or (
        code == JS_STREAM_NOT_FOUND
    ):
        return ConnectorError(
            f"the JetStream stream {stream!r} does not exist on {where} (check the name, or create "
            "the stream: nats stream add)",
            obj=model,
            field="stream",
            terminal=True,
        )
    if code == JS_CONSUMER_FILTER_NOT_SUBSET:
        return ConnectorError(
            f"the subject filter is not one of stream {stream!r}'s subjects",
            obj=model,
            field="subject",
            terminal=True,
        )
    if code == JS_CLUSTER_NOT_AVAILABLE:
        return ConnectorError(
            f"JetStream on {where} is not available right now (its cluster is electing a leader)", obj=model
        )
    if (
        isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.errors.NoRespondersError)
        or code == JS_NOT_ENABLED
    ):
        return ConnectorError(
            f"JetStream did not answer on {where}: it is not enabled on the server (nats-server -js), "
            "or this account may not use it",
            obj=model,
            field="stream",
            terminal=True,
        )
    if isinstance(exc, nats.js.errors.APIError):
        return ConnectorError(
            f"stream {stream!r}: {exc.description or exc}", obj=model, field="stream", terminal=True
        )
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return ConnectorError(f"no answer about stream {stream!r} from {where} in time", obj=model)
    if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.StaleConnectionError | OSError):
        return ConnectorError(f"the connection to {where} was lost", obj=model)
    return ConnectorError(f"stream {stream!r}: {type(exc).__name__}: {exc}", obj=model)


def checkpoint_gone(model: str, stream: str, checkpoint: int, last: int) -> ConnectorError:
    return ConnectorError(
        f"stream {stream!r} ends at sequence {last}, before the checkpoint {checkpoint}: the stream "
        "was deleted or purged and created again since. Remove and add the model again to start over",
        obj=model,
        field="stream",
        terminal=True,
    )
