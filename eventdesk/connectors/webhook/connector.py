"""The webhook connector: one model's path on its datasource's server, committed in batches.

A request is answered only after ``host.deliver`` returned, i.e. after its events and the
checkpoint are committed: a sender that retries on anything else gets at-least-once delivery.
While a batch is being committed, the requests that arrive for the model queue up and are
committed together with the next one (group commit), so the receiver scales with concurrency
instead of paying one SQLite transaction per request. A request that could not be captured
is answered 503 with ``Retry-After`` (send again); a bad or missing signature is 401, and
every rejection is counted in the model's state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from eventdesk.connectors.webhook.access import exposure_problem, signature_problem
from eventdesk.connectors.webhook.body import BodyRules
from eventdesk.connectors.webhook.errors import BadRequestError, port_in_use_error
from eventdesk.connectors.webhook.server import LOGGER_NAME, SERVERS, WebhookServer, json_response
from eventdesk.connectors.webhook.settings import (
    DATASOURCE_SCHEMA,
    MODEL_SCHEMA,
    WebhookDatasourceSettings,
    WebhookModelSettings,
    model_path,
)
from eventdesk.core import ports
from eventdesk.core.contracts import Connector, State, StateChange
from eventdesk.core.envelope import Event
from eventdesk.core.errors import ConfigError, ConnectorError
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import DatasourceConfig, ModelConfig

log = logging.getLogger(LOGGER_NAME)

MAX_BATCH = 5000  # events committed in one transaction
STATE_REFRESH = 1.0  # seconds between state updates that only count rejected requests
RETRY_AFTER = "1"  # seconds a sender whose request was not captured is asked to wait


@dataclass
class _Counts:
    accepted: int = 0
    rejected: Counter[int] = field(default_factory=Counter)


@dataclass
class _Pending:
    events: list[Event]
    done: asyncio.Future[None]


class WebhookConnector(Connector):
    """Receives one model's events on its path and commits them in batches."""

    kind: ClassVar[str] = "webhook"
    datasource_settings: ClassVar[type[WebhookDatasourceSettings]] = WebhookDatasourceSettings
    model_settings: ClassVar[type[WebhookModelSettings]] = WebhookModelSettings
    datasource_schema: ClassVar[Schema] = DATASOURCE_SCHEMA
    model_schema: ClassVar[Schema] = MODEL_SCHEMA

    def __init__(
        self, *, datasource: DatasourceConfig, model: ModelConfig, secret: str | None, host: Any
    ) -> None:
        super().__init__(datasource=datasource, model=model, secret=secret, host=host)
        self.settings = WebhookDatasourceSettings.from_validated(datasource.settings)
        ms = WebhookModelSettings.from_validated(model.settings)
        self.path = model_path(model)
        self.rules = BodyRules(
            datasource=datasource.name,
            model=model.name,
            op_field=ms.op_field or self.settings.op_field,
            op_header=self.settings.op_header,
            key_field=ms.key_field or self.settings.key_field or "id",
        )
        self.counts = _Counts()
        self._pending: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._accepting = False
        self._server: WebhookServer | None = None
        self._state_timer: asyncio.TimerHandle | None = None

    @property
    def url(self) -> str:
        return (self._server.url if self._server else "") + self.path

    async def run(self, since: Any) -> None:
        problem = exposure_problem(self.settings, bool(self.secret))
        if problem:
            raise ConnectorError(problem, obj=self.datasource.label, field="secret", terminal=True)
        self._wake = asyncio.Event()
        server = await SERVERS.acquire(self.datasource, self.settings)
        self._server = server
        try:
            other = server.endpoints.get(self.path)
            if other is not None and other is not self:
                raise ConnectorError(
                    f"path {self.path} is already served by model {other.model.name!r}",
                    obj=self.model.label,
                    field="path",
                    terminal=True,
                )
            server.endpoints[self.path] = self
            self._accepting = True
            self._report_state()
            await self._commit_forever()
        finally:
            self._accepting = False
            if server.endpoints.get(self.path) is self:
                del server.endpoints[self.path]
            if self._state_timer is not None:
                self._state_timer.cancel()
            self._fail_pending()
            await SERVERS.release(server)
            self._server = None

    async def _commit_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch: list[_Pending] = []
                size = 0
                while self._pending and (not batch or size + len(self._pending[0].events) <= MAX_BATCH):
                    item = self._pending.pop(0)
                    batch.append(item)
                    size += len(item.events)
                events = [ev for item in batch for ev in item.events]
                try:
                    await self.host.deliver(events, events[-1].seq)
                except BaseException as exc:
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(
                                exc if isinstance(exc, Exception) else ConnectionAbortedError()
                            )
                    raise
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)
                self.counts.accepted += size

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, []
        for item in pending:
            if not item.done.done():
                item.done.set_exception(ConnectionAbortedError("the model was stopped"))

    def _report_state(self) -> None:
        self._state_timer = None
        rejected = self.counts.rejected
        detail = f"listening on {self.url}"
        if rejected:
            detail += "; rejected " + ", ".join(f"{n} x {status}" for status, n in sorted(rejected.items()))
        self.host.set_state(StateChange(State.RUNNING, detail))

    def _reject(self, status: int, reason: str) -> web.Response:
        self.counts.rejected[status] += 1
        log.warning("%s: %s rejected with %d: %s", self.model.label, self.path, status, reason)
        if self._state_timer is None:
            loop = asyncio.get_running_loop()
            self._state_timer = loop.call_later(STATE_REFRESH, self._report_state)
        return json_response(status, {"error": reason}, close=status in (408, 413))

    async def receive(self, request: web.BaseRequest, server: WebhookServer) -> web.StreamResponse:
        try:
            body = await server.read_body(request)
            if self.secret:
                problem = signature_problem(self.secret, body, request.headers.get(server.signature_header))
                if problem:
                    raise BadRequestError(
                        401,
                        f"{problem} in header {server.signature_header} "
                        "(expected sha256=<HMAC-SHA256 of the body with the shared secret>)",
                    )
            events = self.rules.events(body, request.headers)
        except BadRequestError as exc:
            return self._reject(exc.status, exc.reason)
        if not self._accepting or self._wake is None:
            return json_response(503, {"error": "the model is stopping; send again"})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(events, done))
        self._wake.set()
        try:
            await done
        except Exception as exc:
            log.warning("%s: could not capture a request: %s", self.model.label, exc)
            resp = json_response(503, {"error": "not captured; send again"})
            resp.headers["Retry-After"] = RETRY_AFTER
            return resp
        return json_response(200, {"accepted": len(events), "ids": [ev.id for ev in events]})

    @classmethod
    def check_datasource(cls, datasource: DatasourceConfig, has_secret: bool) -> None:
        problem = exposure_problem(WebhookDatasourceSettings.from_validated(datasource.settings), has_secret)
        if problem:
            raise ConfigError(problem, obj=datasource.label, field="secret")

    @classmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        settings = WebhookDatasourceSettings.load(datasource.settings, datasource.label)
        host, port = settings.host, settings.port
        path = f" {model_path(model)}" if model is not None else ""
        running = SERVERS.get(host, port)
        if running is not None and running.datasource == datasource.name:
            return f"listening on {running.url}{path.strip()}"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_port_free, host, port, datasource.label)
        return f"{host}:{port} is free; the receiver{path} listens there while the model runs"


def check_port_free(host: str, port: int, label: str) -> None:
    """Raise a ConnectorError naming ``port`` (or ``host``) if nothing could listen there now."""
    ports.check_port_free(host, port, label, ConnectorError, port_in_use_error)
