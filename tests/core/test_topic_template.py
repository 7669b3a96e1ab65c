"""Topic templates: placeholders, sanitised values, and the route's column-based rendering."""

from __future__ import annotations

import pytest

from eventdesk.brokers.mqtt import MqttPublisher
from eventdesk.core.topic_template import DEFAULT_TOPIC, TopicTemplate, check_template, placeholders

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
    [("a+b#c\x00d", "a_b_c_d"), ("", "_"), (42, "42"), ("ünï/code", "ünï/code")],
)
def test_values_cannot_inject_wildcards_or_empty_levels(key: object, expected: str) -> None:
    topic = TopicTemplate("t/{key}")
    assert topic.render({**ENVELOPE, "key": key}) == f"t/{expected}"
    assert topic.render_fields("prod", "accounts", "updated", key) == f"t/{expected}"  # type: ignore[arg-type]


def test_unknown_placeholders_and_format_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{id\}"):
        placeholders("t/{id}")
    with pytest.raises(ValueError, match="takes no format spec"):
        placeholders("t/{key:>5}")
    validate = MqttPublisher.validate_topic
    assert check_template("", validate) == "the topic template is empty"
    assert check_template("t/#/{key}", validate) is not None
    assert check_template(DEFAULT_TOPIC, validate) is None
