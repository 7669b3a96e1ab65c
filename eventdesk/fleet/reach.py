"""How the fleet reaches its NATS servers: ``--fleet`` (and the Fleet window's field) takes
either nats:// or tls:// URLs, or the name of a ``nats`` broker or datasource of the workspace,
whose connection settings (servers, user name, credentials or NKey seed file, CA file) and
secret (this host's keyring entry or environment variable, as the workspace file names it) the
fleet then uses, connecting as the kinds do (clients/nats/connection.py). The workspace file is
shared by the agents; each host only needs the secret. ``broker:NAME`` or ``datasource:NAME``
picks one when a broker and a datasource share the name.
"""

from __future__ import annotations

from dataclasses import replace

from eventdesk.clients.nats.settings import NatsLogin
from eventdesk.core.errors import ConfigError, NotFoundError, SecretStoreError
from eventdesk.core.object_configs import BrokerConfig, DatasourceConfig
from eventdesk.core.secrets import resolve_secret
from eventdesk.core.workspace import Workspace
from eventdesk.fleet.settings import FleetSettings

OBJ = "fleet"
FIELD = "fleet"
KINDS = ("broker", "datasource")


def is_urls(value: str) -> bool:
    """Whether ``--fleet``'s value is URLs (a name never holds '://')."""
    return "://" in value or not value.strip()


def fleet_object(workspace: Workspace, value: str) -> BrokerConfig | DatasourceConfig:
    """The ``nats`` broker or datasource ``value`` names; a ConfigError naming the option."""
    name = value.strip()
    wanted: tuple[str, ...] = KINDS
    prefix, _, rest = name.partition(":")
    if prefix in KINDS and rest:
        wanted, name = (prefix,), rest
    found: list[BrokerConfig | DatasourceConfig] = []
    for object_type in wanted:
        table = workspace.brokers if object_type == "broker" else workspace.datasources
        cfg = table.get(name)
        if cfg is not None:
            found.append(cfg)
        elif (invalid := workspace.invalid_of(object_type).get(name)) is not None:
            raise ConfigError(
                f"{object_type} {name!r} is invalid ({invalid.error}): replace it first "
                f"(eventdesk {object_type} add {name} --replace ...)",
                obj=OBJ,
                field=FIELD,
            )
    if not found:
        raise NotFoundError(
            f"no {' or '.join(wanted)} named {name!r} in this workspace: give nats:// URLs, or the name "
            "of a nats broker or datasource whose connection the fleet uses",
            obj=OBJ,
            field=FIELD,
        )
    nats = [cfg for cfg in found if cfg.kind == "nats"]
    if not nats:
        cfg = found[0]
        raise ConfigError(f"{cfg.label} is of kind {cfg.kind!r}, not nats", obj=OBJ, field=FIELD)
    if len(nats) > 1:
        raise ConfigError(
            f"both broker {name!r} and datasource {name!r} are nats: give broker:{name} or datasource:{name}",
            obj=OBJ,
            field=FIELD,
        )
    return nats[0]


def fleet_settings(
    workspace: Workspace, value: str, agent: str | None, ttl: float, replicas: int
) -> FleetSettings:
    """The fleet's settings from ``--fleet`` and the agent's options. A name resolves to its
    object's connection and this host's secret (blocks on the keyring: off a UI's loop)."""
    if is_urls(value):
        return FleetSettings.parse(value, agent, ttl, replicas)
    cfg = fleet_object(workspace, value)
    login = NatsLogin.of(cfg.settings)
    settings = FleetSettings.parse(",".join(login.servers), agent, ttl, replicas)
    via = cfg.label
    try:
        secret = resolve_secret(cfg.secret, via)
    except SecretStoreError as exc:  # this host lacks it: said for the fleet, never the value
        raise SecretStoreError(exc.detail, obj=f"{OBJ} via {via}", field="secret") from None
    return replace(settings, via=via, login=login, secret=secret)
