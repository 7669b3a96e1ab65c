"""Why an MQTT connection or message failed, said so a user can act on it: CONNACK and PUBACK
reason codes, TLS alerts and socket errors become a BrokerError (or PoisonError, for a message
no resend can help) naming the broker and the setting to look at, and whether retrying can help.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

from paho.mqtt.reasoncodes import ReasonCode

from eventdesk.core.errors import BrokerError, PoisonError

if TYPE_CHECKING:
    from eventdesk.brokers.mqtt.transport import Params

# CONNACK / DISCONNECT reason codes (MQTT 5 numbering; paho maps 3.1.1 return codes onto it).
_RC_UNSUPPORTED_PROTOCOL = 132
_RC_CLIENT_ID_INVALID = 133
_RC_BAD_CREDENTIALS = 134
_RC_NOT_AUTHORIZED = 135
_RC_BANNED = 138
_RC_BAD_AUTH_METHOD = 140
_RC_SESSION_TAKEN_OVER = 142
_RC_TOPIC_NAME_INVALID = 144
_RC_PACKET_TOO_LARGE = 149
_RC_PAYLOAD_FORMAT_INVALID = 153
_RC_USE_ANOTHER_SERVER = 156
_RC_SERVER_MOVED = 157
# PUBACK reason codes that no resend can change, and the message's part each is about.
_PERMANENT_REFUSALS = {
    _RC_NOT_AUTHORIZED: "topic",
    _RC_TOPIC_NAME_INVALID: "topic",
    _RC_PACKET_TOO_LARGE: "payload",
    _RC_PAYLOAD_FORMAT_INVALID: "payload",
}

# OpenSSL X509_V_ERR_HOSTNAME_MISMATCH / X509_V_ERR_IP_ADDRESS_MISMATCH
_VERIFY_NAME_MISMATCH = (62, 64)

_TLS_CLIENT_CERT_REQUIRED = ("CERTIFICATE_REQUIRED", "certificate required")
_TLS_CLIENT_CERT_REJECTED = (
    "UNKNOWN_CA",
    "unknown ca",
    "BAD_CERTIFICATE",
    "bad certificate",
    "CERTIFICATE_UNKNOWN",
    "certificate unknown",
    "UNSUPPORTED_CERTIFICATE",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
)
_TLS_NOT_TLS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "HTTP_REQUEST")
_TLS_TRANSIENT = ("UNEXPECTED_EOF", "unexpected eof", "EOF occurred", "ECONNRESET")


def refusal_error(reason: ReasonCode, label: str) -> BrokerError:
    """The broker refused one message (a failed PUBACK/PUBREC): poison if no resend can help."""
    why = f"the broker refused the message: {reason}"
    part = _PERMANENT_REFUSALS.get(reason.value)
    return PoisonError(why, obj=label, field=part) if part is not None else BrokerError(why, obj=label)


def unpublishable_error(exc: ValueError, topic: str, label: str) -> PoisonError:
    """paho's (or the lean path's) ValueError for a topic or payload no broker would take."""
    return PoisonError(
        f"cannot publish to topic {topic[:200]!r}: {exc}",
        obj=label,
        field="payload" if "Payload" in str(exc) else "topic",
    )


def connect_error(exc: BaseException, p: Params) -> BrokerError:
    """Say why a TCP or TLS connection to the broker could not be opened."""
    where = f"{p.host}:{p.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _VERIFY_NAME_MISMATCH:
            return BrokerError(
                f"the broker's certificate is not valid for {p.host!r} ({exc.verify_message}); "
                "use the host name the certificate was issued for (or, for tests only, tls_insecure)",
                obj=p.label,
                field="url",
                terminal=True,
            )
        if p.ca_file:
            detail = f"the broker's certificate could not be verified with CA file {p.ca_file!r}"
        else:
            detail = (
                "the broker's certificate could not be verified with the system's CA certificates "
                "(set the CA file to the CA that signed it)"
            )
        return BrokerError(f"{detail}: {exc.verify_message}", obj=p.label, field="ca_file", terminal=True)
    if isinstance(exc, ssl.SSLError):
        text = f"{exc.reason} {exc}"
        tls_error = tls_alert_error(text, p)
        if tls_error is not None:
            return tls_error
        terminal = not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) and not any(
            s in text for s in _TLS_TRANSIENT
        )
        return BrokerError(
            f"TLS handshake with {where} failed: {exc.reason or exc}",
            obj=p.label,
            field="url",
            terminal=terminal,
        )
    if isinstance(exc, ConnectionRefusedError):
        return BrokerError(
            f"{where} refused the connection (is the broker running?)", obj=p.label, field="url"
        )
    if isinstance(exc, TimeoutError):
        return BrokerError(f"no answer from {where}", obj=p.label, field="url")
    if isinstance(exc, OSError):
        if isinstance(exc, socket.gaierror):
            return BrokerError(f"cannot resolve host {p.host!r}: {exc.strerror}", obj=p.label, field="url")
        detail = f"cannot connect to {where}: {exc.strerror or exc}"
        if p.tls and isinstance(exc, ConnectionResetError):
            detail += " (if it is a plain port, use mqtt://)"
        return BrokerError(detail, obj=p.label, field="url")
    return BrokerError(f"cannot connect to {where}: {exc!r}", obj=p.label, field="url", terminal=True)


def tls_alert_error(text: str, p: Params) -> BrokerError | None:
    """Recognise a TLS failure in an SSL error text; None if ``text`` is none of those."""
    if any(s in text for s in _TLS_CLIENT_CERT_REQUIRED):
        if p.client_cert:
            detail = "the broker did not accept the client certificate (it requires one it trusts)"
        else:
            detail = "the broker requires a client certificate (set the client certificate and key)"
        return BrokerError(detail, obj=p.label, field="client_cert", terminal=True)
    if any(s in text for s in _TLS_CLIENT_CERT_REJECTED):
        return BrokerError(
            f"the broker rejected the client certificate ({text.strip()})",
            obj=p.label,
            field="client_cert",
            terminal=True,
        )
    if any(s in text for s in _TLS_NOT_TLS):
        return BrokerError(
            f"{p.host}:{p.port} does not speak TLS (use mqtt:// for a plain port)",
            obj=p.label,
            field="url",
            terminal=True,
        )
    return None


def refused_error(reason: ReasonCode, p: Params) -> BrokerError:
    """Say why the broker refused the MQTT connection (CONNACK)."""
    code = reason.value
    if code in (_RC_BAD_CREDENTIALS, _RC_NOT_AUTHORIZED):
        if not p.username:
            return BrokerError(
                f"the broker refused the connection ({reason}); it may want a user name and password",
                obj=p.label,
                field="username",
                terminal=True,
            )
        return BrokerError(
            f"the broker refused user {p.username!r} with this password ({reason})",
            obj=p.label,
            field="secret",
            terminal=True,
        )
    if code == _RC_UNSUPPORTED_PROTOCOL:
        return BrokerError(
            f"the broker does not support MQTT {p.protocol_name} ({reason})",
            obj=p.label,
            field="protocol",
            terminal=True,
        )
    if code == _RC_CLIENT_ID_INVALID:
        return BrokerError(
            f"the broker rejected client ID {p.client_id!r} ({reason})",
            obj=p.label,
            field="client_id",
            terminal=True,
        )
    if code in (_RC_BANNED, _RC_BAD_AUTH_METHOD):
        return BrokerError(
            f"the broker refused the connection ({reason})", obj=p.label, field="username", terminal=True
        )
    if code in (_RC_USE_ANOTHER_SERVER, _RC_SERVER_MOVED):
        return BrokerError(
            f"the broker refused the connection ({reason})", obj=p.label, field="url", terminal=True
        )
    return BrokerError(f"the broker refused the connection ({reason})", obj=p.label, field="url")


def dropped_error(from_server: bool, reason: ReasonCode | None, p: Params) -> BrokerError:
    """Say why an accepted connection ended (the broker's DISCONNECT, or the socket closing)."""
    if from_server:
        detail = f"the broker closed the connection ({reason})"
        if reason is not None and reason.value == _RC_SESSION_TAKEN_OVER:
            detail += "; another client connected with the same client ID"
            return BrokerError(detail, obj=p.label, field="client_id")
    else:
        detail = "the connection to the broker was lost"
        if reason is not None and reason.is_failure:
            detail += f" ({reason})"
    return BrokerError(detail, obj=p.label, field="url")


def closed_before_connack_error(handshake_errors: Sequence[str], p: Params) -> BrokerError:
    """Say why the connection closed before the broker answered CONNECT, from paho's log lines."""
    # TLS 1.3 reports a refused client certificate only here.
    for line in handshake_errors:
        tls_error = tls_alert_error(line, p)
        if tls_error is not None:
            return tls_error
    detail = f"{p.host}:{p.port} closed the connection before accepting the MQTT connection"
    if not p.tls:
        detail += " (if it is a TLS port, use mqtts://)"
    if handshake_errors:
        detail += f": {handshake_errors[-1]}"
    return BrokerError(detail, obj=p.label, field="url")
