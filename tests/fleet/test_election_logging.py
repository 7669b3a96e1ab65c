"""How a fleet agent logs JetStream's "temporarily unavailable" (503, err_code 10008) while the
NATS cluster elects a leader: once per episode, as what it is; other failures keep their words.
Pure logic (eventdesk/fleet/agent.py's Election and turn loop): the bucket is a stand-in that
fails as nats-py does, no NATS here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats.js.errors
import pytest

from eventdesk.fleet.agent import Election, FleetAgent, electing
from eventdesk.fleet.bucket import Entry, FleetBucket
from eventdesk.fleet.settings import FleetSettings

ELECTION = "the bucket is unavailable while NATS elects a leader; retrying every 0.5 s"


def unavailable(err_code: int | None = 10008) -> nats.js.errors.ServiceUnavailableError:
    return nats.js.errors.ServiceUnavailableError(
        code=503, err_code=err_code, description="JetStream system temporarily unavailable"
    )


def fleet_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "eventdesk.fleet.agent"]


def test_only_the_election_code_is_the_election() -> None:
    assert electing(unavailable())
    assert not electing(unavailable(10076))  # JetStream not enabled: a real problem
    assert not electing(unavailable(None))
    assert not electing(RuntimeError("boom"))


def test_an_episode_is_logged_once_when_it_begins_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="eventdesk.fleet.agent")
    election = Election(0.5)
    for _turn in range(20):  # reads, heartbeats and renewals all meet it, turn after turn
        assert election.met(unavailable()) and election.met(unavailable())
        election.turn_done(answered=False)
    election.turn_done(answered=False)  # a turn the bucket did not answer (a timeout): not over
    assert fleet_lines(caplog) == [(logging.WARNING, "fleet: " + ELECTION)]
    election.turn_done(answered=True)
    (level, ended) = fleet_lines(caplog)[-1]
    assert level == logging.INFO and ended.startswith("fleet: the bucket answers again (NATS elected")
    assert election.since is None
    assert not election.met(RuntimeError("boom"))  # not the election: the caller says what it is
    election.met(unavailable())  # a later election is a new episode
    assert [line for _, line in fleet_lines(caplog)].count("fleet: " + ELECTION) == 2


class FlakyBucket(FleetBucket):
    """A bucket whose reads and writes fail with ``failures`` (one each, in order), then work."""

    def __init__(self, settings: FleetSettings, failures: list[Exception], stop: asyncio.Event) -> None:
        super().__init__(settings, "test")
        self.failures = failures
        self.stop = stop
        self.reads = 0

    async def open(self, *, create: bool) -> None:
        pass

    async def close(self) -> None:
        pass

    def _fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    async def snapshot(self, prefix: str = "") -> dict[str, Entry]:
        self.reads += 1
        if self.reads > 40:
            self.stop.set()
        self._fail()
        return {}

    async def put(self, key: str, value: bytes) -> int:
        self._fail()
        return 1

    async def delete(self, key: str) -> None:
        pass


async def run_turns(failures: list[Exception]) -> FlakyBucket:
    settings = FleetSettings(servers=("nats://127.0.0.1:1",), agent="a1", ttl=0.6)
    stop = asyncio.Event()
    bucket = FlakyBucket(settings, failures, stop)
    runtime: Any = None  # no models: the agent never touches its runtime
    await asyncio.wait_for(FleetAgent(runtime, settings, bucket, []).run(stop), 30)
    return bucket


def test_the_agent_says_an_election_once_and_other_failures_as_they_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="eventdesk.fleet.agent")
    asyncio.run(run_turns([unavailable() for _ in range(30)] + [RuntimeError("boom")]))
    lines = fleet_lines(caplog)
    election = "fleet: the bucket is unavailable while NATS elects a leader; retrying every 0.1 s"
    assert [line for _, line in lines].count(election) == 1, lines
    assert not any("ServiceUnavailableError" in line for _, line in lines), lines
    assert any(level == logging.INFO and "answers again" in line for level, line in lines), lines
    genuine = [line for _, line in lines if "boom" in line]
    assert genuine and genuine[0] in (
        "fleet: turn failed: RuntimeError: boom",
        "fleet: heartbeat failed: RuntimeError: boom",
    ), lines
