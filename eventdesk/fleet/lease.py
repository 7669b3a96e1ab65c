"""The lease rules of a fleet, as pure logic (no I/O, no clock of its own: ``now`` is given).

Each model has one lease key in the fleet bucket whose value names its holder (an agent id, or
"" once released) and the lease's TTL. It is written only by compare-and-set on its revision, so
two agents never both win the same revision. Nobody trusts another host's clock: an observer
calls a lease expired when its revision has not changed for ``ttl`` seconds *of the observer's
own monotonic clock* since it first saw that revision; the holder renews every ttl/6 and stops
the model itself ``margin`` before ttl has passed since it *sent* its last successful renewal
(others can only have seen that renewal later), so a holder cut off from the bucket stops before
anybody may take its model over.

Agents announce themselves the same way with a heartbeat key. Each agent takes free or expired
leases up to its fair share, ceil(models / live agents), and releases what it holds above it
when another live agent holds less (so a fleet evens out after an agent joins).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eventdesk.core import json_codec


@dataclass(frozen=True)
class Lease:
    """A lease key's value. ``agent`` "" means free. ``resume``: where the model resumes (the
    source position of the last event every route of it had published, with that event's key
    and rev); ``progress``: figures for ``fleet status``. Times are the writer's wall clock
    (seconds since the epoch), for display only: expiry never reads them."""

    agent: str
    ttl: float
    taken_at: float = 0.0
    renewed_at: float = 0.0
    resume: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json_codec.dumps(
            {
                "agent": self.agent,
                "ttl": self.ttl,
                "taken_at": self.taken_at,
                "renewed_at": self.renewed_at,
                "resume": self.resume,
                "progress": self.progress,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> Lease | None:
        """The lease in ``raw``; None for no value or one that is not a lease (a deleted key,
        something written by hand): such a key counts as free."""
        if not raw:
            return None
        try:
            data = json_codec.loads(raw)
            if not isinstance(data, dict):
                return None
            resume = data.get("resume")
            progress = data.get("progress")
            return cls(
                agent=str(data.get("agent") or ""),
                ttl=float(data.get("ttl") or 0.0),
                taken_at=float(data.get("taken_at") or 0.0),
                renewed_at=float(data.get("renewed_at") or 0.0),
                resume=resume if isinstance(resume, dict) else None,
                progress=progress if isinstance(progress, dict) else {},
            )
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Seen:
    """What an observer saw of one key: its revision, the holder and TTL it names, and when (its
    monotonic clock) it first saw that revision."""

    revision: int
    holder: str
    ttl: float
    since: float


class Observer:
    """Keys' revisions as one agent saw them, to tell who holds what now."""

    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}

    def observe(self, key: str, revision: int, holder: str, ttl: float, now: float) -> None:
        """Note ``key`` at ``revision``; a new revision restarts its clock."""
        old = self.seen.get(key)
        if old is None or old.revision != revision:
            self.seen[key] = Seen(revision, holder, ttl, now)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget the keys no longer in the bucket."""
        present = set(keys)
        for key in list(self.seen):
            if key not in present:
                del self.seen[key]

    def holder(self, key: str, now: float) -> str | None:
        """Who holds ``key`` now: None when it is absent, free, or unchanged for its TTL."""
        seen = self.seen.get(key)
        if seen is None or not seen.holder or now - seen.since >= seen.ttl:
            return None
        return seen.holder

    def revision(self, key: str) -> int | None:
        seen = self.seen.get(key)
        return None if seen is None else seen.revision


def fair_share(models: int, agents: int) -> int:
    """The most models one agent takes: ceil(models / agents)."""
    return math.ceil(models / max(1, agents))


def _rank(agent: str, model: str) -> bytes:
    """A per-agent order of the models, so agents starting together try different ones first."""
    return hashlib.blake2b(f"{agent}\x00{model}".encode(), digest_size=8).digest()


@dataclass(frozen=True)
class Plan:
    take: tuple[str, ...]
    release: tuple[str, ...]


def plan(
    models: Iterable[str],
    held: Iterable[str],
    me: str,
    holders: Mapping[str, str | None],
    alive: Iterable[str],
) -> Plan:
    """What agent ``me`` does this turn.

    ``models``: the workspace's models (those the fleet runs); ``held``: those ``me`` runs now;
    ``holders``: each model's current holder as :meth:`Observer.holder` says (None: free or
    expired); ``alive``: the agents whose heartbeat is live (``me`` counts in any case).
    """
    names = sorted(set(models))
    mine = set(held) & set(names)
    agents = set(alive) | {me}
    share = fair_share(len(names), len(agents))
    counts = dict.fromkeys(agents, 0)
    for name in names:
        owner = me if name in mine else holders.get(name)
        if owner in counts:
            counts[owner] += 1
    free = [n for n in names if n not in mine and holders.get(n) is None]
    room = max(0, share - len(mine))
    take = tuple(sorted(free, key=lambda n: _rank(me, n))[:room])
    release: tuple[str, ...] = ()
    if len(mine) > share and any(c < share for a, c in counts.items() if a != me):
        release = tuple(sorted(mine, key=lambda n: _rank(me, n), reverse=True)[: len(mine) - share])
    return Plan(take=take, release=release)
