"""The ``local`` broker's publisher: runs the built-in broker while started, publishes into it.

The publishing side is the ordinary :class:`~eventdesk.brokers.mqtt.MqttPublisher`, connected
to the embedded broker over loopback, so acknowledgements and reconnects behave exactly as
with any other MQTT broker. The broker is ``hosted``: the runtime keeps it running for as long
as it runs (the app or ``eventdesk run``), whether or not a route publishes to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import ClassVar

from eventdesk.brokers.local.embedded import BROKERS, EmbeddedBroker, amqtt_version
from eventdesk.brokers.local.errors import check_port_free
from eventdesk.brokers.local.settings import SCHEMA, LocalBrokerSettings
from eventdesk.brokers.mqtt import SCHEMA as MQTT_SCHEMA
from eventdesk.brokers.mqtt import MqttPublisher
from eventdesk.core.contracts import Publisher, State, StateChange
from eventdesk.core.errors import BrokerError, PoisonError
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import BrokerConfig


class LocalBrokerPublisher(Publisher):
    """Runs the embedded broker while started and publishes into it with :class:`MqttPublisher`."""

    kind: ClassVar[str] = "local"
    settings_type: ClassVar[type[LocalBrokerSettings]] = LocalBrokerSettings
    schema: ClassVar[Schema] = SCHEMA
    hosted: ClassVar[bool] = True

    def __init__(
        self, *, config: BrokerConfig, secret: str | None, on_state: Callable[[StateChange], None]
    ) -> None:
        super().__init__(config=config, secret=secret, on_state=on_state)
        self.settings = LocalBrokerSettings.load(config.settings, config.label)
        self.host = self.settings.host
        self.port = self.settings.port
        connect_host = self.settings.connect_host
        inner_cfg = BrokerConfig(
            config.name,
            "mqtt",
            MQTT_SCHEMA.validate(
                {
                    "url": f"mqtt://{'[' + connect_host + ']' if ':' in connect_host else connect_host}:{self.port}"
                },
                config.label,
            ),
        )
        self.inner = MqttPublisher(config=inner_cfg, secret=None, on_state=on_state)
        self._broker: EmbeddedBroker | None = None

    @staticmethod
    def validate_topic(topic: str) -> str | None:
        return MqttPublisher.validate_topic(topic)

    @property
    def url(self) -> str:
        return self.settings.url

    async def start(self) -> None:
        if self._broker is None:
            loop = asyncio.get_running_loop()
            self.on_state(StateChange(State.CONNECTING, f"starting the built-in broker on {self.url}"))
            try:
                self._broker = await loop.run_in_executor(
                    None, BROKERS.acquire, self.host, self.port, self.config.label
                )
            except BrokerError as exc:
                self.on_state(StateChange(State.ERROR, exc.describe()))
                raise
        await self.inner.start()

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def wait_connected(self) -> None:
        await self.inner.wait_connected()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        return self.inner.publish(topic, payload, qos, retain)

    def message_bounds(self) -> tuple[int, int]:
        return self.inner.message_bounds()

    def check_message(self, topic: str, payload: bytes, qos: int) -> PoisonError | None:
        return self.inner.check_message(topic, payload, qos)

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
    ) -> asyncio.Future[None]:
        return self.inner.publish_many(messages, qos, retain)

    async def close(self, timeout: float = 2.0) -> None:
        try:
            await self.inner.close(timeout)
        finally:
            broker, self._broker = self._broker, None
            if broker is not None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, BROKERS.release, broker)

    @classmethod
    async def test_connection(cls, config: BrokerConfig, secret: str | None) -> str:
        settings = LocalBrokerSettings.load(config.settings, config.label)
        host, port = settings.host, settings.port
        if BROKERS.get(host, port) is not None:
            return f"built-in broker (amqtt {amqtt_version()}) running on mqtt://{host}:{port}"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_port_free, host, port, config.label)
        return f"{host}:{port} is free; the built-in broker starts there with the app or `eventdesk run`"
