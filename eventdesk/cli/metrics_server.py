"""``eventdesk run --metrics-port [HOST:]PORT``: an HTTP server on the loop (aiohttp) serving the
runner's Prometheus metrics at ``/metrics`` and its health at ``/healthz`` (200 healthy, 503
unhealthy, a JSON body saying why), both from core/service_metrics.py. It listens on
127.0.0.1 unless a host is given (``0.0.0.0:9464`` for a Prometheus on another host).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from aiohttp import web

from eventdesk.cli.json_logs import parse_listen
from eventdesk.core import json_codec
from eventdesk.core.errors import ConfigError
from eventdesk.core.runtime import Runtime
from eventdesk.core.service_metrics import CONTENT_TYPE, ServiceMetrics

log = logging.getLogger(__name__)


class MetricsServer:
    """Serves one runtime's metrics and health until :meth:`close`."""

    def __init__(self, runtime: Runtime, models: Callable[[], Collection[str]], listen: str) -> None:
        self.host, self.port = parse_listen(listen)
        self.metrics = ServiceMetrics(runtime, models)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; call it before the runtime starts (the routes' published counts start here)."""
        await self.metrics.refresh()
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                obj="run",
                field="metrics-port",
            ) from None
        self._runner = runner
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.host, self.port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.metrics.close()

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.metrics.refresh()
        return web.Response(body=self.metrics.scrape(), headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, request: web.Request) -> web.Response:
        health = self.metrics.health()
        return web.Response(
            body=json_codec.dumps(health.to_json()),
            status=200 if health.healthy else 503,
            content_type="application/json",
        )
