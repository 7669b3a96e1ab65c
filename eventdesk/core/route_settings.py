"""A route's settings: the schema its form, flags and validation come from, and the typed object.

A route republishes one model's events to one broker; what it publishes (topic template,
payload format, QoS, retain) and what it does with an event the broker can never take.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventdesk.core.envelope import PAYLOAD_FORMAT_ALIASES, PAYLOAD_FORMATS
from eventdesk.core.settings_schema import Field, KindSettings, Schema
from eventdesk.core.topic_template import DEFAULT_TOPIC, ESCAPING_HELP

ON_POISON = ("quarantine", "stop")  # what a route does with an event its broker can never take
ROUTE_SCHEMA = Schema(
    kind="route",
    title="Route",
    description="Republish one model's events to one broker.",
    fields=(
        Field(
            "topic",
            "str",
            label="Topic template",
            default=DEFAULT_TOPIC,
            required=True,
            help="Placeholders: {datasource}, {model}, {op}, {key}. " + ESCAPING_HELP,
        ),
        Field(
            "format",
            "choice",
            label="Payload format",
            default="envelope",
            choices=PAYLOAD_FORMATS,
            aliases=tuple(PAYLOAD_FORMAT_ALIASES.items()),
            help="envelope: the whole event; model-message: {model, message}; payload: the document alone.",
        ),
        Field(
            "qos",
            "int",
            label="QoS",
            default=1,
            minimum=0,
            maximum=2,
            help="0: at most once; 1: at least once; 2: exactly once (broker side).",
        ),
        Field("retain", "bool", default=False, help="Ask the broker to keep the last message per topic."),
        Field("enabled", "bool", default=True, help="Publish while running; capture goes on either way."),
        Field(
            "on_poison",
            "choice",
            label="On a poison event",
            default="quarantine",
            choices=ON_POISON,
            help="An event the broker can never take (topic too long, payload over its maximum, a "
            "permanent refusal): 'quarantine' sets it aside and goes on (see `eventdesk quarantine`), "
            "'stop' stops the route.",
        ),
    ),
)


@dataclass(frozen=True)
class RouteSettings(KindSettings):
    """A route's settings, typed (``RouteSettings.from_validated(route.settings)``)."""

    schema = ROUTE_SCHEMA
    topic: str
    format: str
    qos: int
    retain: bool
    enabled: bool
    on_poison: str
