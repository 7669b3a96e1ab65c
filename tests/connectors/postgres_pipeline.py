"""An in-process pipeline for the postgres tests: a home with a ``postgres`` datasource and one
model on a table, the real :class:`Runtime` as the connector's host, and what it captured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventdesk.connectors.postgres.settings import ObjectNames, object_names
from eventdesk.core import json_codec
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from eventdesk.core.runtime import Runtime
from tests.peers.postgres_server import PostgresServer


class Pipeline:
    """``await start()``, write to the table, ``await wait_events(n)``, ``await close()``."""

    def __init__(
        self,
        home_dir: Path,
        pg: PostgresServer,
        table: str,
        *,
        model: str = "m",
        since: str = "now",
        url: str | None = None,
        secret: str | None = None,
        **model_settings: Any,
    ) -> None:
        self.home = Home.open(str(home_dir))
        self.home.add_datasource(
            "pg", "postgres", {"url": url or pg.url, "sslmode": "disable"}, secret=secret
        )
        self.home.add_model(model, "pg", {"table": table, "since": since, **model_settings})
        self.model = model
        self.runtime = Runtime(self.home.workspace, self.home.capture)

    def names(self, table: str, model: str | None = None) -> ObjectNames:
        """The slot and publication of a model of this home on ``public.<table>``."""
        return object_names(self.home.workspace.workspace_id, "pg", model or self.model, "public", table)

    async def start(self, timeout: float = 30.0) -> None:
        await self.runtime.start_model(self.model)
        await self.wait_state(State.RUNNING, timeout)

    async def wait_state(self, state: State, timeout: float = 30.0, model: str | None = None) -> str | None:
        key = f"model/{model or self.model}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            change = self.runtime.state_of(key)
            if change.state is state and (state is not State.RUNNING or "slot" in (change.detail or "")):
                return change.detail
            if change.state is State.ERROR and state is not State.ERROR:
                raise AssertionError(f"model failed: {change.detail}")
            await asyncio.sleep(0.02)
        raise AssertionError(f"model not {state} after {timeout} s: {self.runtime.state_of(key)}")

    def events(self, model: str | None = None) -> list[dict[str, Any]]:
        rows = self.home.capture.read_after(model or self.model, 0, 10**9)
        return [json_codec.loads(raw) for _, raw in rows]

    async def wait_events(
        self,
        count: int,
        timeout: float = 30.0,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            # Count first (cheap): parsing every event on each look would slow the capture.
            if self.home.capture.count(model or self.model) >= count:
                found = [e for e in self.events(model) if where(e)]
                if len(found) >= count:
                    return found
            if time.monotonic() > deadline:
                found = [e for e in self.events(model) if where(e)]
                raise AssertionError(f"{len(found)} of {count} events after {timeout} s: {found[-3:]}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.runtime.aclose()
        self.home.close()
