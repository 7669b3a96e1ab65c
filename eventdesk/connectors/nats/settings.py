"""The settings of a ``nats`` datasource and of its models: schemas and typed settings.

A datasource is a NATS server or cluster, connected to as the ``nats`` broker kind does (the
same URL, credential and TLS fields: NATS's, clients/nats/settings.py). A model follows one JetStream
stream (optionally one filter subject of it) through a durable pull consumer whose name
EventDesk derives (:func:`consumer_name`), or, live only, core NATS subjects (no durability).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any

import jmespath
import jmespath.exceptions

from eventdesk.clients.nats.settings import (
    CREDENTIAL_FIELDS,
    URL,
    check_stream,
    check_subjects,
    one_login,
    servers,
)
from eventdesk.core.settings_schema import (
    BATCH_SIZE,
    CONNECT_TIMEOUT,
    Field,
    KindSettings,
    Schema,
    since_field,
)


def check_jmespath(value: Any) -> str | None:
    text = str(value or "")
    if not text:
        return None
    try:
        jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        return f"not a JMESPath expression: {text!r} ({exc})"
    return None


def check_subject(value: Any) -> str | None:
    """One subject filter (no comma-separated list: a consumer takes one)."""
    if "," in str(value or ""):
        return "one subject filter only (a consumer takes one; use 'ed.>' style wildcards)"
    return check_subjects(value)


DATASOURCE_SCHEMA = Schema(
    kind="nats",
    title="NATS",
    description="A NATS server or cluster: JetStream streams (durable) or core NATS subjects (live only).",
    fields=(URL, *CREDENTIAL_FIELDS, CONNECT_TIMEOUT),
    cross_checks=(one_login,),
)

MODEL_SCHEMA = Schema(
    kind="nats-model",
    title="Stream",
    description="A JetStream stream's messages (a durable consumer EventDesk names), or core NATS subjects.",
    fields=(
        Field(
            "stream",
            "str",
            default="",
            validator=check_stream,
            help="The JetStream stream to consume (needed unless a core subject is given).",
        ),
        Field(
            "subject",
            "str",
            label="Subject filter",
            default="",
            validator=check_subject,
            help="Only the stream's messages on this subject (wildcards * and > allowed; empty: all).",
        ),
        since_field("now (new messages) or 0 (the stream's first message)"),
        Field(
            "durable",
            "bool",
            label="Durable consumer",
            default=True,
            advanced=True,
            help="On: a durable consumer EventDesk names keeps the position on the server, so a "
            "restart resumes where the capture stopped (remove --drop-slot deletes it). Off: an "
            "ephemeral ordered consumer, live from the start of each run, that the server deletes "
            "once EventDesk stops (nothing is left on the server).",
        ),
        Field(
            "core_subject",
            "str",
            label="Core NATS subject",
            default="",
            validator=check_subject,
            advanced=True,
            help="Live only: subscribe to this core NATS subject instead of a stream (no durability: "
            "what is published while EventDesk is stopped is missed).",
        ),
        Field(
            "key_path",
            "str",
            label="Key (JMESPath)",
            default="",
            validator=check_jmespath,
            advanced=True,
            help="Where a JSON payload holds the key, e.g. payload.id (empty: the EventDesk-Key "
            "header, else the subject).",
        ),
        Field(
            "op_path",
            "str",
            label="Op (JMESPath)",
            default="",
            validator=check_jmespath,
            advanced=True,
            help="Where a JSON payload holds the op, e.g. op (Debezium's c/u/d/r are understood; empty: "
            "the EventDesk-Op header, else created).",
        ),
        replace(BATCH_SIZE, help="Largest number of messages fetched and captured at once."),
    ),
    cross_checks=(
        lambda v: (
            ("core_subject", "either a stream or a core NATS subject, not both")
            if v["stream"] and v["core_subject"]
            else None
        ),
    ),
)


@dataclass(frozen=True)
class NatsDatasourceSettings(KindSettings):
    """A ``nats`` datasource's settings (the password or token is its secret): NATS's connection
    fields, so clients/nats/connection.py connects it as it connects a ``nats`` broker."""

    schema = DATASOURCE_SCHEMA

    url: str
    username: str
    creds: str
    nkey: str
    ca_file: str
    connect_timeout: float

    @property
    def servers(self) -> list[str]:
        return servers(self.url)


@dataclass(frozen=True)
class NatsModelSettings(KindSettings):
    schema = MODEL_SCHEMA

    stream: str
    subject: str
    since: str
    durable: bool
    core_subject: str
    key_path: str
    op_path: str
    batch_size: int

    @property
    def missing(self) -> str | None:
        """Why the model cannot run: neither a stream nor a core subject (the schema's defaults
        must load, so this is said when the model starts or is tested)."""
        if not self.stream and not self.core_subject:
            return "a stream to consume is required (or a core NATS subject, live only)"
        return None


def consumer_name(workspace_id: str, datasource: str, model: str) -> str:
    """The durable consumer of one model: ``eventdesk_<model>_<hash>``, the hash of the
    workspace, datasource and model (two workspaces on one stream never share a consumer, and
    every runner of one workspace finds the same one). Consumer names take no '.', '*', '>' or
    whitespace."""
    digest = hashlib.sha256(f"{workspace_id}\0{datasource}\0{model}".encode()).hexdigest()[:10]
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", model).strip("_")[:40] or "model"
    return f"eventdesk_{base}_{digest}"
