"""The built-in broker's settings: where it listens (the schema, and its typed form)."""

from __future__ import annotations

from dataclasses import dataclass

from eventdesk.core.settings_schema import Field, KindSettings, Schema, check_host

DEFAULT_PORT = 1883
DEFAULT_HOST = "127.0.0.1"

SCHEMA = Schema(
    kind="local",
    title="Built-in MQTT broker",
    description="An MQTT broker inside EventDesk (amqtt): runs with the app or `eventdesk run`; any MQTT "
    "client can subscribe to it. Anonymous, no TLS: keep it on 127.0.0.1.",
    fields=(
        Field(
            "port",
            "int",
            default=DEFAULT_PORT,
            minimum=1,
            maximum=65535,
            help="TCP port MQTT clients connect to, e.g. mosquitto_sub -p PORT -t '#'.",
        ),
        Field(
            "host",
            "str",
            label="Listen address",
            default=DEFAULT_HOST,
            required=True,
            advanced=True,
            validator=check_host,
            help="127.0.0.1: this machine only. The broker allows anonymous clients.",
        ),
    ),
)


@dataclass(frozen=True)
class LocalBrokerSettings(KindSettings):
    """The built-in broker's settings, typed."""

    schema = SCHEMA
    port: int
    host: str

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def connect_host(self) -> str:
        """The address a client on this machine connects to: the listen address, or loopback
        when it listens on every address."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return "::1" if host == "::" else host
