"""The ``postgres`` connector: follows one table through logical replication.

``run`` starts a worker thread (``eventdesk-postgres-<model>``) that connects, checks the
server and the table, makes sure the model's publication and replication slot exist (names
from settings.py's :func:`object_names`, shown in the state's detail) and reads the stream
(replication.py) until cancelled. Connection failures and server restarts are retried with
:class:`~eventdesk.core.retry_policy.Backoff` from the last committed checkpoint; what cannot
get better by waiting (wrong password, wal_level, missing table or primary key, a slot
dropped behind EventDesk's back) ends the run with an error naming the object and field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, ClassVar, TypeVar

from eventdesk.connectors.postgres import errors, leftovers, replication, server
from eventdesk.connectors.postgres.changes import ChangeBuilder
from eventdesk.connectors.postgres.pgoutput import format_lsn, parse_lsn
from eventdesk.connectors.postgres.settings import (
    DATASOURCE_SCHEMA,
    MODEL_SCHEMA,
    PostgresDatasourceSettings,
    PostgresModelSettings,
    object_names,
)
from eventdesk.connectors.postgres.snapshot import copy_snapshot
from eventdesk.core.contracts import Connector, LeftOnServer, State, StateChange
from eventdesk.core.envelope import Event
from eventdesk.core.errors import ConfigError, ConnectorError
from eventdesk.core.object_configs import DatasourceConfig, ModelConfig
from eventdesk.core.quantities import amount_text
from eventdesk.core.retry_policy import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")


def target_of(datasource: DatasourceConfig, model: ModelConfig) -> server.Target:
    ds = PostgresDatasourceSettings.from_validated(datasource.settings)
    ms = PostgresModelSettings.from_validated(model.settings)
    schema, table = ms.qualified(model.name)
    return server.Target(
        datasource=datasource.label,
        model=model.label,
        where=ds.where,
        schema=schema,
        table=table,
        names=object_names(datasource.workspace_id, datasource.name, model.name, schema, table),
        row_filter=ms.row_filter,
    )


class PostgresConnector(Connector):
    kind: ClassVar[str] = "postgres"
    datasource_settings = PostgresDatasourceSettings
    model_settings = PostgresModelSettings
    datasource_schema = DATASOURCE_SCHEMA
    model_schema = MODEL_SCHEMA
    source_field = "table"
    source_lag_unit = "bytes of WAL"

    STOP_TIMEOUT: ClassVar[float] = 0.8
    """How long a cancelled run waits for its worker thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = PostgresDatasourceSettings.from_validated(self.datasource.settings)
        self.model_cfg = PostgresModelSettings.from_validated(self.model.settings)
        self.target = target_of(self.datasource, self.model)
        self._stop = threading.Event()
        self.backoff = Backoff()
        # The last checkpoint the capture committed in this run: a new session resumes there.
        self.committed: str | None = None
        self.lag: int | None = None  # bytes of WAL the slot holds back, as the session last said

    def source_lag(self) -> float | None:
        return None if self.lag is None else float(self.lag)

    def _lagging(self, loop: asyncio.AbstractEventLoop, detail: str, lag: int) -> None:
        """[reader thread] The slot's lag changed: kept for :meth:`source_lag`, shown in the state."""
        self.lag = lag
        self._state(
            loop, StateChange(State.RUNNING, f"{detail}, lag {amount_text(lag, self.source_lag_unit)}")
        )

    async def run(self, since: Any) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.host.set_state(StateChange(State.CONNECTING))

        def finish(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def work() -> None:
            error: BaseException | None = None
            try:
                self._follow(loop, since)
            except replication.StopRequestedError:
                pass
            except BaseException as exc:  # reported on the loop, where run() raises it
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(finish, error)

        thread = threading.Thread(target=work, name=f"eventdesk-postgres-{self.model.name}", daemon=True)
        thread.start()
        try:
            await done
        finally:
            self._stop.set()
            await asyncio.to_thread(thread.join, self.STOP_TIMEOUT)

    # -- worker thread ---------------------------------------------------------------------------
    def _state(self, loop: asyncio.AbstractEventLoop, change: StateChange) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.host.set_state, change)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> Any:
        def deliver(events: list[Event], checkpoint: Any) -> Future[None]:
            if self._stop.is_set():  # a run stopped: nothing more from this thread, ever
                raise replication.StopRequestedError
            return asyncio.run_coroutine_threadsafe(self.host.deliver(events, checkpoint), loop)

        return deliver

    def _follow(self, loop: asyncio.AbstractEventLoop, since: Any) -> None:
        """Sessions, one after the other, with backoff between failed ones."""
        # A checkpoint is an LSN ("16/B374D848"); "0" is also what the pages of an unfinished
        # --since 0 copy leave: the copy starts over.
        checkpoint: str | None = since if isinstance(since, str) and "/" in since else None
        first_since = "0" if since in ("0", 0) else "now"
        while not self._stop.is_set():
            try:
                checkpoint = self._session(loop, checkpoint, first_since)
                return
            except replication.StopRequestedError:
                raise
            except BaseException as exc:
                err = errors.classify(
                    exc,
                    datasource=self.target.datasource,
                    model=self.target.model,
                    secret=self.secret,
                    where=self.target.where,
                )
                if err.terminal:
                    raise err from None
                delay = self.backoff.next_delay()
                log.info("%s: %s; retrying in %.1f s", self.target.model, err.detail, delay)
                self._state(loop, StateChange(State.RETRYING, err.describe(), retry_in=delay))
                if self._stop.wait(delay):
                    raise replication.StopRequestedError from None
            checkpoint = self.committed or checkpoint

    def _session(
        self, loop: asyncio.AbstractEventLoop, checkpoint: str | None, first_since: str
    ) -> str | None:
        target = self.target
        args = self.settings.connect_args(self.secret)
        plain = server.connect(args)
        try:
            info = server.inspect(plain, target)
            was = server.publication_covers(plain, target)
            if was is not None and was != server.covers(target):
                self._replace_objects(loop, plain, was)
                checkpoint = None  # the old slot's positions mean nothing to the new one
            slot = server.slot_position(plain, target.names.slot)
            server.check_can_create(plain, target, slot_exists=slot is not None)
            created = server.ensure_publication(plain, target)
            if created and slot is None and checkpoint is not None:
                # Neither existed: if a slot of this model for another table is there, the
                # model's table was edited since its checkpoint (the names derive from it), which
                # belongs to that slot. (With none, the slot was dropped: the error below.)
                leftovers = server.other_slots(plain, target)
                if leftovers:
                    self._table_edited(loop, leftovers)
                    checkpoint = None
        finally:
            plain.close()
        if slot is not None and checkpoint is None and first_since == "0":
            # A copy that did not finish: its snapshot is gone with the connection that
            # exported it; a new slot exports a new one.
            plain = server.connect(args)
            try:
                server.drop_slot(plain, target.names.slot)
            finally:
                plain.close()
            log.info("%s: dropped the slot of an unfinished copy", target.model)
            slot = None
        if slot is None and checkpoint is not None:
            raise ConnectorError(
                f"the replication slot {target.names.slot} no longer exists (dropped outside "
                "EventDesk): changes may have been missed. Remove and add the model again to "
                "start over",
                obj=target.model,
                terminal=True,
            )
        conn = server.connect(args, replication=True)
        try:
            builder = ChangeBuilder(
                datasource=self.datasource.name,
                model=self.model.name,
                schema=target.schema,
                table=target.table,
                primary_key=info.primary_key,
            )
            start_lsn = parse_lsn(checkpoint) if checkpoint else 0
            if slot is None:
                start_lsn = self._create_slot(loop, conn, args, info, builder, first_since)
                checkpoint = format_lsn(start_lsn) if start_lsn else checkpoint
            session = replication.ReplicationSession(
                target=target,
                info=info,
                builder=builder,
                deliver=self._deliver(loop),
                stop=self._stop,
                batch_size=self.model_cfg.batch_size,
                checkpoint=checkpoint or slot or "",  # the slot's confirmed position, if no other
            )
            session.on_delivered = self._committed
            detail = f"slot {target.names.slot}, publication {target.names.publication}"
            self._state(loop, StateChange(State.RUNNING, detail))
            session.on_lag = lambda lag: self._lagging(loop, detail, lag)
            self.backoff.connected()
            try:
                session.run(conn, start_lsn)
            finally:
                self.backoff.lost()
                session.drain(0.5)
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return session.checkpoint

    def _replace_objects(self, loop: asyncio.AbstractEventLoop, conn: Any, was: str) -> None:
        """The model's table or row filter was edited: its slot and publication, made for what
        it followed before, are dropped (a slot left behind would hold WAL on the server's disk)
        and made anew; the model follows its new table from now on (its rows already there are
        not copied: remove and add the model with ``--since 0`` for that)."""
        target = self.target
        server.drop_objects(conn, target)
        note = (
            f"now {server.covers(target)}, was {was}: replaced slot {target.names.slot} and its publication"
        )
        log.warning("%s: %s", target.model, note)
        self._state(loop, StateChange(State.CONNECTING, note))
        self.committed = None

    def _table_edited(self, loop: asyncio.AbstractEventLoop, leftovers: list[str]) -> None:
        """Follow the edited model's new table from now on, and name the slots the previous
        table left: they hold WAL until dropped, and are not dropped here, since one may also
        be a slot kept on purpose when a model of this name was removed (``remove`` without
        ``--drop-slot``)."""
        target = self.target
        note = (
            f"the model now follows {target.schema}.{target.table}: new slot {target.names.slot}, "
            f"from now on; the previous table's slot is {' or '.join(leftovers)}, which keeps WAL "
            "on the server until dropped (SELECT pg_drop_replication_slot('...'))"
        )
        log.warning("%s: %s", target.model, note)
        self._state(loop, StateChange(State.CONNECTING, note))
        self.committed = None

    def _committed(self, lsn: str) -> None:
        self.committed = lsn

    def _create_slot(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Any,
        args: dict[str, Any],
        info: server.TableInfo,
        builder: ChangeBuilder,
        first_since: str,
    ) -> int:
        """Create the slot; with ``since 0``, copy the table from the snapshot it exports first.
        Returns the LSN the stream starts from."""
        target = self.target
        with conn.cursor() as cur:
            cur.execute(
                f'CREATE_REPLICATION_SLOT "{target.names.slot}" LOGICAL pgoutput'
                + (" EXPORT_SNAPSHOT" if first_since == "0" else " NOEXPORT_SNAPSHOT")
            )
            _name, consistent_point, snapshot_name, _plugin = cur.fetchone()
        log.info("%s: created replication slot %s at %s", target.model, target.names.slot, consistent_point)
        if first_since == "0" and snapshot_name:
            self._state(loop, StateChange(State.RUNNING, f"copying {target.schema}.{target.table}"))
            copy_snapshot(
                args=args,
                target=target,
                snapshot=str(snapshot_name),
                lsn=str(consistent_point),
                builder=builder,
                deliver=self._deliver(loop),
                stop=self._stop,
                page_size=self.model_cfg.batch_size,
                progress=lambda text: self._state(loop, StateChange(State.RUNNING, text)),
            )
            # Every page is committed (copy_snapshot waits for them): a later session streams on
            # from the consistent point rather than copying again.
            self.committed = str(consistent_point)
        return parse_lsn(str(consistent_point))

    # -- checks ------------------------------------------------------------------------------------
    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        """Connect, check wal_level (and the model's table and primary key); a summary or a
        ConnectorError naming what is missing."""
        return await asyncio.to_thread(_check_connection, datasource, secret, model)

    @classmethod
    async def list_tables(cls, datasource: DatasourceConfig, secret: str | None) -> list[str]:
        """``schema.table`` of every table the user can see outside the system schemas (for the
        model dialog to offer), each marked `` (no primary key)`` where it has none."""
        return await asyncio.to_thread(_list_tables, datasource, secret)

    @classmethod
    async def list_sources(cls, datasource: DatasourceConfig, secret: str | None) -> list[str]:
        return await cls.list_tables(datasource, secret)

    @classmethod
    def held_on_server(cls, datasource: DatasourceConfig, model: ModelConfig) -> str | None:
        names = target_of(datasource, model).names
        return f"replication slot {names.slot} and publication {names.publication} (the slot holds WAL)"

    @classmethod
    async def release_model(cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig) -> str:
        return await cls.drop_replication_objects(datasource, secret, model)

    @classmethod
    async def drop_replication_objects(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig
    ) -> str:
        """Drop the model's replication slot and publication (for removing a model with
        ``--drop-slot``: an abandoned slot keeps WAL on the server's disk); a summary."""
        return await asyncio.to_thread(_drop_objects, datasource, secret, model)

    @classmethod
    async def left_on_server(
        cls,
        datasource: DatasourceConfig,
        secret: str | None,
        models: Sequence[tuple[DatasourceConfig, ModelConfig]],
    ) -> list[LeftOnServer]:
        """The ``eventdesk_`` slots of the datasource's database (leftovers.py): each model's
        slot is matched by the names it derives, those of any datasource of the workspace (two
        datasources may name one database)."""
        followed = {target_of(ds, m).names.slot: m.name for ds, m in models if ds.kind == cls.kind}
        ws = datasource.workspace_id
        return await asyncio.to_thread(
            _on_server, datasource, secret, lambda conn: leftovers.list_left(conn, ws, followed)
        )

    @classmethod
    async def drop_left(cls, datasource: DatasourceConfig, secret: str | None, entry: LeftOnServer) -> str:
        dropped = await asyncio.to_thread(
            _on_server, datasource, secret, lambda conn: server.drop_named(conn, entry.name, entry.name)
        )
        return (
            "dropped " + " and ".join(dropped) if dropped else f"{entry.name} was not there: nothing to drop"
        )

    @classmethod
    def check_datasource(cls, datasource: DatasourceConfig, has_secret: bool) -> None:
        settings = PostgresDatasourceSettings.from_validated(datasource.settings)
        if settings.ca_file and settings.sslmode in ("disable", "allow", "prefer"):
            raise ConfigError(
                f"a CA file is only used with sslmode verify-ca or verify-full (sslmode is {settings.sslmode})",
                obj=datasource.label,
                field="sslmode",
            )


def _check_connection(datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None) -> str:
    settings = PostgresDatasourceSettings.from_validated(datasource.settings)
    where = settings.where
    try:
        conn = server.connect(settings.connect_args(secret))
    except Exception as exc:
        raise errors.classify(
            exc, datasource=datasource.label, model=None, secret=secret, where=where
        ) from None
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT current_setting('server_version'), current_setting('wal_level'), "
                "r.rolreplication OR r.rolsuper FROM pg_roles r WHERE r.rolname = current_user"
            )
            version, wal_level, may_replicate = cur.fetchone()
        if wal_level != "logical":
            raise ConnectorError(
                f"the server's wal_level is {wal_level!r}, not 'logical': set wal_level = logical in "
                "postgresql.conf and restart the server",
                obj=datasource.label,
                terminal=True,
            )
        if not may_replicate:
            raise ConnectorError(
                "the user has no REPLICATION privilege: ALTER ROLE ... REPLICATION, or use another user",
                obj=datasource.label,
                field="url",
                terminal=True,
            )
        summary = f"PostgreSQL {version} at {where}, wal_level logical"
        if model is not None:
            target = target_of(datasource, model)
            info = server.inspect(conn, target)
            slot = server.slot_position(conn, target.names.slot)
            was = server.publication_covers(conn, target)
            if was is not None and was != server.covers(target):  # the model was edited
                slot_state = f"made for {was}, will be replaced"
                slot = None
            else:
                slot_state = "exists" if slot is not None else "will be created"
            server.check_can_create(conn, target, slot_exists=slot is not None)
            key = ", ".join(info.primary_key) or "REPLICA IDENTITY FULL"
            summary += (
                f"; table {target.schema}.{target.table} (key: {key}); "
                f"slot {target.names.slot} {slot_state}, publication {target.names.publication}"
            )
        return summary
    except ConnectorError:
        raise
    except Exception as exc:
        raise errors.classify(
            exc,
            datasource=datasource.label,
            model=model.label if model else None,
            secret=secret,
            where=where,
        ) from None
    finally:
        conn.close()


def _drop_objects(datasource: DatasourceConfig, secret: str | None, model: ModelConfig) -> str:
    settings = PostgresDatasourceSettings.from_validated(datasource.settings)
    target = target_of(datasource, model)
    try:
        conn = server.connect(settings.connect_args(secret))
        try:
            dropped = server.drop_objects(conn, target)
        finally:
            conn.close()
    except Exception as exc:
        raise errors.classify(
            exc, datasource=datasource.label, model=model.label, secret=secret, where=settings.where
        ) from None
    return "dropped " + " and ".join(dropped) if dropped else "nothing to drop"


def _list_tables(datasource: DatasourceConfig, secret: str | None) -> list[str]:
    return _on_server(datasource, secret, server.list_tables)


def _on_server(datasource: DatasourceConfig, secret: str | None, work: Callable[[Any], T]) -> T:
    """``work(connection)`` on one connection to the datasource; its failure named (never the
    secret)."""
    settings = PostgresDatasourceSettings.from_validated(datasource.settings)
    try:
        conn = server.connect(settings.connect_args(secret))
        try:
            return work(conn)
        finally:
            conn.close()
    except Exception as exc:
        raise errors.classify(
            exc, datasource=datasource.label, model=None, secret=secret, where=settings.where
        ) from None
