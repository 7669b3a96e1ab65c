"""Why connecting to NATS failed, said so a user can act on it, for the source and the broker
kind alike: nats-py's exceptions and the server's -ERR lines become the kind's error
(:class:`BrokerError` or :class:`ConnectorError`) naming the object and the setting to look at,
and whether retrying can help; and the JetStream API error codes both kinds read. Secrets never
reach these texts (nats-py's do not hold them).
"""

from __future__ import annotations

import ssl

import nats.errors

from eventdesk.core.errors import BrokerError, ConnectorError

# The error a kind reports its connection failures with: the broker kind's or the source kind's.
KindError = type[BrokerError] | type[ConnectorError]

# JetStream API error codes (nats-server's errors.json).
JS_STREAM_NOT_FOUND = 10059
JS_STREAM_SUBJECTS_OVERLAP = 10065
JS_MESSAGE_TOO_BIG = 10054  # "message size exceeds maximum allowed"
JS_INSUFFICIENT_RESOURCES = 10023
JS_NOT_ENABLED = 10076
# "JetStream system temporarily unavailable" (a 503, as "not enabled" is): what a node answers
# while the cluster elects its meta leader, after a node's loss. Worth retrying, never terminal.
JS_CLUSTER_NOT_AVAILABLE = 10008
JS_CONSUMER_NOT_FOUND = 10014
JS_CONSUMER_FILTER_NOT_SUBSET = (
    10093  # "consumer filter subject is not a valid subset of the interest subjects"
)


# What to check when the server refuses a login, by the setting that logged in.
_REFUSED_LOGIN = {
    "secret": "check the user name and password or token",
    "nkey": "check that the NKey seed file is that of a user the server's authorization lists",
    "creds": "check that the credentials file is that of a user of the server's account",
}


def connect_error(
    exc: BaseException, label: str, where: str, error: KindError = BrokerError, login: str = "secret"
) -> BrokerError | ConnectorError:
    """Say why connecting to ``where`` failed, as an ``error``; terminal when no retry can help.
    ``login`` is the setting that logged in (secret, nkey or creds): a refusal names it."""
    text = str(exc)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text.lower():
        return error(
            f"{where} refused the credentials (authorization violation): {_REFUSED_LOGIN[login]}",
            obj=label,
            field=login,
            terminal=True,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return error(
            f"the server's certificate could not be verified ({exc.verify_message}); set the CA file to "
            "the CA that signed it",
            obj=label,
            field="ca_file",
            terminal=True,
        )
    if isinstance(exc, ssl.SSLError):
        return error(f"TLS with {where} failed: {exc.reason or exc}", obj=label, field="url", terminal=True)
    if isinstance(exc, nats.errors.SecureConnRequiredError):
        return error(
            f"{where} requires TLS: use a tls:// URL (and the CA file of its certificate)",
            obj=label,
            field="url",
            terminal=True,
        )
    if isinstance(exc, nats.errors.SecureConnWantedError | nats.errors.SecureConnFailedError):
        return error(
            f"TLS with {where} failed: {text or type(exc).__name__} (does the server offer TLS?)",
            obj=label,
            field="url",
            terminal=True,
        )
    if "tls" in text.lower() and ("required" in text.lower() or "handshake" in text.lower()):
        return error(
            f"TLS problem with {where}: {text} (a server that wants TLS needs a tls:// URL or a CA file)",
            obj=label,
            field="url",
            terminal=True,
        )
    if isinstance(exc, ConnectionRefusedError):
        return error(f"{where} refused the connection (is nats-server running?)", obj=label, field="url")
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return error(f"no answer from {where}", obj=label, field="url")
    if isinstance(exc, nats.errors.NoServersError):
        return error(f"cannot connect to {where}: no server answered", obj=label, field="url")
    if isinstance(exc, OSError):
        return error(f"cannot connect to {where}: {exc.strerror or exc}", obj=label, field="url")
    return error(f"cannot connect to {where}: {text or type(exc).__name__}", obj=label, field="url")
