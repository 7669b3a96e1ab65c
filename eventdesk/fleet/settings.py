"""A fleet agent's options (``eventdesk run --fleet URL|NAME ...``) and the names it uses in NATS:
the bucket (one per workspace, from its id) and its keys (one lease per model, one heartbeat per
agent). What a NAME resolves to (a workspace's ``nats`` broker or datasource): fleet/reach.py."""

from __future__ import annotations

import os
import re
import socket
import urllib.parse
from dataclasses import dataclass, field

from eventdesk.clients.nats.settings import NatsLogin
from eventdesk.core.errors import ConfigError

# A JetStream R3 bucket whose leader node dies answers nothing until its peers elect another
# (4-9 s or more with nats-server's election timeouts, longer when the node also led the
# JetStream meta group): a lease must outlive that, as its holder stops once TTL - TTL/6 passed
# since its last renewal, sent up to TTL/6 earlier: 2/3 of the TTL after losing the bucket.
DEFAULT_TTL = 15.0
MIN_TTL = 1.0
LEASE_PREFIX = "lease."
AGENT_PREFIX = "agent."
# NATS KV keys are made of these (a '.' separates tokens): anything else is escaped as =XX.
_KEY_SAFE = re.compile(r"[A-Za-z0-9_-]")


def escape_token(name: str) -> str:
    """``name`` as one KV key token: letters, digits, ``-`` and ``_`` as they are, every other
    UTF-8 byte as ``=XX`` (so distinct names give distinct tokens)."""
    out = []
    for ch in name:
        if _KEY_SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode())
    return "".join(out) or "="


def unescape_token(token: str) -> str:
    return urllib.parse.unquote(token.replace("%", "%25").replace("=", "%"), errors="replace")


def lease_key(model: str) -> str:
    return LEASE_PREFIX + escape_token(model)


def agent_key(agent: str) -> str:
    return AGENT_PREFIX + escape_token(agent)


def bucket_name(workspace_id: str) -> str:
    """The fleet bucket of a workspace: every agent with a copy of the same workspace file (the
    same ``workspace_id``) meets in it."""
    return "eventdesk-" + re.sub(r"[^A-Za-z0-9_-]", "_", workspace_id)


def default_agent_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class FleetSettings:
    """``servers``: the NATS URLs; ``ttl``: a lease's life without renewal (renewed every
    ttl/6, and at each read of the bucket after a renewal failed); ``replicas``: of the bucket
    when this agent creates it. ``via``: the workspace's broker or datasource whose connection
    settings (``login``) and secret (this host's, never shown) the fleet uses; empty for URLs."""

    servers: tuple[str, ...]
    agent: str
    ttl: float = DEFAULT_TTL
    replicas: int = 1
    via: str = ""
    login: NatsLogin | None = None
    secret: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, url: str, agent: str | None, ttl: float, replicas: int) -> FleetSettings:
        servers = tuple(u.strip() for u in url.split(",") if u.strip())
        if not servers:
            raise ConfigError("give at least one nats:// URL", obj="fleet", field="fleet")
        for server in servers:
            scheme = urllib.parse.urlsplit(server).scheme
            if scheme not in ("nats", "tls"):
                raise ConfigError(f"{server!r} is not a nats:// or tls:// URL", obj="fleet", field="fleet")
        if ttl < MIN_TTL:
            raise ConfigError(f"must be at least {MIN_TTL} s, got {ttl}", obj="fleet", field="lease-ttl")
        if not 1 <= replicas <= 5:
            raise ConfigError(f"must be 1-5, got {replicas}", obj="fleet", field="fleet-replicas")
        agent_id = agent if agent is not None else default_agent_id()
        if not agent_id.strip():
            raise ConfigError("must not be empty", obj="fleet", field="agent-id")
        return cls(servers=servers, agent=agent_id, ttl=ttl, replicas=replicas)

    @property
    def label(self) -> str:
        """The object errors name: ``fleet``, or ``fleet via broker 'js'``."""
        return f"fleet via {self.via}" if self.via else "fleet"

    @property
    def endpoint(self) -> NatsLogin:
        """What clients/nats/connection.py connects with (URLs alone: no login of their own)."""
        return self.login if self.login is not None else NatsLogin(servers=list(self.servers))

    @property
    def renew_every(self) -> float:
        return self.ttl / 6

    @property
    def look_every(self) -> float:
        """How often the bucket is read: an expired lease is seen at most this long (plus as
        long again for the observer's clock to start) after its TTL."""
        return min(self.ttl / 6, 0.5)

    @property
    def margin(self) -> float:
        """How long before others may call a lease expired its holder stops on its own."""
        return self.ttl / 6
