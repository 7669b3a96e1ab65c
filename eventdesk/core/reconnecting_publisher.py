"""What the networked broker kinds (``mqtt``, ``nats``) share: a supervisor that connects,
serves the connection until it ends, waits the shared backoff (core/retry_policy.py) and
connects again, until the publisher closes or an error is terminal; how states are logged and
reported; and the one-shot connection test built on the same path.

A kind implements :meth:`ReconnectingPublisher._serve_once` (one connection, start to end) and
the three small hooks of the connection test; the loop and the policy live here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

from eventdesk.core.contracts import Publisher, State, StateChange
from eventdesk.core.errors import BrokerError
from eventdesk.core.retry_policy import Backoff
from eventdesk.core.workspace import BrokerConfig


class ReconnectingPublisher(Publisher):
    """A publisher kept connected by a supervisor task; see the module's doc."""

    # Tunables (instances may override them, e.g. tests shorten the backoff).
    connect_timeout: float = 10.0  # TCP connect and TLS handshake, each
    backoff_initial: float = 0.2  # reconnect delays (core/retry_policy.py's Backoff)
    backoff_max: float = 5.0
    stable_after: float = 5.0  # a connection that lived this long resets the backoff
    test_timeout: ClassVar[float] = 15.0
    log: ClassVar[logging.Logger]  # the kind's own logger, so records name the kind's module

    def __init__(
        self, *, config: BrokerConfig, secret: str | None, on_state: Callable[[StateChange], None]
    ) -> None:
        super().__init__(config=config, secret=secret, on_state=on_state)
        self._label = config.label
        self._retry = True  # False for a one-shot connection test: the first error is final
        self._terminal: BrokerError | None = None

    # -- what a kind provides -------------------------------------------------------------

    @abstractmethod
    async def _serve_once(self, backoff: Backoff) -> BrokerError:
        """Connect once and serve the connection until it ends (calling ``backoff.connected()``
        once it is up); return why it ended. Not called again once the publisher is closing."""

    @abstractmethod
    def _notify(self) -> None:
        """Wake whoever waits for a change of connection (``wait_connected``, ``close``)."""

    @abstractmethod
    def _target(self) -> str:
        """Where the publisher connects, for messages; may raise the configuration's
        BrokerError (the connection test calls it before any network)."""

    @abstractmethod
    def _test_summary(self) -> str:
        """What a successful connection test found (protocol, TLS, user, stream...)."""

    # -- shared ---------------------------------------------------------------------------

    def _set_state(self, state: State, detail: str | None = None, retry_in: float | None = None) -> None:
        # ``detail`` is a BrokerError's text, which already names the broker and the field.
        # A one-shot test_connection() raises its error instead: no need to log it loudly.
        log = self.log
        if state is State.RETRYING:
            log.warning("retrying in %.1f s: %s", retry_in or 0.0, detail)
        elif state is State.ERROR:
            log.log(logging.ERROR if self._retry else logging.DEBUG, "%s", detail)
        else:
            log.log(logging.INFO if self._retry else logging.DEBUG, "%s: %s", self._label, state.value)
        try:
            self.on_state(StateChange(state, detail, retry_in))
        except Exception:
            log.exception("%s: the state callback failed", self._label)

    def _fail(self, error: BrokerError) -> None:
        """Stop for good with ``error`` (``wait_connected`` raises it from now on)."""
        self._terminal = error
        self._set_state(State.ERROR, str(error))
        self._notify()

    def _raise_terminal(self) -> None:
        if self._terminal is not None:
            t = self._terminal
            raise BrokerError(t.detail, obj=t.obj, field=t.field, terminal=t.terminal)

    async def _supervise(self, closing: asyncio.Event) -> None:
        """Serve connections one after the other, with backoff between them, until ``closing``
        is set or an error is terminal (or any error, for a connection test)."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(
            initial=self.backoff_initial,
            cap=self.backoff_max,
            stable_after=self.stable_after,
            clock=loop.time,
        )
        try:
            while not closing.is_set():
                error = await self._serve_once(backoff)
                if closing.is_set():
                    return
                if error.terminal or not self._retry:
                    self._fail(error)
                    return
                delay = backoff.next_delay()  # starts the series over after a stable connection
                self._set_state(State.RETRYING, str(error), delay)
                self._notify()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), delay)
        except Exception as exc:
            self.log.exception("%s: the %s supervisor failed", self._label, self.kind)
            self._fail(BrokerError(f"internal error: {exc!r}", obj=self._label))

    @classmethod
    async def test_connection(cls, config: BrokerConfig, secret: str | None) -> str:
        publisher = cls(config=config, secret=secret, on_state=lambda change: None)
        publisher._retry = False
        target = publisher._target()  # configuration errors surface here, before any network
        await publisher.start()
        try:
            async with asyncio.timeout(cls.test_timeout):
                await publisher.wait_connected()
        except TimeoutError:
            raise BrokerError(
                f"no answer from {target} within {cls.test_timeout:g} s", obj=config.label, field="url"
            ) from None
        finally:
            await publisher.close(1.0)
        return publisher._test_summary()
