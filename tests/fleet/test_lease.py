"""The lease rules as pure logic (eventdesk/fleet/lease.py), and the fleet's names and options
(eventdesk/fleet/settings.py): no NATS here, the bucket is a dict with revisions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventdesk.core.errors import ConfigError
from eventdesk.fleet.lease import Lease, Observer, fair_share, plan
from eventdesk.fleet.settings import FleetSettings, bucket_name, escape_token, lease_key, unescape_token


def test_a_new_revision_restarts_the_observers_clock() -> None:
    seen = Observer()
    seen.observe("lease.m", 1, "a1", 3.0, now=100.0)
    assert seen.holder("lease.m", 102.9) == "a1"
    seen.observe("lease.m", 1, "a1", 3.0, now=102.9)  # the same revision again: no renewal
    assert seen.holder("lease.m", 103.0) is None  # unchanged for its TTL: expired
    seen.observe("lease.m", 2, "a1", 3.0, now=103.5)  # renewed
    assert seen.holder("lease.m", 106.4) == "a1"
    assert seen.holder("lease.m", 106.5) is None


def test_a_released_or_unknown_lease_has_no_holder() -> None:
    seen = Observer()
    seen.observe("lease.m", 5, "", 3.0, now=0.0)
    assert seen.holder("lease.m", 0.0) is None
    assert seen.holder("lease.other", 0.0) is None
    seen.keep_only([])
    assert seen.revision("lease.m") is None


@given(
    sent=st.floats(0, 1e6),
    seen_after=st.floats(0, 10),
    ttl=st.floats(1, 120),
)
def test_a_holder_stops_before_any_observer_may_take_over(sent: float, seen_after: float, ttl: float) -> None:
    """The holder's deadline (renewal sent + TTL - margin) comes before the moment an observer
    that saw the renewal (at or after it was sent) calls the lease expired."""
    s = FleetSettings(servers=("nats://x:4222",), agent="a", ttl=ttl)
    deadline = sent + s.ttl - s.margin
    seen = Observer()
    seen.observe("lease.m", 7, "a", ttl, now=sent + seen_after)
    assert seen.holder("lease.m", deadline) == "a"


@pytest.mark.parametrize(
    ("models", "agents", "share"), [(12, 3, 4), (12, 2, 6), (12, 5, 3), (1, 3, 1), (0, 2, 0)]
)
def test_fair_share_is_the_ceiling(models: int, agents: int, share: int) -> None:
    assert fair_share(models, agents) == share


def test_an_agent_takes_free_leases_up_to_its_share_and_releases_above_it() -> None:
    models = [f"m{i}" for i in range(6)]
    first = plan(models, [], "a1", dict.fromkeys(models), {"a1", "a2"})
    assert len(first.take) == 3 and not first.release
    # a1 holds all six (it started alone); a2 joined and holds nothing: a1 gives three back.
    holders = dict.fromkeys(models, "a1")
    crowded = plan(models, models, "a1", holders, {"a1", "a2"})
    assert len(crowded.release) == 3 and not crowded.take
    # Alone, it keeps them.
    assert plan(models, models, "a1", holders, {"a1"}).release == ()
    # a2 holds two, a3 four: a3 gives one back to even out at three each ...
    holders = {m: ("a2" if i < 2 else "a3") for i, m in enumerate(models)}
    third = plan(models, models[2:], "a3", holders, {"a2", "a3"})
    assert len(third.release) == 1 and set(third.release) <= set(models[2:]) and not third.take
    assert third == plan(models, models[2:], "a3", holders, {"a2", "a3"})  # deterministic
    # ... and with a1 alive too, two (share two, a1 holds none).
    assert len(plan(models, models[2:], "a3", holders, {"a1", "a2", "a3"}).release) == 2
    # Five models, a2 holds two, a3 three (the ceiling): nothing moves, nothing is free.
    five = models[:5]
    holders = {m: ("a2" if i < 2 else "a3") for i, m in enumerate(five)}
    assert plan(five, five[2:], "a3", holders, {"a2", "a3"}).release == ()
    assert plan(five, five[:2], "a2", holders, {"a2", "a3"}).take == ()


class Bucket:
    """A key-value bucket with compare-and-set, as JetStream's."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[int, str]] = {}  # key -> (revision, holder)
        self.seq = 0

    def cas(self, key: str, holder: str, last: int | None) -> bool:
        current = self.values.get(key)
        if (current[0] if current else None) != last:
            return False
        self.seq += 1
        self.values[key] = (self.seq, holder)
        return True


@settings(max_examples=60, deadline=None)
@given(
    models=st.integers(0, 20),
    agents=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_agents_acting_on_stale_reads_never_share_a_model_and_even_out(
    models: int, agents: int, seed: int
) -> None:
    """Every turn, each agent reads the bucket, then all act in a random order on what they
    read (so most reads are stale by then): a take or release is a compare-and-set on the
    revision read. No model is ever run by two agents, and the fleet ends with every model
    held and nobody above its fair share."""
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(models)]
    ids = [f"a{i}" for i in range(agents)]
    bucket = Bucket()
    held: dict[str, set[str]] = {a: set() for a in ids}
    for _turn in range(4 * models + 8):
        reads = {a: dict(bucket.values) for a in ids}
        for agent in rng.sample(ids, len(ids)):
            read = reads[agent]
            holders = {m: (read[lease_key(m)][1] or None) if lease_key(m) in read else None for m in names}
            todo = plan(names, held[agent], agent, holders, set(ids))
            for m in todo.release:
                if bucket.cas(lease_key(m), "", read[lease_key(m)][0]):
                    held[agent].discard(m)
            for m in todo.take:
                last = read[lease_key(m)][0] if lease_key(m) in read else None
                if bucket.cas(lease_key(m), agent, last):
                    held[agent].add(m)
            # A holder whose lease changed hands would see it at its next renewal and stop;
            # here nobody expires, so a holder's lease never changes under it.
            for m in held[agent]:
                assert bucket.values[lease_key(m)][1] == agent
        running = [m for a in ids for m in held[a]]
        assert len(running) == len(set(running)), "a model ran on two agents"
    share = fair_share(models, agents)
    assert sorted(m for a in ids for m in held[a]) == sorted(names)
    assert all(len(h) <= share for h in held.values()), {a: len(h) for a, h in held.items()}


def test_a_lease_survives_its_encoding_and_garbage_is_free() -> None:
    lease = Lease(
        "a1", 3.0, 1.5, 2.5, {"seq": "12-abc", "key": "k", "rev": "1-x"}, {"routes": {"r": {"backlog": 0}}}
    )
    assert Lease.decode(lease.encode()) == lease
    for raw in (None, b"", b"not json", b"[1, 2]", b'{"ttl": "soon"}'):
        assert Lease.decode(raw) is None


@given(st.text(min_size=1, max_size=30))
def test_any_model_name_is_one_key_token_and_comes_back(name: str) -> None:
    token = escape_token(name)
    assert all(ch.isascii() and (ch.isalnum() or ch in "-_=") for ch in token)
    assert unescape_token(token) == name


def test_bucket_names_and_bad_options() -> None:
    assert bucket_name("a8e93ad7") == "eventdesk-a8e93ad7"
    ok = FleetSettings.parse("nats://h1:4222, nats://h2:4222", "a1", 9.0, 3)
    assert ok.servers == ("nats://h1:4222", "nats://h2:4222") and ok.renew_every == 1.5
    for url, ttl, replicas, field in (
        ("", 9.0, 1, "fleet"),
        ("http://h:1", 9.0, 1, "fleet"),
        ("nats://h:1", 0.2, 1, "lease-ttl"),
        ("nats://h:1", 9.0, 7, "fleet-replicas"),
    ):
        with pytest.raises(ConfigError) as err:
            FleetSettings.parse(url, "a1", ttl, replicas)
        assert err.value.field == field
