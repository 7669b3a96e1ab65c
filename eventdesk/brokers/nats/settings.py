"""The settings of a ``nats`` broker: the schema (validation, CLI flags, the app's form) and
:class:`NatsSettings`, the typed, frozen object the publisher reads. The connection fields and
the checks of names and subjects are NATS's (clients/nats/settings.py), shared with the source.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventdesk.clients.nats.settings import (
    CREDENTIAL_FIELDS,
    URL,
    check_stream,
    check_subjects,
    one_login,
    servers,
)
from eventdesk.core.settings_schema import Field, KindSettings, Schema

SCHEMA = Schema(
    kind="nats",
    title="NATS JetStream",
    description="A NATS server or cluster; messages are stored in a JetStream stream (nats-server -js).",
    fields=(
        URL,
        Field(
            "stream",
            "str",
            default="",
            validator=check_stream,
            help="The JetStream stream the route's subjects are bound to (empty: any stream that binds them).",
        ),
        Field(
            "create_stream",
            "bool",
            default=False,
            help="Create the stream if it does not exist (needs --stream and --subjects).",
        ),
        Field(
            "subjects",
            "str",
            default="",
            validator=check_subjects,
            help="The subjects a created stream binds, comma-separated (e.g. 'ed.>').",
        ),
        Field("replicas", "int", default=1, minimum=1, maximum=5, help="Replicas of a created stream."),
        Field(
            "max_age",
            "float",
            default=0.0,
            minimum=0,
            help="Seconds a created stream keeps a message (0: no limit).",
        ),
        Field(
            "duplicate_window",
            "float",
            default=120.0,
            minimum=1,
            help="Seconds a created stream remembers Nats-Msg-Ids to drop re-sent messages.",
        ),
        Field(
            "delivery",
            "choice",
            default="jetstream",
            choices=("jetstream", "core"),
            advanced=True,
            help="jetstream: each message waits for the stream's PubAck; core: fire and forget (like QoS 0).",
        ),
        *CREDENTIAL_FIELDS,
    ),
    cross_checks=(
        lambda v: (
            ("stream", "--create-stream needs a stream name")
            if v["create_stream"] and not v["stream"]
            else None
        ),
        lambda v: (
            ("subjects", "--create-stream needs the subjects the stream binds")
            if v["create_stream"] and not v["subjects"]
            else None
        ),
        one_login,
    ),
)


@dataclass(frozen=True)
class NatsSettings(KindSettings):
    """A ``nats`` broker's settings, typed (the password or token is the broker's secret)."""

    schema = SCHEMA
    url: str
    stream: str
    create_stream: bool
    subjects: str
    replicas: int
    max_age: float
    duplicate_window: float
    delivery: str
    username: str
    creds: str
    nkey: str
    ca_file: str

    @property
    def servers(self) -> list[str]:
        return servers(self.url)

    @property
    def subject_list(self) -> list[str]:
        return [s.strip() for s in self.subjects.split(",") if s.strip()]
