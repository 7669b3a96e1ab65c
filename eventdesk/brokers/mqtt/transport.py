"""What one MQTT connection needs before paho opens it: the endpoint resolved from the typed
settings (:class:`Params`) and the TLS context, with the socket workarounds that keep a failed
handshake from leaking a descriptor and an encrypted key from blocking on a terminal prompt.
Configuration mistakes (a missing CA file, a key that does not match) raise a terminal
BrokerError naming the field, before any network.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTProtocolVersion

from eventdesk.brokers.mqtt.settings import MqttSettings
from eventdesk.core.errors import BrokerError
from eventdesk.core.settings_schema import redact_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    """Everything one connection needs, resolved once from the broker's settings."""

    label: str
    url: str  # without credentials
    host: str
    port: int
    tls: bool
    ssl_context: ssl.SSLContext | None
    protocol: MQTTProtocolVersion
    protocol_name: str
    client_id: str
    keepalive: int
    connect_timeout: float
    username: str
    password: str | None
    ca_file: str
    client_cert: str


def resolve_params(
    settings: MqttSettings, *, label: str, secret: str | None, client_id: str, connect_timeout: float
) -> Params:
    """Check the URL and TLS settings together and build the connection's :class:`Params`."""
    url = settings.url
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BrokerError(
            f"expected mqtt://HOST:PORT or mqtts://HOST:PORT, got {redact_url(url)!r}",
            obj=label,
            field="url",
            terminal=True,
        )
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise BrokerError(
            f"invalid port in {redact_url(url)!r}", obj=label, field="url", terminal=True
        ) from None
    tls_fields = [f for f in ("ca_file", "client_cert", "client_key") if getattr(settings, f)]
    if tls_fields and not tls:
        raise BrokerError(
            f"{', '.join(tls_fields)} set, but the URL is plain mqtt://; use mqtts:// for TLS",
            obj=label,
            field="url",
            terminal=True,
        )
    username = settings.username
    if secret and not username:
        log.info("%s: a password is stored but no user name is set; connecting without either", label)
    return Params(
        label=label,
        url=f"{parts.scheme}://{parts.hostname}:{port}",
        host=parts.hostname,
        port=port,
        tls=tls,
        ssl_context=ssl_context(settings, label) if tls else None,
        protocol=mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311,
        protocol_name=settings.protocol,
        client_id=client_id,
        keepalive=settings.keepalive,
        connect_timeout=connect_timeout,
        username=username,
        password=secret if username else None,
        ca_file=settings.ca_file,
        client_cert=settings.client_cert,
    )


class ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails.

    paho opens the TLS socket inside ``reconnect()`` and drops it unclosed when the handshake
    raises (unknown CA, name mismatch, ...), which leaks the descriptor until GC.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _EncryptedKeyError(Exception):
    """The client key file is encrypted (OpenSSL asked for its passphrase)."""


def _refuse_key_passphrase() -> str:
    # Without this, OpenSSL would prompt on the terminal for the passphrase and block.
    raise _EncryptedKeyError


def ssl_context(settings: MqttSettings, label: str) -> ssl.SSLContext:
    """Build the TLS context from the settings; say which file is wrong if one is."""
    ca_file = settings.ca_file
    cert = settings.client_cert
    key = settings.client_key
    if ca_file:
        path = Path(ca_file).expanduser()
        if not path.is_file():
            raise BrokerError(
                f"CA file {ca_file!r} does not exist", obj=label, field="ca_file", terminal=True
            )
        try:
            context = ssl.create_default_context(cafile=str(path))
        except ssl.SSLError as exc:
            raise BrokerError(
                f"CA file {ca_file!r} holds no usable PEM certificate ({exc.reason or exc})",
                obj=label,
                field="ca_file",
                terminal=True,
            ) from None
        except OSError as exc:
            raise BrokerError(
                f"cannot read CA file {ca_file!r}: {exc.strerror or exc}",
                obj=label,
                field="ca_file",
                terminal=True,
            ) from None
    else:
        context = ssl.create_default_context()
    if cert or key:
        for name, value in (("client_cert", cert), ("client_key", key)):
            if not value:
                raise BrokerError("a client certificate needs its key", obj=label, field=name, terminal=True)
            if not Path(value).expanduser().is_file():
                raise BrokerError(f"file {value!r} does not exist", obj=label, field=name, terminal=True)
        try:
            context.load_cert_chain(
                str(Path(cert).expanduser()), str(Path(key).expanduser()), password=_refuse_key_passphrase
            )
        except _EncryptedKeyError:
            raise BrokerError(
                f"client key {key!r} is encrypted; EventDesk needs an unencrypted key file",
                obj=label,
                field="client_key",
                terminal=True,
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise BrokerError(
                    f"client key {key!r} does not belong to client certificate {cert!r}",
                    obj=label,
                    field="client_key",
                    terminal=True,
                ) from None
            raise BrokerError(
                f"cannot load client certificate {cert!r} with key {key!r}: {exc.reason or exc}",
                obj=label,
                field="client_cert",
                terminal=True,
            ) from None
        except OSError as exc:
            raise BrokerError(
                f"cannot read client certificate {cert!r}: {exc.strerror or exc}",
                obj=label,
                field="client_cert",
                terminal=True,
            ) from None
    # Hostname verification stays on unless explicitly switched off; the chain is always verified.
    context.check_hostname = not settings.tls_insecure
    # paho builds the TLS socket from this context: closing it when the handshake fails.
    context.sslsocket_class = ClosingSSLSocket
    return context
