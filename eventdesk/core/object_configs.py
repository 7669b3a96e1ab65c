"""What the workspace holds, as plain data: one datasource, model, broker or route.

Connectors and brokers are handed these (see :mod:`eventdesk.core.contracts`); the workspace
(:mod:`eventdesk.core.workspace`) validates, stores and loads them. Nothing here imports either,
so the contracts do not depend on the workspace that depends on the kinds behind them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventdesk.core.route_settings import RouteSettings
from eventdesk.core.secrets import SecretRef


@dataclass
class DatasourceConfig:
    name: str
    kind: str
    settings: dict[str, Any]
    secret: SecretRef | None = None
    # The workspace holding it (set by the workspace, never stored with it): a kind that keeps
    # objects on the server (postgres: a replication slot) names them after it, so that two
    # workspaces following the same database never share one. Empty outside a workspace.
    workspace_id: str = field(default="", compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"datasource {self.name!r}"


@dataclass
class ModelConfig:
    name: str
    datasource: str
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        return f"model {self.name!r}"


@dataclass
class BrokerConfig:
    name: str
    kind: str
    settings: dict[str, Any]
    secret: SecretRef | None = None

    @property
    def label(self) -> str:
        return f"broker {self.name!r}"


@dataclass
class RouteConfig:
    name: str
    model: str
    broker: str
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        return f"route {self.name!r}"

    @property
    def typed(self) -> RouteSettings:
        """The settings as a typed object (the workspace validated them when it took the route)."""
        return RouteSettings.from_validated(self.settings)

    @property
    def enabled(self) -> bool:
        return self.typed.enabled
