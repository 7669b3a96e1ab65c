"""The settings of an ``mqtt`` broker: the schema (validation, CLI flags, the app's form) and
:class:`MqttSettings`, the typed, frozen object the publisher and the transport read.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventdesk.core.settings_schema import Field, KindSettings, Schema, check_pem_file

SCHEMA = Schema(
    kind="mqtt",
    title="MQTT",
    description="An MQTT 3.1.1 or 5 broker (mosquitto, EMQX, HiveMQ, ...).",
    fields=(
        Field(
            "url",
            "url",
            label="URL",
            required=True,
            url_schemes=("mqtt", "mqtts"),
            help="mqtt://HOST:PORT (plain, default port 1883) or mqtts://HOST:PORT (TLS, default 8883).",
        ),
        Field("username", "str", default="", help="User name, if the broker wants one."),
        Field("secret", "secret", label="Password", help="Kept in the OS keyring."),
        Field("protocol", "choice", default="3.1.1", choices=("3.1.1", "5"), help="MQTT protocol version."),
        Field(
            "client_id",
            "str",
            label="Client ID",
            default="",
            advanced=True,
            help="Empty: eventdesk-<broker name>-<random>.",
        ),
        Field(
            "keepalive",
            "int",
            default=30,
            minimum=5,
            maximum=3600,
            advanced=True,
            help="Seconds between pings; a dead connection is noticed within 1.5 x this.",
        ),
        Field(
            "ca_file",
            "path",
            label="CA file",
            default="",
            validator=check_pem_file,
            help="PEM file of the CA that signed the broker's certificate.",
        ),
        Field(
            "client_cert",
            "path",
            label="Client certificate",
            default="",
            validator=check_pem_file,
            help="PEM client certificate for mutual TLS.",
        ),
        Field(
            "client_key",
            "path",
            label="Client key",
            default="",
            validator=check_pem_file,
            help="PEM private key of the client certificate.",
        ),
        Field(
            "tls_insecure",
            "bool",
            label="Skip hostname check",
            default=False,
            advanced=True,
            help="Accept a certificate whose name does not match the host. Unsafe; for tests only.",
        ),
    ),
    cross_checks=(
        lambda v: (
            ("client_key", "a client certificate needs its key")
            if bool(v["client_cert"]) != bool(v["client_key"])
            else None
        ),
    ),
)


@dataclass(frozen=True)
class MqttSettings(KindSettings):
    """An ``mqtt`` broker's settings, typed (the password is the broker's secret, not here)."""

    schema = SCHEMA
    url: str
    username: str
    protocol: str
    client_id: str
    keepalive: int
    ca_file: str
    client_cert: str
    client_key: str
    tls_insecure: bool
