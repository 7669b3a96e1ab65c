"""The settings of a ``nats`` broker: the schema (validation, CLI flags, the app's form) and
:class:`NatsSettings`, the typed, frozen object the publisher reads.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from eventdesk.core.settings_schema import Field, KindSettings, Schema, check_pem_file

URL_SCHEMES = ("nats", "tls")
# A stream name: no whitespace, '.', '*', '>', path separators (NATS names streams this way).
_STREAM_NAME = re.compile(r"^[^\s.*>/\\]+$")


def with_scheme(url: str) -> str:
    """A bare HOST[:PORT] is nats://HOST[:PORT] (as nats-py reads it)."""
    return url if "://" in url else "nats://" + url


def check_urls(value: Any) -> str | None:
    """None if ``value`` is one or more comma-separated nats:// or tls:// URLs."""
    for part in str(value or "").split(","):
        url = part.strip()
        if not url:
            return "an empty URL in the list (nats://HOST:PORT[,nats://HOST:PORT...])"
        shown = url.split("@")[-1]  # never a user:password@ part
        try:
            parsed = urllib.parse.urlsplit(with_scheme(url))
            host, _port = parsed.hostname, parsed.port  # each raises ValueError when malformed
        except ValueError:
            return f"not a nats://HOST:PORT or tls://HOST:PORT URL (bad host or port): {shown!r}"
        if parsed.scheme not in URL_SCHEMES or not host:
            return f"not a nats://HOST:PORT or tls://HOST:PORT URL: {shown!r}"
        if parsed.password:
            return "put the password in the broker's secret (keyring or --secret-env), not in the URL"
    return None


def check_stream(value: Any) -> str | None:
    name = str(value or "")
    if name and not _STREAM_NAME.match(name):
        return f"a stream name may not contain whitespace, '.', '*', '>', '/' or '\\': {name!r}"
    return None


def check_subjects(value: Any) -> str | None:
    for subject in str(value or "").split(","):
        s = subject.strip()
        if not s:
            continue
        tokens = s.split(".")
        if any(not t or any(c.isspace() for c in t) for t in tokens):
            return f"not a subject filter: {s!r} (empty token or whitespace)"
        if ">" in tokens[:-1] or any((">" in t or "*" in t) and len(t) > 1 for t in tokens):
            return f"not a subject filter: {s!r} ('*' and '>' are whole tokens, '>' only last)"
    return None


def check_readable(value: Any) -> str | None:
    path = str(value or "")
    if path and not os.path.isfile(path):
        return f"no such file: {path!r}"
    return None


SCHEMA = Schema(
    kind="nats",
    title="NATS JetStream",
    description="A NATS server or cluster; messages are stored in a JetStream stream (nats-server -js).",
    fields=(
        Field(
            "url",
            "str",
            label="URL",
            required=True,
            validator=check_urls,
            url_schemes=URL_SCHEMES,  # checked by check_urls (a "str": a list of URLs is no "url")
            help="nats://HOST:PORT (or HOST[:PORT]; default port 4222), tls://HOST:PORT; several, comma-separated, for a cluster.",
        ),
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
        Field("username", "str", default="", help="User name (the secret is then its password)."),
        Field(
            "secret",
            "secret",
            label="Password or token",
            help="The user's password, or a token when no user name is set. Kept in the OS keyring.",
        ),
        Field(
            "creds",
            "path",
            label="Credentials file",
            default="",
            validator=check_readable,
            help="A .creds file (JWT and NKey seed).",
        ),
        Field(
            "nkey",
            "path",
            label="NKey seed file",
            default="",
            validator=check_readable,
            help="A file holding an NKey seed (SU...).",
        ),
        Field(
            "ca_file",
            "path",
            label="CA file",
            default="",
            validator=check_pem_file,
            help="PEM file of the CA that signed the server's certificate (turns TLS on).",
        ),
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
        lambda v: (
            ("creds", "use either a credentials file, an NKey seed file or a user name, not several")
            if sum(bool(v[k]) for k in ("creds", "nkey", "username")) > 1
            else None
        ),
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
        return [with_scheme(u.strip()) for u in self.url.split(",") if u.strip()]

    @property
    def subject_list(self) -> list[str]:
        return [s.strip() for s in self.subjects.split(",") if s.strip()]
