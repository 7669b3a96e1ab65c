"""The NATS settings a source and a broker share: the connection fields (URL, user name,
password or token, credentials file, NKey seed file, CA file) with their checks, the rule that
only one way of logging in is set, and the checks of stream names and subjects.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eventdesk.clients.nats.login_files import check_creds_file, check_nkey_file
from eventdesk.core.settings_schema import Field, check_pem_file

URL_SCHEMES = ("nats", "tls")
# A stream name: no whitespace, '.', '*', '>', path separators (NATS names streams this way).
_STREAM_NAME = re.compile(r"^[^\s.*>/\\]+$")


def with_scheme(url: str) -> str:
    """A bare HOST[:PORT] is nats://HOST[:PORT] (as nats-py reads it)."""
    return url if "://" in url else "nats://" + url


def servers(url: str) -> list[str]:
    """The comma-separated URLs of the ``url`` field, each with its scheme."""
    return [with_scheme(u.strip()) for u in url.split(",") if u.strip()]


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
            return "put the password in the secret (keyring or --secret-env), not in the URL"
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


URL = Field(
    "url",
    "str",
    label="URL",
    required=True,
    validator=check_urls,
    url_schemes=URL_SCHEMES,  # checked by check_urls (a "str": a list of URLs is no "url")
    help="nats://HOST:PORT (or HOST[:PORT]; default port 4222), tls://HOST:PORT; several, comma-separated, for a cluster.",
)

# How to log in and TLS, in the order the forms show them (after the kind's own fields).
CREDENTIAL_FIELDS = (
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
        validator=check_creds_file,
        help="A .creds file (JWT and NKey seed).",
    ),
    Field(
        "nkey",
        "path",
        label="NKey seed file",
        default="",
        validator=check_nkey_file,
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
)


def one_login(v: Mapping[str, Any]) -> tuple[str, str] | None:
    """The cross-check: a credentials file, an NKey seed file or a user name, not several."""
    if sum(bool(v[k]) for k in ("creds", "nkey", "username")) > 1:
        return ("creds", "use either a credentials file, an NKey seed file or a user name, not several")
    return None


@dataclass(frozen=True)
class NatsLogin:
    """The connection fields of a ``nats`` broker's or datasource's settings, without the kind's
    own ones: what clients/nats/connection.py connects with (the fleet connects through a
    workspace's broker or datasource this way). No secret: that stays in the keyring or env."""

    servers: list[str] = field(default_factory=list)
    username: str = ""
    creds: str = ""
    nkey: str = ""
    ca_file: str = ""

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> NatsLogin:
        """From a validated ``nats`` broker's or datasource's settings."""
        return cls(
            servers=servers(str(settings.get("url") or "")),
            **{k: str(settings.get(k) or "") for k in ("username", "creds", "nkey", "ca_file")},
        )
