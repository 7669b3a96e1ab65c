"""The built-in MQTT broker (kind ``local``): republishing that works with nothing installed.

EventDesk runs an MQTT 3.1.1 broker itself, on 127.0.0.1 and a configurable port, so any
MQTT client (``mosquitto_sub``, MQTT Explorer, paho) can subscribe to what EventDesk
republishes. The broker is amqtt, a maintained pure-Python asyncio broker installed from
PyPI with EventDesk, rather than a managed ``mosquitto`` child: mosquitto is faster (see
``tests/bench/webhook.py``) but is not there on a fresh machine, which is the case this kind
exists for; a user who has mosquitto configures an ``mqtt`` broker instead.

amqtt runs on its own thread and event loop, not on the app's: its per-message work is
Python, and under load it would otherwise compete with the GUI for the one loop. The
publisher side is the ordinary :class:`~eventdesk.brokers.mqtt.MqttPublisher`, connected to
the embedded broker over loopback, so acknowledgements and reconnects behave exactly as
with any other MQTT broker.

The broker is ``hosted``: the runtime keeps it running for as long as it runs (the app or
``eventdesk run``), whether or not a route publishes to it. Servers are shared by port and
refcounted (:class:`EmbeddedBrokers`), so a connection test or a second publisher never
starts a second broker on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any, ClassVar

from eventdesk.brokers.mqtt import SCHEMA as MQTT_SCHEMA
from eventdesk.brokers.mqtt import MqttPublisher
from eventdesk.core import ports
from eventdesk.core.contracts import Publisher, State, StateChange
from eventdesk.core.errors import BrokerError, PoisonError
from eventdesk.core.settings_schema import Field, Schema, check_host
from eventdesk.core.workspace import BrokerConfig

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

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
            default="127.0.0.1",
            required=True,
            advanced=True,
            validator=check_host,
            help="127.0.0.1: this machine only. The broker allows anonymous clients.",
        ),
    ),
)


def amqtt_version() -> str:
    try:
        return version("amqtt")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "?"


def port_in_use_error(label: str, host: str, port: int) -> BrokerError:
    return BrokerError(
        f"cannot start the built-in broker on {host}:{port}: the port is already in use (another MQTT broker, "
        "such as mosquitto, may be running there); choose another port, or add that broker as kind mqtt",
        obj=label,
        field="port",
        terminal=True,
    )


def check_port_free(host: str, port: int, label: str) -> None:
    """Raise a BrokerError naming ``port`` if nothing could listen on ``host:port`` now."""
    ports.check_port_free(host, port, label, BrokerError, port_in_use_error)


class EmbeddedBroker:
    """One amqtt broker on its own thread and loop; ``start``/``stop`` block (call them off-loop)."""

    def __init__(self, host: str, port: int, label: str) -> None:
        self.host = host
        self.port = port
        self.label = label
        self.users = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def start(self) -> None:
        check_port_free(self.host, self.port, self.label)  # a clear message before amqtt's traceback
        self._thread = threading.Thread(target=self._main, name=f"eventdesk-broker:{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise BrokerError(
                f"the built-in broker did not start within {START_TIMEOUT:g} s", obj=self.label, field="port"
            )
        error = self._error
        if error is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            if _is_addr_in_use(error):
                raise port_in_use_error(self.label, self.host, self.port) from None
            raise BrokerError(
                f"the built-in broker could not start on {self.host}:{self.port}: {error}",
                obj=self.label,
                field="port",
                terminal=True,
            ) from None
        log.info("%s: built-in broker (amqtt %s) listening on %s", self.label, amqtt_version(), self.url)

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it is ending anyway
                loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT + 2)
        if thread.is_alive():
            log.warning("%s: the built-in broker did not stop within %s s", self.label, STOP_TIMEOUT + 2)
        else:
            log.info("%s: built-in broker stopped", self.label)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); never a thread traceback
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("%s: the built-in broker failed", self.label)

    async def _serve(self) -> None:
        from amqtt.broker import Broker  # imported here: only a running broker pays for it

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only what a local, anonymous broker needs: the packet and event loggers cost time
            # per message, and $SYS publishing is noise for a desktop user.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:
            self._error = exc.__cause__ or exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            with _quiet_amqtt_shutdown():
                await asyncio.wait_for(broker.shutdown(), STOP_TIMEOUT)
            await _abort_leftover_transports(self._loop)


async def _abort_leftover_transports(loop: asyncio.AbstractEventLoop) -> None:
    """amqtt's shutdown leaves some client connections open; close them before the loop ends,
    or their sockets leak and warn when collected."""
    for obj in gc.get_objects():
        if (
            isinstance(obj, asyncio.Transport)
            and getattr(obj, "_loop", None) is loop
            and not obj.is_closing()
        ):
            obj.abort()
    await asyncio.sleep(0)


def _is_addr_in_use(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EADDRINUSE:
            return True
        if "address already in use" in str(seen).lower():
            return True
        seen = seen.__cause__
    return False


class _quiet_amqtt_shutdown:  # noqa: N801 - used as a context manager like contextlib's
    """During shutdown amqtt logs deliveries to clients that left as errors; they are expected."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger("amqtt")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)


class EmbeddedBrokers:
    """Running embedded brokers by (host, port), refcounted."""

    def __init__(self) -> None:
        self._brokers: dict[tuple[str, int], EmbeddedBroker] = {}
        self._lock = threading.Lock()

    def get(self, host: str, port: int) -> EmbeddedBroker | None:
        broker = self._brokers.get((host, port))
        return broker if broker is not None and broker.running else None

    def acquire(self, host: str, port: int, label: str) -> EmbeddedBroker:
        """Blocking: the running broker on ``host:port``, started if needed."""
        with self._lock:
            broker = self._brokers.get((host, port))
            if broker is None:
                broker = EmbeddedBroker(host, port, label)
                broker.start()
                self._brokers[(host, port)] = broker
            broker.users += 1
            return broker

    def release(self, broker: EmbeddedBroker) -> None:
        with self._lock:
            broker.users -= 1
            if broker.users > 0:
                return
            if self._brokers.get((broker.host, broker.port)) is broker:
                del self._brokers[(broker.host, broker.port)]
            broker.stop()


BROKERS = EmbeddedBrokers()


class LocalBrokerPublisher(Publisher):
    """Runs the embedded broker while started and publishes into it with :class:`MqttPublisher`."""

    kind: ClassVar[str] = "local"
    schema: ClassVar[Schema] = SCHEMA
    hosted: ClassVar[bool] = True

    def __init__(
        self, *, config: BrokerConfig, secret: str | None, on_state: Callable[[StateChange], None]
    ) -> None:
        super().__init__(config=config, secret=secret, on_state=on_state)
        settings = SCHEMA.validate(config.settings, config.label)
        self.host = str(settings["host"])
        self.port = int(settings["port"])
        connect_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        if connect_host == "::":
            connect_host = "::1"
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
        return f"mqtt://{self.host}:{self.port}"

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
        settings = SCHEMA.validate(config.settings, config.label)
        host, port = str(settings["host"]), int(settings["port"])
        if BROKERS.get(host, port) is not None:
            return f"built-in broker (amqtt {amqtt_version()}) running on mqtt://{host}:{port}"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_port_free, host, port, config.label)
        return f"{host}:{port} is free; the built-in broker starts there with the app or `eventdesk run`"
