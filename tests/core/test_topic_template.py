"""Topic templates: placeholders, sanitised values, and the route's column-based rendering."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from eventdesk.brokers.mqtt import MqttPublisher
from eventdesk.core.topic_template import (
    DEFAULT_TOPIC,
    PLACEHOLDERS,
    TopicTemplate,
    check_template,
    escape_value,
    placeholders,
)

ENVELOPE = {"datasource": "prod", "model": "accounts", "op": "updated", "key": "acc-1"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (DEFAULT_TOPIC, "eventdesk/prod/accounts/updated"),
        ("/v1/subutest", "/v1/subutest"),  # no placeholder: the seed's fixed topic
        ("{model}/{key}/{op}/{key}", "accounts/acc-1/updated/acc-1"),
        ("100%/{{literal}}/{key}", "100%/{literal}/acc-1"),  # % and escaped braces survive
    ],
)
def test_render_and_render_fields_agree(template: str, expected: str) -> None:
    topic = TopicTemplate(template)
    assert topic.render(ENVELOPE) == expected
    assert topic.render_fields("prod", "accounts", "updated", "acc-1") == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a+b#c\x00d", "a%2Bb%23c%00d"),
        ("", "_"),
        (42, "42"),
        ("ünï/code", "ünï%2Fcode"),
        ("100%", "100%25"),
        ("$SYS/x", "%24SYS%2Fx"),
        ("a$b", "a$b"),  # only a leading $ could make a $-topic
    ],
)
def test_values_are_escaped_to_stay_one_level(key: object, expected: str) -> None:
    topic = TopicTemplate("t/{key}")
    assert topic.render({**ENVELOPE, "key": key}) == f"t/{expected}"
    assert topic.render_fields("prod", "accounts", "updated", key) == f"t/{expected}"  # type: ignore[arg-type]


def test_a_document_id_cannot_move_the_topic_into_another_tenant_or_a_dollar_topic() -> None:
    assert TopicTemplate("{key}/v1").render_fields("d", "m", "created", "tenantB/evil") == "tenantB%2Fevil/v1"
    assert TopicTemplate("{key}/v1").render_fields("d", "m", "created", "$SYS/x") == "%24SYS%2Fx/v1"
    topic = TopicTemplate("tenantA/{key}/events").render_fields("d", "m", "created", "a/b/c")
    assert topic == "tenantA/a%2Fb%2Fc/events"
    assert topic_matches_sub("tenantA/+/events", topic)


def test_the_levels_spec_lets_a_value_span_levels_but_not_wildcards_or_empty_levels() -> None:
    topic = TopicTemplate("t/{key:levels}/v1")
    assert topic.render_fields("d", "m", "created", "a/b/c") == "t/a/b/c/v1"
    assert topic.render_fields("d", "m", "created", "a//+/#") == "t/a/_/%2B/%23/v1"
    assert TopicTemplate("{key:levels}").render_fields("d", "m", "created", "$SYS/x") == "%24SYS/x"


def test_escaping_is_reversible() -> None:
    for key in ("a/b", "100%2F", "%24x", "$x", "+#\x00", "ünï"):
        assert unquote(escape_value(key)) == key


_TEMPLATES = st.sampled_from(["{key}", "{key}/v1", "tenantA/{key}/events", "{datasource}/{model}/{op}/{key}"])


@settings(max_examples=300, deadline=None)
@given(
    template=_TEMPLATES,
    datasource=st.text(),
    model=st.text(),
    op=st.text(),
    key=st.one_of(st.text(), st.text(alphabet="/+#$%\x00a", max_size=12)),
)
def test_no_value_makes_an_invalid_or_dollar_topic_or_adds_levels(
    template: str, datasource: str, model: str, op: str, key: str
) -> None:
    topic = TopicTemplate(template).render_fields(datasource, model, op, key)
    assert MqttPublisher.validate_topic(topic) in (None, "a topic may be at most 65535 bytes")
    assert not topic.startswith("$")
    assert topic.count("/") == template.count("/")
    assert all(level for level in topic.split("/"))
    levels = topic.split("/")
    for name, value in (("datasource", datasource), ("model", model), ("op", op), ("key", key)):
        if template.split("/").count("{" + name + "}"):
            assert unquote(levels[template.split("/").index("{" + name + "}")]) == (value or "_")


@settings(max_examples=200, deadline=None)
@given(key=st.text(alphabet=st.sampled_from("/+#$%\x00ab"), max_size=20))
def test_levels_values_never_make_wildcards_empty_levels_or_dollar_topics(key: str) -> None:
    topic = TopicTemplate("{key:levels}/v1").render_fields("d", "m", "created", key)
    assert MqttPublisher.validate_topic(topic) is None
    assert not topic.startswith("$")
    assert all(level for level in topic.split("/"))
    assert topic.count("/") == key.count("/") + 1


def test_unknown_placeholders_and_format_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{id\}"):
        placeholders("t/{id}")
    with pytest.raises(ValueError, match="takes no format spec but :levels"):
        placeholders("t/{key:>5}")
    validate = MqttPublisher.validate_topic
    assert check_template("", validate) == "the topic template is empty"
    assert check_template("t/#/{key}", validate) is not None
    assert check_template(DEFAULT_TOPIC, validate) is None


@settings(max_examples=300, deadline=None)
@given(
    template=_TEMPLATES,
    values=st.tuples(*[st.one_of(st.text(max_size=8), st.sampled_from(["", "$", "a/b", "%", "ok"]))] * 4),
)
def test_the_one_scan_fast_path_renders_as_escaping_each_value_does(
    template: str, values: tuple[str, str, str, str]
) -> None:
    reference = template.format(
        **{name: escape_value(v) for name, v in zip(PLACEHOLDERS, values, strict=True)}
    )
    assert TopicTemplate(template).render_fields(*values) == reference
