"""The fleet's JetStream key-value bucket: one nats-py connection (its own reconnect on, over
every server given and those the cluster tells of, so losing one node of a cluster costs a
reconnect, not the leases), the bucket opened or created, a snapshot of every key, and the
writes: compare-and-set for leases, plain puts for heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from eventdesk.clients.nats.connection import connect_options, login_field, show_servers
from eventdesk.clients.nats.errors import connect_error
from eventdesk.core.errors import BrokerError, NotFoundError
from eventdesk.fleet.settings import FleetSettings

log = logging.getLogger(__name__)

OPEN_BUDGET = 30.0  # seconds to keep trying to open the bucket
JS_STREAM_NAME_IN_USE = 10058  # nats-server's JSStreamNameExistErr


class LeaseConflictError(Exception):
    """A compare-and-set lost: the key is not at the revision the writer knew."""


@dataclass(frozen=True)
class Entry:
    key: str
    revision: int
    value: bytes | None  # None: deleted


class FleetBucket:
    """``await open()``, then reads and writes; ``await close()`` once."""

    def __init__(self, settings: FleetSettings, bucket: str, *, timeout: float | None = None) -> None:
        self.settings = settings
        self.bucket = bucket
        # A request must end well before a lease could expire on it.
        self.timeout = timeout if timeout is not None else max(0.5, settings.ttl / 6)
        self.nc: Client | None = None
        self._kv: KeyValue | None = None
        self._refused: asyncio.Future[BrokerError] | None = None  # a login refused while connecting

    @property
    def where(self) -> str:
        return show_servers(list(self.settings.servers))

    async def open(self, *, create: bool) -> None:
        """Connect and open the bucket (creating it when ``create`` and it is missing)."""
        # With its reconnect on for good, nats-py would also retry the first connection for
        # ever: bounded here, so a wrong URL or a server down says so (systemd restarts); a
        # refused login or certificate says so at once (nats-py would retry it too).
        budget = max(5.0, self.settings.ttl / 3)
        refused: asyncio.Future[BrokerError] = asyncio.get_running_loop().create_future()
        self._refused = refused
        connecting = asyncio.ensure_future(self._connect())
        waited: set[asyncio.Future[Any]] = {connecting, refused}
        try:
            await asyncio.wait(waited, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            connecting.cancel()  # the caller's close() closes the client
            raise
        if refused.done() or not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            await self.close()
            if refused.done():
                raise refused.result()
            raise BrokerError(
                f"cannot connect to {self.where}: no server answered within {budget:g} s",
                obj=self.settings.label,
                field=self._field("url"),
            )
        exc = connecting.exception()
        if exc is not None:
            await self.close()
        if isinstance(exc, BrokerError):  # connect_options' own (an unreadable CA or NKey file)
            raise exc
        if exc is not None:
            raise BrokerError(
                f"cannot connect to {self.where}: {type(exc).__name__}: {exc}",
                obj=self.settings.label,
                field=self._field("url"),
            ) from None
        self.nc = connecting.result()
        # A bucket another agent is creating right now, or a cluster still electing its
        # leaders, does not answer at once: try again for a while.
        js = self.nc.jetstream(timeout=self.timeout * 4)
        deadline = asyncio.get_running_loop().time() + OPEN_BUDGET
        while True:
            try:
                self._kv = await self._open_bucket(js, create)
                return
            except (NotFoundError, BrokerError):
                raise
            except Exception as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise BrokerError(
                        f"cannot open the fleet bucket {self.bucket!r}: {type(exc).__name__}: {exc} "
                        f"(for {OPEN_BUDGET:g} s; is JetStream enabled on the servers?)",
                        obj=self.settings.label,
                        field="fleet",
                    ) from None
                log.debug("fleet: opening the bucket: %s: %s; trying again", type(exc).__name__, exc)
                await asyncio.sleep(0.5)

    async def _open_bucket(self, js: JetStreamContext, create: bool) -> KeyValue:
        try:
            return await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            if not create:
                raise NotFoundError(
                    f"no fleet bucket {self.bucket!r} on {self.where}: has an agent of this workspace "
                    "run with --fleet there?",
                    obj=self.settings.label,
                    field="fleet",
                ) from None
        try:
            return await js.create_key_value(
                KeyValueConfig(bucket=self.bucket, history=1, replicas=self.settings.replicas)
            )
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code == JS_STREAM_NAME_IN_USE:  # another agent created it meanwhile
                return await js.key_value(self.bucket)
            raise BrokerError(
                f"cannot create the fleet bucket {self.bucket!r} (replicas {self.settings.replicas}): "
                f"{exc.description or exc}",
                obj=self.settings.label,
                field="fleet-replicas",
            ) from None

    async def _connect(self) -> Client:
        s = self.settings
        options = connect_options(s.endpoint, s.secret, s.label, max(1.0, s.ttl / 3), BrokerError)
        options |= {
            "name": f"eventdesk fleet agent {s.agent}",
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.2,
        }
        self.nc = Client()  # kept at once: a connect cut short is closed by open()
        await self.nc.connect(
            **options,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        return self.nc

    def _field(self, field: str) -> str:
        """The setting a connection error names: the object's (via a broker or datasource),
        or ``--fleet`` itself (URLs)."""
        return field if self.settings.via else "fleet"

    async def _on_error(self, exc: Exception) -> None:
        log.debug("fleet connection: %s", exc)
        refused = self._refused
        if self._kv is None and refused is not None and not refused.done():
            s = self.settings
            error = connect_error(exc, s.label, self.where, BrokerError, login_field(s.endpoint))
            if getattr(error, "terminal", False):  # no retry helps: say so now
                refused.set_result(
                    BrokerError(
                        error.detail, obj=s.label, field=self._field(error.field or "url"), terminal=True
                    )
                )

    async def _on_disconnected(self) -> None:
        if self.nc is not None:  # None: close() is closing it
            log.warning("fleet: disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        url = self.nc.connected_url if self.nc is not None else None
        log.warning(
            "fleet: reconnected to NATS (%s)", f"{url.hostname}:{url.port}" if url is not None else "?"
        )

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("FleetBucket used before open()")
        return self._kv

    async def snapshot(self, prefix: str = "") -> dict[str, Entry]:
        """Every key (under ``prefix``) with its revision and value (None once deleted)."""
        kv = self.kv
        stream = f"KV_{self.bucket}"
        pre = f"$KV.{self.bucket}."
        js = self.nc.jetstream(timeout=self.timeout) if self.nc is not None else None
        assert js is not None
        info = await js.stream_info(stream, subjects_filter=f"{pre}{prefix}>")
        subjects = info.state.subjects or {}
        keys = sorted(s[len(pre) :] for s in subjects if s.startswith(pre))
        entries = await asyncio.gather(*(self._get(kv, key) for key in keys))
        return {e.key: e for e in entries if e is not None}

    async def _get(self, kv: KeyValue, key: str) -> Entry | None:
        try:
            got = await kv.get(key)
        except nats.js.errors.KeyDeletedError as exc:
            return Entry(key, int(exc.entry.revision or 0), None) if exc.entry is not None else None
        except nats.js.errors.KeyNotFoundError:
            return None
        return Entry(key, int(got.revision or 0), got.value)

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` if it is absent or deleted; LeaseConflictError if someone holds a value."""
        try:
            return int(await asyncio.wait_for(self.kv.create(key, value), self.timeout))
        except nats.js.errors.KeyWrongLastSequenceError:
            raise LeaseConflictError(key) from None

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``key`` only if it is still at revision ``last``; LeaseConflictError otherwise."""
        try:
            return int(await asyncio.wait_for(self.kv.update(key, value, last=last), self.timeout))
        except nats.js.errors.KeyWrongLastSequenceError:
            raise LeaseConflictError(key) from None

    async def put(self, key: str, value: bytes) -> int:
        return int(await asyncio.wait_for(self.kv.put(key, value), self.timeout))

    async def delete(self, key: str) -> None:
        await asyncio.wait_for(self.kv.delete(key), self.timeout)

    async def close(self) -> None:
        nc, self.nc, self._kv = self.nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), 2.0)
            with contextlib.suppress(Exception):
                await nc.close()
