"""Who may add events to a webhook model: the shared secret's signature, and the exposure rule.

With a shared secret, a request carries an HMAC-SHA256 of its body in the signature header
(``sha256=<hex>`` as GitHub sends it, or plain hex). Without one, the receiver must listen on a
loopback address, unless ``allow_unsigned`` says otherwise: no unsigned receiver is reachable
from the network by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

from eventdesk.connectors.webhook.settings import WebhookDatasourceSettings

_SIGNATURE = re.compile(r"(?:sha256=)?([0-9a-f]{64})", re.IGNORECASE)


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex>`` as GitHub sends it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_problem(secret: str, body: bytes, header: str | None) -> str | None:
    """Why ``header`` is not the signature of ``body`` with ``secret`` (None: it is).

    Never raises, whatever the header holds (non-ASCII, odd lengths, no ``sha256=``).
    """
    if header is None:
        return "missing signature"
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:
        return "bad signature (not sha256=<64 hex digits>)"
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, bytes.fromhex(match.group(1))):
        return "bad signature (it does not match the body)"
    return None


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    return signature_problem(secret, body, header) is None


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name: it may resolve to any address
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def exposure_problem(settings: WebhookDatasourceSettings, has_secret: bool) -> str | None:
    """Why a receiver with these settings must not start (None: it may): other machines can
    reach it, it has no shared secret, and ``allow_unsigned`` is off. The field at fault is
    ``secret``."""
    host = settings.host
    if has_secret or settings.allow_unsigned or is_loopback(host):
        return None
    return (
        f"no shared secret is set, and host {host} accepts requests from other machines: anyone who "
        "can reach the port could add events. Set a secret, listen on 127.0.0.1, or allow unsigned "
        "requests explicitly (allow_unsigned, --allow-unsigned)"
    )
