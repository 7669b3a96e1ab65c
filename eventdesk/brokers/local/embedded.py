"""The built-in MQTT broker itself: amqtt on a thread and event loop of its own, shared by port.

amqtt (a maintained pure-Python asyncio broker installed with EventDesk) runs on its own
thread and loop, not on the app's: its per-message work is Python, and under load it would
otherwise compete with the GUI for the one loop. Brokers are shared by (host, port) and
refcounted (:class:`EmbeddedBrokers`), so a connection test or a second publisher never starts
a second broker on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from importlib.metadata import version
from typing import Any

from eventdesk.brokers.local.errors import check_port_free, is_addr_in_use, port_in_use_error
from eventdesk.core.errors import BrokerError

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def amqtt_version() -> str:
    try:
        return version("amqtt")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "?"


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
            if is_addr_in_use(error):
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
