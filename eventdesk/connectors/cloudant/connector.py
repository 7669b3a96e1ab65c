"""The Cloudant/CouchDB source kind: :class:`CloudantConnector`, the class the runtime runs.

It declares the kind's settings and the knobs of its feed reader, starts a
:class:`~.feed.FeedRun` per ``run``, and answers the app's questions that need the server:
is it reachable (:meth:`~CloudantConnector.test_connection`), which databases does it hold
(:meth:`~CloudantConnector.list_databases`).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from eventdesk.connectors.cloudant.errors import classify
from eventdesk.connectors.cloudant.feed import FeedRun, FeedTuning
from eventdesk.connectors.cloudant.settings import (
    DATASOURCE_SCHEMA,
    MODEL_SCHEMA,
    CloudantDatasourceSettings,
    CloudantModelSettings,
)
from eventdesk.connectors.cloudant.transport import make_service
from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.errors import ConnectorError
from eventdesk.core.object_configs import DatasourceConfig, ModelConfig
from eventdesk.core.settings_schema import Schema, redact_url


class CloudantConnector(Connector):
    """Follows the ``_changes`` feed of one database: backlog in pages, then continuous.

    It drives the SDK's HTTP calls itself instead of using ChangesFollower, whose
    ``start_one_off()`` never ends against pouchdb-server and whose ``stop()`` can block for
    a whole long poll: a continuous stream read in a worker thread gives the lowest latency,
    and shutting its socket down stops it at once.
    """

    kind: ClassVar[str] = "cloudant"
    datasource_settings: ClassVar[type[CloudantDatasourceSettings]] = CloudantDatasourceSettings
    model_settings: ClassVar[type[CloudantModelSettings]] = CloudantModelSettings
    datasource_schema: ClassVar[Schema] = DATASOURCE_SCHEMA
    model_schema: ClassVar[Schema] = MODEL_SCHEMA
    source_field: ClassVar[str | None] = "database"

    HEARTBEAT_MS: ClassVar[int] = 5000
    """The server sends an empty line this often; silence for twice as long is a dead link."""
    BACKOFF_START: ClassVar[float] = 0.2
    """The first retry's delay (the series of :class:`~eventdesk.core.retry_policy.Backoff`)..."""
    BACKOFF_CAP: ClassVar[float] = 10.0
    """...doubling up to this (a server's Retry-After may ask for longer)..."""
    STABLE_AFTER_S: ClassVar[float] = 1.0
    """...and starting over after a feed that stayed open this long."""
    STOP_TIMEOUT: ClassVar[float] = 0.8
    """How long a cancelled run waits for its worker thread (on top of a delivery in flight)."""
    MAX_LINE_BYTES: ClassVar[int] = 64 * 1024 * 1024
    """A change longer than this is skipped (and reported) rather than held in memory..."""
    MAX_PAGE_BYTES: ClassVar[int] = 64 * 1024 * 1024
    """...and a page of the backlog is cut here: its complete changes are taken."""
    BUSY_GAP_S: ClassVar[float] = 0.002
    """A read of the continuous feed that waited less than this means changes stream in..."""
    COALESCE_S: ClassVar[float] = 0.001
    """...and the reader then lets this long pass before the next read (see ReadPacer)..."""
    LINGER_S: ClassVar[float] = 0.010
    """...or this long, while they arrive at LINGER_RATE changes/s or more."""
    LINGER_RATE: ClassVar[float] = 2000.0

    @classmethod
    def feed_tuning(cls) -> FeedTuning:
        """The reader's knobs, as this class (or a subclass) sets them."""
        return FeedTuning(
            heartbeat_ms=cls.HEARTBEAT_MS,
            backoff_start=cls.BACKOFF_START,
            backoff_cap=cls.BACKOFF_CAP,
            stable_after=cls.STABLE_AFTER_S,
            stop_timeout=cls.STOP_TIMEOUT,
            max_line_bytes=cls.MAX_LINE_BYTES,
            max_page_bytes=cls.MAX_PAGE_BYTES,
            busy_gap=cls.BUSY_GAP_S,
            coalesce=cls.COALESCE_S,
            linger=cls.LINGER_S,
            linger_rate=cls.LINGER_RATE,
        )

    async def run(self, since: Any) -> None:
        loop = asyncio.get_running_loop()
        self.host.set_state(StateChange(State.CONNECTING))
        feed = FeedRun(self, self.feed_tuning(), since, loop)
        feed.thread.start()
        try:
            await feed.wait_done()
        finally:
            await feed.stop()

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        """Ask for the server's (and the database's) info; raise ConnectorError if that fails."""
        return await asyncio.to_thread(_check_connection, datasource, secret, model)

    @classmethod
    async def list_sources(cls, datasource: DatasourceConfig, secret: str | None) -> list[str]:
        return await cls.list_databases(datasource, secret)

    @classmethod
    async def list_databases(cls, datasource: DatasourceConfig, secret: str | None) -> list[str]:
        """The names of the datasource's databases (``GET /_all_dbs``), sorted, for the model
        dialog to offer; raise ConnectorError as :meth:`test_connection` does (CouchDB 3
        lists them only to an admin: a refusal names the datasource's credentials)."""
        return await asyncio.to_thread(_list_databases, datasource, secret)


def _check_connection(datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None) -> str:
    """The blocking half of :meth:`CloudantConnector.test_connection`."""
    settings = CloudantDatasourceSettings.from_validated(datasource.settings)
    service = make_service(datasource, secret, read_timeout=settings.timeout)
    try:
        try:
            info = service.get_server_information().get_result()
        except Exception as exc:
            raise classify(exc, datasource, None, secret) from None
        if not isinstance(info, dict) or "version" not in info:
            raise ConnectorError(
                f"{redact_url(settings.url)} does not answer like a CouchDB server",
                obj=datasource.label,
                field="url",
                terminal=True,
            )
        summary = f"CouchDB-compatible server {info['version']}"
        vendor = info.get("vendor")
        if isinstance(vendor, dict) and vendor.get("name"):
            summary += f" ({vendor['name']})"
        if model is not None:
            database = CloudantModelSettings.from_validated(model.settings).database
            try:
                db_info = service.get_database_information(db=database).get_result()
            except Exception as exc:
                raise classify(exc, datasource, model, secret) from None
            count = db_info.get("doc_count", "?") if isinstance(db_info, dict) else "?"
            summary += f", database {database!r} with {count} document{'' if count == 1 else 's'}"
        elif settings.auth != "none":
            try:  # GET / needs no credentials on CouchDB: ask who we are
                session = service.get_session_information().get_result()
            except Exception as exc:
                raise classify(exc, datasource, None, secret) from None
            user = (session.get("userCtx") or {}).get("name") if isinstance(session, dict) else None
            if user:
                summary += f", signed in as {user!r}"
        return summary
    finally:
        service.get_http_client().close()


def _list_databases(datasource: DatasourceConfig, secret: str | None) -> list[str]:
    """The blocking half of :meth:`CloudantConnector.list_databases`."""
    settings = CloudantDatasourceSettings.from_validated(datasource.settings)
    service = make_service(datasource, secret, read_timeout=settings.timeout)
    try:
        try:
            names = service.get_all_dbs().get_result()
        except Exception as exc:
            raise classify(exc, datasource, None, secret) from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConnectorError(
                f"{redact_url(settings.url)} does not list its databases like a CouchDB server",
                obj=datasource.label,
                field="url",
                terminal=True,
            )
        return sorted(names)
    finally:
        service.get_http_client().close()
