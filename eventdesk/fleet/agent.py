"""A fleet agent: runs beside a :class:`~eventdesk.core.runtime.Runtime` and starts or stops the
models whose leases it takes, renews, releases or loses (the rules: fleet/lease.py).

Every ttl/6 it renews what it holds (each renewal, by compare-and-set, also records the model's
resume point and figures: fleet/progress.py) and writes its heartbeat (after a failure, again at
the next read); every min(ttl/6, 0.5 s) it reads the bucket, stops at once any model whose lease another agent now holds,
and takes free or expired leases up to its fair share. A watchdog stops a model as soon as its lease is due to end without a renewal having
succeeded (a paused or cut-off agent must not go on as the owner). On a clean stop it stops its
models, lets their routes drain, records where each resumes and releases the leases. While the
NATS cluster elects a leader the bucket answers "temporarily unavailable": that is said once per
episode (:class:`Election`), not as a failure every turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from eventdesk.clients.nats.errors import JS_CLUSTER_NOT_AVAILABLE
from eventdesk.core import json_codec
from eventdesk.core.errors import EventDeskError
from eventdesk.core.runtime import Runtime
from eventdesk.core.service_metrics import lease_changed
from eventdesk.fleet import progress
from eventdesk.fleet.bucket import Entry, FleetBucket, LeaseConflictError
from eventdesk.fleet.lease import Lease, Observer, plan
from eventdesk.fleet.settings import AGENT_PREFIX, FleetSettings, agent_key, lease_key

log = logging.getLogger(__name__)

WATCHDOG_S = 0.05  # how often held leases are checked against their deadline


def electing(exc: BaseException) -> bool:
    """Whether ``exc`` is JetStream's "temporarily unavailable" (a 503 with err_code 10008): what
    the bucket answers while the NATS cluster elects a leader. Retried; no failure of ours."""
    return getattr(exc, "err_code", None) == JS_CLUSTER_NOT_AVAILABLE


class Election:
    """One episode of the bucket being unavailable while NATS elects a leader: logged once when
    it begins (by whichever read or write meets it first) and once when a whole turn went
    through again, instead of a failure per read, heartbeat and renewal every turn."""

    def __init__(self, retry_every: float) -> None:
        self.retry_every = retry_every
        self.since: float | None = None  # monotonic: when the episode began
        self._met = False  # this turn met it

    def met(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the election's (then it is logged once per episode)."""
        if not electing(exc):
            return False
        self._met = True
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "fleet: the bucket is unavailable while NATS elects a leader; retrying every %g s",
                self.retry_every,
            )
        return True

    def turn_done(self, answered: bool) -> None:
        """End of a turn: one the bucket ``answered`` without meeting the election ends the episode."""
        if self.since is not None and answered and not self._met:
            log.info(
                "fleet: the bucket answers again (NATS elected a leader after %.1f s)",
                time.monotonic() - self.since,
            )
            self.since = None
        self._met = False


@dataclass
class Holding:
    """A lease this agent holds and the model it runs under it."""

    model: str
    revision: int
    deadline: float  # monotonic: stop the model by then unless a renewal succeeded
    taken_at: float  # wall clock, for display
    floor: int = 0  # fleet/progress.py: the route position set when the lease was taken
    resume: dict[str, Any] | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # the last measured, for renewals
    measuring: asyncio.Task[dict[str, Any]] | None = None


class FleetAgent:
    """``await agent.run(stop)`` until ``stop`` is set; the bucket is opened and closed here."""

    def __init__(
        self, runtime: Runtime, settings: FleetSettings, bucket: FleetBucket, models: list[str]
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.bucket = bucket
        self.models = list(models)
        self.me = settings.agent
        self.held: dict[str, Holding] = {}
        self.leases = Observer()
        self.agents = Observer()
        self.started_at = time.time()
        self.lease_changes = 0  # leases taken, released or lost (a counter for metrics)
        self._stopping: dict[str, asyncio.Task[None]] = {}  # models being stopped or released
        self.election = Election(settings.look_every)

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self.bucket.open(create=True)
        watchdog = asyncio.create_task(self._watchdog(), name="fleet:watchdog")
        joined = next_renewal = time.monotonic()
        try:
            while not stop.is_set():
                started = time.monotonic()
                answered = False
                try:
                    if started >= next_renewal:
                        # After a failed renewal, try again at the next read, not a period later.
                        renewed = await self.renew_all()
                        next_renewal = started + (self.settings.renew_every if renewed else 0.0)
                    # Take nothing until every agent starting with this one was heard of, so
                    # the first one up does not take everything.
                    await self.look(settled=started - joined >= self.settings.renew_every)
                    answered = True
                except (TimeoutError, OSError) as exc:
                    log.warning("fleet: the bucket did not answer (%s); retrying", type(exc).__name__)
                except Exception as exc:  # a NATS hiccup must not end the agent
                    if not self.election.met(exc):
                        log.warning("fleet: turn failed: %s: %s", type(exc).__name__, exc)
                self.election.turn_done(answered)
                wait = self.settings.look_every - (time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.02, wait))
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await self.release_all()
            with contextlib.suppress(Exception):
                await self.bucket.delete(agent_key(self.me))
            await self.bucket.close()

    async def renew_all(self) -> bool:
        """Every ttl/6: the heartbeat and every lease this agent holds, at once (the heartbeat
        is sent first, so others never see this agent's heartbeat outlive its leases: when it
        dies, its share is spread as soon as its leases expire). Whether all went through."""
        results = await asyncio.gather(self._heartbeat(), *(self._renew(name) for name in list(self.held)))
        return all(results)

    async def look(self, *, settled: bool = True) -> None:
        """Read the bucket: stop what another agent holds now, then (once ``settled``) take
        or release leases as the rules say. Done more often than renewals, so an expired lease
        is noticed soon after its TTL."""
        snapshot = await self.bucket.snapshot()
        now = time.monotonic()
        self._observe(snapshot, now)
        for name, holding in list(self.held.items()):
            entry = snapshot.get(lease_key(name))
            if entry is not None and entry.revision != holding.revision:
                self.lose(name, "another agent holds its lease now")
        if not settled:
            return
        now = time.monotonic()
        holders = {m: self.leases.holder(lease_key(m), now) for m in self.models}
        alive = {
            seen.holder for key, seen in self.agents.seen.items() if self.agents.holder(key, now) is not None
        }
        todo = plan(self.models, self.held, self.me, holders, alive)
        for name in todo.release:
            self._spawn(name, self.release(name))
        for name in todo.take:
            await self.take(name, snapshot.get(lease_key(name)))

    def _observe(self, snapshot: dict[str, Entry], now: float) -> None:
        self.leases.keep_only(k for k in snapshot if not k.startswith(AGENT_PREFIX))
        self.agents.keep_only(k for k in snapshot if k.startswith(AGENT_PREFIX))
        for key, entry in snapshot.items():
            if key.startswith(AGENT_PREFIX):
                beat = _decode_beat(entry.value)
                holder = str(beat.get("agent") or "") if beat else ""
                ttl = float(beat.get("ttl") or 0.0) if beat else 0.0
                self.agents.observe(key, entry.revision, holder, ttl, now)
            else:
                lease = Lease.decode(entry.value)
                holder, ttl = (lease.agent, lease.ttl) if lease is not None else ("", 0.0)
                self.leases.observe(key, entry.revision, holder, ttl, now)

    async def _heartbeat(self) -> bool:
        """Write this agent's heartbeat (a failure is logged: it must not stop the renewals)."""
        beat = {
            "agent": self.me,
            "ttl": self.settings.ttl,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "at": time.time(),
            "models": sorted(self.held),
        }
        try:
            await self.bucket.put(agent_key(self.me), json_codec.dumps(beat))
        except Exception as exc:
            if not self.election.met(exc):
                log.warning("fleet: heartbeat failed: %s: %s", type(exc).__name__, exc)
            return False
        return True

    # -- one lease ----------------------------------------------------------------------------
    def _lease(self, holding: Holding, agent: str, figures: dict[str, Any]) -> bytes:
        return Lease(
            agent=agent,
            ttl=self.settings.ttl,
            taken_at=holding.taken_at,
            renewed_at=time.time(),
            resume=holding.resume,
            progress=figures,
        ).encode()

    async def _measure(self, holding: Holding) -> dict[str, Any]:
        ws = self.runtime.workspace
        found = await self.runtime.db(
            progress.measure, self.runtime.capture, ws, holding.model, holding.floor, holding.resume
        )
        holding.resume = found.resume
        figures = dict(found.figures)
        figures["state"] = self.runtime.state_of(f"model/{holding.model}").state.value
        connector = self.runtime.connector_of(holding.model)
        lag = connector.source_lag() if connector is not None else None
        if lag is not None and connector is not None:
            figures["source_lag"] = {"value": lag, "unit": connector.source_lag_unit}
        return figures

    async def _figures(self, holding: Holding) -> dict[str, Any]:
        """The model's figures for a renewal: measured now, or the last ones if the capture
        thread is too busy to answer within TTL/6 (a renewal must not wait on it)."""
        if holding.measuring is None or holding.measuring.done():
            holding.measuring = asyncio.ensure_future(self._measure(holding))
        with contextlib.suppress(TimeoutError):
            holding.figures = await asyncio.wait_for(asyncio.shield(holding.measuring), self.settings.margin)
        return holding.figures

    async def _renew(self, name: str) -> bool:
        """Renew ``name``'s lease; False when the bucket did not take it (to try again soon)."""
        holding = self.held.get(name)
        if holding is None:
            return True
        figures = await self._figures(holding)
        sent = time.monotonic()
        try:
            revision = await self.bucket.update(
                lease_key(name), self._lease(holding, self.me, figures), holding.revision
            )
        except LeaseConflictError:
            self.lose(name, "its lease changed hands")
            return True
        except Exception as exc:  # the watchdog stops the model if this goes on too long
            if not self.election.met(exc):
                log.warning(
                    "fleet: renewing the lease of model %r failed: %s: %s", name, type(exc).__name__, exc
                )
            return False
        if self.held.get(name) is holding:
            holding.revision = revision
            holding.deadline = sent + self.settings.ttl - self.settings.margin
        return True

    async def take(self, name: str, entry: Entry | None) -> None:
        """Take ``name``'s free or expired lease by compare-and-set, then start it from the
        fleet's resume point."""
        if name in self._stopping:
            return  # it ran here before and is still stopping: next turn
        previous = Lease.decode(entry.value) if entry is not None else None
        holding = Holding(name, 0, 0.0, time.time(), resume=previous.resume if previous else None)
        figures = dict(previous.progress) if previous else {}
        figures["state"] = "starting"
        value = self._lease(holding, self.me, figures)
        sent = time.monotonic()
        try:
            if entry is None:
                revision = await self.bucket.create(lease_key(name), value)
            else:
                revision = await self.bucket.update(lease_key(name), value, entry.revision)
        except LeaseConflictError:
            return  # another agent was quicker
        holding.revision = revision
        holding.deadline = sent + self.settings.ttl - self.settings.margin
        self.held[name] = holding
        self._lease_changed(name, "acquired")
        log.info("fleet: took model %r (resume %s)", name, _show(holding.resume))
        print(f"fleet: took model {name!r}", flush=True)
        ws = self.runtime.workspace
        try:
            holding.floor = await self.runtime.db(
                progress.prepare, self.runtime.capture, ws, name, holding.resume
            )
            if self.held.get(name) is holding:
                await self.runtime.start_model(name)
                await self._renew(name)  # at once: its state for fleet status, the lease confirmed
        except EventDeskError as exc:
            # It cannot run here (a secret missing on this host, say): let another agent try.
            print(f"fleet: model {name!r} cannot start here: {exc.describe()}", flush=True)
            await self.release(name)
        except Exception:
            log.exception("fleet: model %r failed to start", name)
            await self.release(name)

    def _lease_changed(self, name: str, change: str) -> None:
        self.lease_changes += 1
        lease_changed(name, change)  # the run's Prometheus counter (core/service_metrics.py)

    def lose(self, name: str, why: str) -> None:
        """Stop ``name`` at once: its lease is, or may be, someone else's now."""
        if self.held.pop(name, None) is None:
            return
        self._lease_changed(name, "lost")
        print(f"fleet: lost model {name!r} ({why}); stopping it", flush=True)
        self._spawn(name, self._stop_model(name))

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run a model's stop or release beside the turns (they must go on renewing the others)."""
        task = asyncio.get_running_loop().create_task(work, name=f"fleet:{name}")
        self._stopping[name] = task
        task.add_done_callback(
            lambda t: self._stopping.pop(name, None) if self._stopping.get(name) is t else None
        )

    async def _stop_model(self, name: str) -> None:
        """Stop ``name``'s routes (nothing more is sent; what is in flight may still be
        acknowledged) and its connector."""
        routes = [r.name for r in self.runtime.workspace.routes_of_model(name)]
        await asyncio.gather(*(self.runtime.stop_route(r) for r in routes), self.runtime.stop_model(name))

    async def release(self, name: str) -> None:
        """Hand ``name`` back cleanly: stop its connector, let its routes drain, record where it
        resumes and free the lease (by compare-and-set: if it changed hands meanwhile, nothing
        is written)."""
        holding = self.held.pop(name, None)
        if holding is None:
            return
        self._lease_changed(name, "released")
        await self.runtime.stop_model(name)
        await asyncio.gather(
            *(self.runtime.stop_route(r.name) for r in self.runtime.workspace.routes_of_model(name))
        )
        figures = await self._measure(holding)
        figures["state"] = "released"
        try:
            await self.bucket.update(lease_key(name), self._lease(holding, "", figures), holding.revision)
            print(f"fleet: released model {name!r}", flush=True)
        except LeaseConflictError:
            print(f"fleet: model {name!r} had changed hands before its release", flush=True)
        except Exception as exc:
            log.warning("fleet: releasing model %r failed (it expires instead): %s", name, exc)

    async def release_all(self) -> None:
        """On a clean stop: every connector first (no new events), then each model's routes
        drain and its lease is released."""
        names = list(self.held)
        await asyncio.gather(*(self.runtime.stop_model(n) for n in names))
        await asyncio.gather(*(self.release(n) for n in names))
        for task in list(self._stopping.values()):
            with contextlib.suppress(Exception):
                await task

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_S)
            now = time.monotonic()
            for name, holding in list(self.held.items()):
                if now >= holding.deadline:
                    self.lose(name, "its lease could not be renewed in time")


def _decode_beat(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        beat = json_codec.loads(raw)
    except ValueError:
        return None
    return beat if isinstance(beat, dict) else None


def _show(resume: dict[str, Any] | None) -> str:
    if resume is None:
        return "from the model's own start"
    return f"after seq {resume.get('seq')!r}"
