"""Connector and broker kinds, found through entry points so third parties can add theirs.

Groups: ``eventdesk.connectors`` and ``eventdesk.brokers``.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from eventdesk.core.contracts import Connector, Publisher
from eventdesk.core.errors import ConfigError

CONNECTOR_GROUP = "eventdesk.connectors"
BROKER_GROUP = "eventdesk.brokers"


@cache
def connector_kinds() -> tuple[str, ...]:
    return tuple(sorted(ep.name for ep in entry_points(group=CONNECTOR_GROUP)))


@cache
def broker_kinds() -> tuple[str, ...]:
    return tuple(sorted(ep.name for ep in entry_points(group=BROKER_GROUP)))


@cache
def connector_class(kind: str) -> type[Connector]:
    for ep in entry_points(group=CONNECTOR_GROUP, name=kind):
        cls = ep.load()
        assert isinstance(cls, type) and issubclass(cls, Connector)
        return cls
    raise ConfigError(f"unknown connector kind {kind!r}; known: {', '.join(connector_kinds())}", field="kind")


@cache
def broker_class(kind: str) -> type[Publisher]:
    for ep in entry_points(group=BROKER_GROUP, name=kind):
        cls = ep.load()
        assert isinstance(cls, type) and issubclass(cls, Publisher)
        return cls
    raise ConfigError(f"unknown broker kind {kind!r}; known: {', '.join(broker_kinds())}", field="kind")
