"""Event ids: monotonic ULIDs, also across an increment that carries into the cached part."""

from __future__ import annotations

import re

from eventdesk.core.envelope import _encode, _UlidFactory

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def test_ids_are_unique_sortable_ulids() -> None:
    make = _UlidFactory()
    ids = [make() for _ in range(20_000)]
    assert all(ULID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_an_increment_that_carries_re_encodes_the_cached_characters() -> None:
    make = _UlidFactory()
    make()
    ms = 10**13  # "the future": every call increments within this millisecond
    rand = (12345 << 20) | ((1 << 20) - 3)
    make._last_ms, make._last_rand = ms, rand
    make._prefix = _encode(ms, 10) + _encode(rand >> 20, 12)
    ids = [make() for _ in range(6)]
    expected = [_encode(ms, 10) + _encode(rand + 1 + i, 16) for i in range(6)]
    assert ids == expected  # the third one carried into the top bits
    assert ids == sorted(ids)


def test_ids_in_bulk_continue_the_sequence_across_a_carry() -> None:
    make = _UlidFactory()
    make()
    ms = 10**13
    rand = (777 << 20) | ((1 << 20) - 2)
    make._last_ms, make._last_rand = ms, rand
    make._prefix = _encode(ms, 10) + _encode(rand >> 20, 12)
    ids = [*make.many(4), make()]  # the second bulk id carries into the top bits
    assert ids == [_encode(ms, 10) + _encode(rand + 1 + i, 16) for i in range(5)]


def test_bulk_and_single_ids_interleave_sorted_and_unique() -> None:
    make = _UlidFactory()
    ids: list[str] = []
    for i in range(2000):
        ids += make.many(i % 7) if i % 2 else [make()]
    assert all(ULID.match(i) for i in ids)
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
