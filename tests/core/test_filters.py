"""EventFilter: text, models, ops and JMESPath expressions over envelopes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jmespath.functions import Functions

from eventdesk.core.capture import CapturedEvent
from eventdesk.core.filters import EventFilter, FilterError, filter_events, is_truthy


def envelope(**over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": "01J",
        "received_at": "2026-11-29T10:00:00.123Z",
        "datasource": "cloudant-prod",
        "model": "accounts",
        "op": "updated",
        "key": "acc-1",
        "rev": "2-b",
        "seq": "12-abc",
        "payload": {"region": "Bangalore", "owner": {"name": "Ärger Ltd"}, "count": 0},
        "source": {"connector": "cloudant"},
    }
    env.update(over)
    return env


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(payload=json_values, key=st.text(max_size=20), op=st.sampled_from(["created", "updated", "deleted"]))
def test_empty_filter_matches_everything(payload: Any, key: str, op: str) -> None:
    flt = EventFilter()
    assert flt.is_empty
    assert flt.matches(envelope(payload=payload, key=key, op=op))


@given(payload=json_values, key=st.text(min_size=1, max_size=20), data=st.data())
def test_any_part_of_the_key_matches(payload: Any, key: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(key) - 1))
    end = data.draw(st.integers(start + 1, len(key)))
    assert EventFilter(text=key[start:end]).matches(envelope(payload=payload, key=key))


@given(key=st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=20))
def test_ascii_text_matches_in_any_case(key: str) -> None:
    assert EventFilter(text=key.swapcase()).matches(envelope(key=key))


def test_text_matches_key_model_op_and_payload_case_insensitively() -> None:
    env = envelope()
    for needle in ("ACC-1", "Accounts", "UPDATED", "bangalore", "ärger", '"region"'):
        assert EventFilter(text=needle).matches(env), needle
    assert not EventFilter(text="mumbai").matches(env)
    assert not EventFilter(text="x").matches(
        envelope(payload=None, key="k", model="m", op="deleted", datasource="d")
    )


def test_models_and_ops() -> None:
    env = envelope()
    assert EventFilter(models=frozenset({"accounts", "orders"})).matches(env)
    assert not EventFilter(models=frozenset({"orders"})).matches(env)
    assert not EventFilter(models=frozenset()).matches(env)
    assert EventFilter(ops=frozenset({"updated"})).matches(env)
    assert not EventFilter(ops=frozenset({"created", "deleted"})).matches(env)


def test_expression_over_the_whole_envelope() -> None:
    env = envelope()
    assert EventFilter(expression="payload.region == 'Bangalore'").matches(env)
    assert not EventFilter(expression="payload.region == 'Pune'").matches(env)
    assert EventFilter(expression="op == 'updated' && starts_with(key, 'acc')").matches(env)
    assert not EventFilter(expression="payload.missing").matches(env)
    # JMESPath truthiness: 0 is true, empty containers are false
    assert EventFilter(expression="payload.count").matches(env)
    assert not EventFilter(expression="payload.owner.nothing || `[]`").matches(env)


def test_expression_failing_at_search_time_does_not_match() -> None:
    flt = EventFilter(expression="length(payload.count) > `0`").compile()
    assert not flt.matches(envelope())


def test_all_parts_must_match() -> None:
    flt = EventFilter(
        text="acc", models=frozenset({"accounts"}), ops=frozenset({"updated"}), expression="rev"
    )
    assert flt.matches(envelope())
    assert not flt.matches(envelope(rev=None))


@pytest.mark.parametrize(
    ("expression", "column"),
    [("payload.region ==", 17), ("payload.@", 8), ("`foo", 0), ("a[", 2)],
)
def test_bad_expression_names_the_column(expression: str, column: int) -> None:
    with pytest.raises(FilterError) as caught:
        EventFilter(expression=expression).compile()
    assert caught.value.position == column
    assert caught.value.describe().startswith(f"column {column + 1}: ")


@pytest.mark.parametrize(
    ("expression", "column", "words"),
    [
        ("foo(bar)", 0, ("unknown function", "foo()")),
        ("key == 'a' && lenght(payload) > `1`", 14, ("unknown function", "lenght()")),
        ("length(key, op)", 0, ("length()", "1 argument", "2")),
        ("payload.owner | not_null()", 16, ("not_null()", "at least 1")),
        ("sort_by(payload.items, &n).max_by(@, &n, &m)", 27, ("max_by()", "2 arguments", "3")),
        ("[?starts_with(key)]", 2, ("starts_with()", "2 arguments", "1")),
    ],
)
def test_unknown_function_or_wrong_arity_is_a_compile_error(
    expression: str, column: int, words: tuple[str, ...]
) -> None:
    with pytest.raises(FilterError) as caught:
        EventFilter(expression=expression).compile()
    assert caught.value.position == column
    for word in words:
        assert word in caught.value.message


def test_matches_raises_for_a_bad_expression_too() -> None:
    with pytest.raises(FilterError):
        EventFilter(expression="a ==").matches(envelope())


def test_filters_compare_by_value_not_by_compiled_state() -> None:
    a = EventFilter(expression="key").compile()
    assert a == EventFilter(expression="key")
    assert hash(a) == hash(EventFilter(expression="key"))


def test_filter_events_keeps_order() -> None:
    events = [
        CapturedEvent(i, envelope(key=f"k{i}", op="created" if i % 2 else "deleted")) for i in range(10)
    ]
    got = list(filter_events(events, EventFilter(ops=frozenset({"created"}))))
    assert [e.pos for e in got] == [1, 3, 5, 7, 9]
    assert list(filter_events(events, EventFilter())) == events


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (False, False),
        ("", False),
        ([], False),
        ({}, False),
        (0, True),
        ("x", True),
        ([0], True),
    ],
)
def test_jmespath_truthiness(value: Any, truthy: bool) -> None:
    assert is_truthy(value) is truthy


@pytest.mark.parametrize("name", sorted(Functions().FUNCTION_TABLE))
def test_every_jmespath_function_with_its_arguments_compiles(name: str) -> None:
    signature = Functions().FUNCTION_TABLE[name]["signature"]
    args = ", ".join("[a, {b: c}]" if i == 0 else "&key" for i in range(len(signature)))
    EventFilter(expression=f"{name}({args})").compile()
