"""The ``nats`` connector: follows a JetStream stream (or, live only, a core NATS subject).

``run`` works on the loop (nats-py is asyncio): it connects as the broker kind does
(clients/nats/connection.py), makes sure the model's durable pull consumer starts right after
the checkpoint (consumer.py), then fetches batches, hands each to ``host.deliver`` and acks it
(ack policy *all*: the batch's last message) only once the capture committed it. The
checkpoint is the stream sequence of the last message captured. A dropped connection or a
server restart is retried with :class:`~eventdesk.core.retry_policy.Backoff` from the last
commit; a missing stream, a refused password, a permission the account lacks end the run with
an error naming the object and field. A core NATS subject has no past and no acks: what is
published while the model is not running is missed. A model whose consumer is not durable reads
the stream through an ephemeral ordered consumer (nothing acked, nothing left on the server once
it stops): live from the start of each run, resumed after a reconnect within the run from the
last sequence captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar, TypeVar

import nats.errors
import nats.js.api
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from eventdesk.clients.nats.connection import open_connection, where
from eventdesk.connectors.nats import errors, leftovers
from eventdesk.connectors.nats.consumer import ConsumerPlan, delete_consumer, prepare_consumer
from eventdesk.connectors.nats.messages import MessageDecoder
from eventdesk.connectors.nats.settings import (
    DATASOURCE_SCHEMA,
    MODEL_SCHEMA,
    NatsDatasourceSettings,
    NatsModelSettings,
)
from eventdesk.core.contracts import Connector, LeftOnServer, State, StateChange
from eventdesk.core.errors import ConnectorError
from eventdesk.core.log_repeats import throttle
from eventdesk.core.object_configs import DatasourceConfig, ModelConfig
from eventdesk.core.retry_policy import Backoff

log = logging.getLogger(__name__)
throttle(__name__)  # a slow consumer is reported per dropped message: once per 10 s, counted

T = TypeVar("T")
FETCH_WAIT = 1.0  # seconds a fetch waits for a first message (cancellation stays prompt)
IDLE_CHECK = 5.0  # seconds without messages after which the consumer is looked up (still there?)
DETAIL_EVERY = 2.0  # seconds between updates of the state's detail (its pending count)


class ConnectionLostError(Exception):
    """The connection closed under a session."""


class NatsConnector(Connector):
    kind: ClassVar[str] = "nats"
    datasource_settings = NatsDatasourceSettings
    model_settings = NatsModelSettings
    datasource_schema = DATASOURCE_SCHEMA
    model_schema = MODEL_SCHEMA
    source_field = "stream"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = NatsDatasourceSettings.from_validated(self.datasource.settings)
        self.model_cfg = NatsModelSettings.from_validated(self.model.settings)
        self.where = where(self.settings)
        self.backoff = Backoff()
        self.decoder = MessageDecoder(
            datasource=self.datasource.name,
            model=self.model.name,
            stream=self.model_cfg.stream,
            settings=self.model_cfg,
        )
        self.plan = ConsumerPlan.of(self.datasource, self.model, self.model_cfg)
        self.committed: int | None = None  # the last stream sequence the capture committed
        self.pending: int | None = None  # messages of the stream not fetched yet (source lag)
        self._ended: asyncio.Future[ConnectorError | None] | None = None

    source_lag_unit = "messages"

    def source_lag(self) -> float | None:
        return None if self.pending is None else float(self.pending)

    async def run(self, since: Any) -> None:
        _check_model(self.model_cfg, self.model.label)
        if isinstance(since, int) and not isinstance(since, bool):
            self.committed = since
        first = "0" if since in ("0", 0) and self.committed is None else "now"
        self.host.set_state(StateChange(State.CONNECTING))
        while True:
            try:
                await self._session(first)
            except ConnectorError as err:
                if err.terminal:
                    raise
                await self._retry(err)
            except (ConnectionLostError, OSError, nats.errors.Error) as exc:
                await self._retry(
                    ConnectorError(
                        f"{self.where}: {str(exc) or type(exc).__name__}", obj=self.datasource.label
                    )
                )

    async def _retry(self, err: ConnectorError) -> None:
        delay = self.backoff.next_delay()
        log.info("%s: %s; retrying in %.1f s", self.model.label, err.detail, delay)
        self.host.set_state(StateChange(State.RETRYING, err.describe(), retry_in=delay))
        await asyncio.sleep(delay)

    # -- one connection --------------------------------------------------------------------------
    async def _connect(self) -> Client:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[ConnectorError | None] = loop.create_future()
        self._ended = ended

        async def closed() -> None:
            if not ended.done():
                ended.set_result(None)

        return await open_connection(
            self.settings,
            self.secret,
            self.datasource.label,
            self.settings.connect_timeout,
            ConnectorError,
            error_cb=self._on_error,
            closed_cb=closed,
            disconnected_cb=closed,
        )

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            log.warning("%s: messages of %s dropped: the capture could not keep up (core NATS is live only)",
                        self.model.label, exc.subject)  # fmt: skip
            return
        subject = errors.permission_denied(str(exc))
        ended = self._ended
        if subject is None or ended is None or ended.done():
            log.debug("%s: %s", self.model.label, exc)
            return
        field = "core_subject" if self.model_cfg.core_subject else "stream"
        ended.set_result(errors.permission_error(subject, self.model.label, field))

    async def _until_ended(self, step: Awaitable[T]) -> T:
        """``step``'s result, unless the connection ends (or is refused a permission) first."""
        ended = self._ended
        assert ended is not None
        task = asyncio.ensure_future(step)
        waited: set[asyncio.Future[Any]] = {task, ended}
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.done() and not task.cancelled() and (not ended.done() or task.exception() is None):
            return task.result()
        failure = ended.result()
        if failure is not None:
            raise failure
        raise ConnectionLostError("the connection closed")

    async def _session(self, first: str) -> None:
        nc = await self._connect()
        try:
            if self.model_cfg.core_subject:
                await self._follow_core(nc)
            elif not self.model_cfg.durable:
                await self._follow_ordered(nc, first)
            else:
                await self._follow_stream(nc, first)
        finally:
            # A closing nats-py client can wait on a dead transport: bounded.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)

    async def _follow_stream(self, nc: Client, first: str) -> None:
        js = nc.jetstream()
        plan = self.plan
        summary = await self._until_ended(prepare_consumer(js, plan, self.committed, first, self.where))
        try:
            sub = await self._until_ended(js.pull_subscribe_bind(durable=plan.name, stream=plan.stream))
        except nats.errors.Error as exc:
            raise errors.stream_error(exc, plan.model, plan.stream, self.where) from None
        detail = (
            f"stream {plan.stream}"
            + (f" ({plan.subject})" if plan.subject else "")
            + f", consumer {plan.name}"
        )
        log.info("%s: %s", self.model.label, summary)
        self.host.set_state(StateChange(State.RUNNING, detail))
        self.backoff.connected()
        clock = asyncio.get_running_loop().time
        shown = checked = clock()
        while True:
            try:
                msgs: list[Msg] = await self._until_ended(
                    sub.fetch(self.model_cfg.batch_size, timeout=FETCH_WAIT)
                )
            except nats.errors.TimeoutError:
                if clock() - checked >= IDLE_CHECK:
                    # A pull on a deleted consumer (or stream) only times out: look.
                    await self._check_consumer(js)
                    checked = clock()
                continue
            await self._capture(msgs)
            now = asyncio.get_running_loop().time()
            if now - shown >= DETAIL_EVERY:
                shown = now
                self.host.set_state(StateChange(State.RUNNING, f"{detail}, {self.pending} pending"))

    async def _check_consumer(self, js: JetStreamContext) -> None:
        plan = self.plan
        try:
            info = await self._until_ended(js.consumer_info(plan.stream, plan.name))
        except nats.js.errors.NotFoundError:
            raise ConnectorError(
                f"the consumer {plan.name} of stream {plan.stream!r} was deleted", obj=plan.model
            ) from None
        self.pending = info.num_pending

    async def _capture(self, msgs: list[Msg]) -> None:
        """Capture a fetched batch, then ack it (its last message: ack policy all)."""
        events = []
        last = self.committed or 0
        for msg in msgs:
            meta = msg.metadata
            seq = meta.sequence.stream
            self.pending = meta.num_pending
            if seq <= last:
                continue  # delivered again: captured already
            events.append(self.decoder.event(msg.subject, msg.data, msg.headers, seq))
            last = seq
        if events:
            await self.host.deliver(events, last)
            self.committed = last
        await msgs[-1].ack()

    async def _follow_core(self, nc: Client) -> None:
        subject = self.model_cfg.core_subject
        queue = self._live_queue()
        await nc.subscribe(subject, cb=queue.put)
        await self._until_ended(nc.flush())
        self.host.set_state(StateChange(State.RUNNING, f"core NATS subject {subject} (live only)"))
        self.backoff.connected()
        while True:
            batch = await self._live_batch(queue)
            events = [self.decoder.event(m.subject, m.data, m.headers, None) for m in batch]
            await self.host.deliver(events, None)  # no position to resume from: no checkpoint

    async def _follow_ordered(self, nc: Client, first: str) -> None:
        """The stream through an ephemeral ordered consumer (nats-py re-creates it on a gap): from
        the message after the last one captured in this run, else new ones (or all: since 0)."""
        plan = self.plan
        if self.committed is not None:
            policy, start = nats.js.api.DeliverPolicy.BY_START_SEQUENCE, self.committed + 1
        else:
            policy = nats.js.api.DeliverPolicy.ALL if first == "0" else nats.js.api.DeliverPolicy.NEW
            start = None
        queue = self._live_queue()
        config = nats.js.api.ConsumerConfig(description=plan.description, opt_start_seq=start)
        try:
            await self._until_ended(
                nc.jetstream().subscribe(
                    plan.subject,
                    stream=plan.stream,
                    cb=queue.put,
                    ordered_consumer=True,
                    deliver_policy=policy,
                    config=config,
                )
            )
        except nats.errors.Error as exc:
            raise errors.stream_error(exc, plan.model, plan.stream, self.where) from None
        filtered = f" ({plan.subject})" if plan.subject else ""
        self.host.set_state(
            StateChange(State.RUNNING, f"stream {plan.stream}{filtered}, ephemeral ordered consumer (live)")
        )
        self.backoff.connected()
        while True:
            batch = await self._live_batch(queue)
            events = []
            for msg in batch:
                meta = msg.metadata
                seq = meta.sequence.stream
                self.pending = meta.num_pending
                if self.committed is None or seq > self.committed:
                    events.append(self.decoder.event(msg.subject, msg.data, msg.headers, seq))
                    self.committed = seq
            if events:
                # Nothing to resume from once the run ends (the consumer goes with it): no checkpoint.
                await self.host.deliver(events, None)

    def _live_queue(self) -> asyncio.Queue[Msg]:
        # Bounded: a capture slower than the subject leaves messages in nats-py's own pending
        # queue, which drops them beyond its limits (a slow consumer, logged; an ordered consumer
        # then starts again after the gap).
        return asyncio.Queue(maxsize=2 * self.model_cfg.batch_size)

    async def _live_batch(self, queue: asyncio.Queue[Msg]) -> list[Msg]:
        """The next batch: waits for one message, then takes what else is there (up to a batch)."""
        batch = [await self._until_ended(queue.get())]
        while not queue.empty() and len(batch) < self.model_cfg.batch_size:
            batch.append(queue.get_nowait())
        return batch

    # -- checks ------------------------------------------------------------------------------------
    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        settings = NatsDatasourceSettings.from_validated(datasource.settings)
        nc = await _connect_once(settings, secret, datasource.label)
        try:
            summary = f"NATS at {where(settings)}"
            if not nc.is_connected:
                raise ConnectorError("the connection closed", obj=datasource.label, field="url")
            if model is None:
                return summary + (", JetStream on" if await _has_jetstream(nc) else ", no JetStream")
            cfg = NatsModelSettings.from_validated(model.settings)
            _check_model(cfg, model.label)
            if cfg.core_subject:
                return summary + f"; core NATS subject {cfg.core_subject} (live only)"
            js = nc.jetstream()
            try:
                info = await js.stream_info(cfg.stream)
            except Exception as exc:
                raise errors.stream_error(exc, model.label, cfg.stream, where(settings)) from None
            plan = ConsumerPlan.of(datasource, model, cfg)
            held = "an ephemeral ordered consumer while the model runs (live, nothing kept)"
            try:
                if cfg.durable:
                    consumer = await js.consumer_info(plan.stream, plan.name)
                    held = f"consumer {plan.name} ({consumer.num_pending} messages not captured yet)"
            except nats.js.errors.NotFoundError:
                held = f"consumer {plan.name} (not made yet: made when the model starts)"
            except Exception as exc:
                raise errors.stream_error(exc, model.label, cfg.stream, where(settings)) from None
            return summary + (
                f"; stream {cfg.stream!r} ({', '.join(info.config.subjects or [])}): "
                f"{info.state.messages} messages, sequences {info.state.first_seq}-{info.state.last_seq}; "
                + held
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)

    @classmethod
    def held_on_server(cls, datasource: DatasourceConfig, model: ModelConfig) -> str | None:
        cfg = NatsModelSettings.from_validated(model.settings)
        if cfg.core_subject or not cfg.stream or not cfg.durable:
            return None  # core NATS and ephemeral consumers keep nothing on the server
        plan = ConsumerPlan.of(datasource, model, cfg)
        return (
            f"JetStream consumer {plan.name} on stream {plan.stream!r} (on a work-queue or "
            "interest stream it keeps messages until deleted)"
        )

    @classmethod
    async def release_model(cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig) -> str:
        """Delete the model's durable consumer (``eventdesk remove ... --drop-slot``); a summary."""
        if cls.held_on_server(datasource, model) is None:
            return "nothing to drop (core NATS and ephemeral consumers keep nothing on the server)"
        settings = NatsDatasourceSettings.from_validated(datasource.settings)
        cfg = NatsModelSettings.from_validated(model.settings)
        nc = await _connect_once(settings, secret, datasource.label)
        try:
            return await delete_consumer(
                nc.jetstream(), ConsumerPlan.of(datasource, model, cfg), where(settings)
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)

    @classmethod
    async def left_on_server(
        cls,
        datasource: DatasourceConfig,
        secret: str | None,
        models: Sequence[tuple[DatasourceConfig, ModelConfig]],
    ) -> list[LeftOnServer]:
        """The durable consumers EventDesk named on the account's streams (leftovers.py)."""
        followed = {}
        for ds, model in models:
            if ds.kind == cls.kind and cls.held_on_server(ds, model) is not None:
                plan = ConsumerPlan.of(ds, model, NatsModelSettings.from_validated(model.settings))
                followed[(plan.stream, plan.name)] = model.name
        settings = NatsDatasourceSettings.from_validated(datasource.settings)
        nc = await _connect_once(settings, secret, datasource.label)
        try:
            return await leftovers.list_left(nc.jetstream(), datasource.workspace_id, followed)
        except Exception as exc:
            raise errors.stream_error(exc, datasource.label, "*", where(settings)) from None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)

    @classmethod
    async def drop_left(cls, datasource: DatasourceConfig, secret: str | None, entry: LeftOnServer) -> str:
        settings = NatsDatasourceSettings.from_validated(datasource.settings)
        plan = ConsumerPlan(entry.container, entry.name, "", datasource.label, "")
        nc = await _connect_once(settings, secret, datasource.label)
        try:
            return await delete_consumer(nc.jetstream(), plan, where(settings))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)

    @classmethod
    async def list_sources(cls, datasource: DatasourceConfig, secret: str | None) -> list[str]:
        """The JetStream streams the account sees."""
        settings = NatsDatasourceSettings.from_validated(datasource.settings)
        nc = await _connect_once(settings, secret, datasource.label)
        try:
            streams = await nc.jetstream().streams_info()
        except Exception as exc:
            raise errors.stream_error(exc, datasource.label, "*", where(settings)) from None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)
        return sorted(s.config.name for s in streams if s.config.name)


def _check_model(cfg: NatsModelSettings, label: str) -> None:
    if cfg.missing:
        raise ConnectorError(cfg.missing, obj=label, field="stream", terminal=True)


async def _connect_once(settings: NatsDatasourceSettings, secret: str | None, label: str) -> Client:
    return await open_connection(settings, secret, label, settings.connect_timeout, ConnectorError)


async def _has_jetstream(nc: Client) -> bool:
    try:
        await nc.jetstream().account_info()
    except Exception:
        return False
    return True
