"""MQTT publisher over paho-mqtt 2.x (callback API v2): MQTT 3.1.1 and 5, QoS 0/1/2, TLS."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from eventdesk.core.contracts import Publisher
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.core.workspace import BrokerConfig

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
            help="PEM file of the CA that signed the broker's certificate.",
        ),
        Field(
            "client_cert",
            "path",
            label="Client certificate",
            default="",
            help="PEM client certificate for mutual TLS.",
        ),
        Field(
            "client_key",
            "path",
            label="Client key",
            default="",
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


class MqttPublisher(Publisher):
    kind: ClassVar[str] = "mqtt"
    schema: ClassVar[Schema] = SCHEMA

    @staticmethod
    def validate_topic(topic: str) -> str | None:
        if not topic:
            return "the topic is empty"
        if "+" in topic or "#" in topic:
            return "a publish topic may not contain the wildcards + or #"
        if "\x00" in topic:
            return "a topic may not contain the NUL character"
        if len(topic.encode("utf-8")) > 65535:
            return "a topic may be at most 65535 bytes"
        return None

    async def start(self) -> None:
        raise NotImplementedError("being written")

    @property
    def connected(self) -> bool:
        raise NotImplementedError("being written")

    async def wait_connected(self) -> None:
        raise NotImplementedError("being written")

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        raise NotImplementedError("being written")

    async def close(self, timeout: float = 2.0) -> None:
        raise NotImplementedError("being written")

    @classmethod
    async def test_connection(cls, config: BrokerConfig, secret: str | None) -> str:
        raise NotImplementedError("being written")
