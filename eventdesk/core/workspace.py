"""The workspace: datasources, models, brokers and routes, saved as JSON without secrets.

The file has a ``schema_version``, is written atomically (temporary file + rename) and the
last good version is kept beside it as ``workspace.json.bak``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventdesk.core.envelope import PAYLOAD_FORMATS
from eventdesk.core.errors import ConfigError, NotFoundError
from eventdesk.core.registry import broker_class, connector_class
from eventdesk.core.secrets import SecretRef
from eventdesk.core.settings_schema import Field, Schema
from eventdesk.core.topic_template import DEFAULT_TOPIC, ESCAPING_HELP, check_template

SCHEMA_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
OBJECT_TYPES = ("datasource", "model", "broker", "route")

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
            help="envelope: the whole event; seed: {model, message}; payload: the document alone.",
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


def check_name(name: str, object_type: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            "a name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            obj=f"{object_type} {name!r}",
            field="name",
        )
    return name


@dataclass
class DatasourceConfig:
    name: str
    kind: str
    settings: dict[str, Any]
    secret: SecretRef | None = None

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
    def enabled(self) -> bool:
        return bool(self.settings.get("enabled", True))


@dataclass
class Workspace:
    """All configured objects; every mutation validates before it changes anything."""

    datasources: dict[str, DatasourceConfig] = field(default_factory=dict)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    brokers: dict[str, BrokerConfig] = field(default_factory=dict)
    routes: dict[str, RouteConfig] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.datasources or self.models or self.brokers or self.routes)

    # -- lookups ---------------------------------------------------------------------------
    def datasource(self, name: str) -> DatasourceConfig:
        try:
            return self.datasources[name]
        except KeyError:
            raise NotFoundError("no such datasource", obj=f"datasource {name!r}") from None

    def model(self, name: str) -> ModelConfig:
        try:
            return self.models[name]
        except KeyError:
            raise NotFoundError("no such model", obj=f"model {name!r}") from None

    def broker(self, name: str) -> BrokerConfig:
        try:
            return self.brokers[name]
        except KeyError:
            raise NotFoundError("no such broker", obj=f"broker {name!r}") from None

    def route(self, name: str) -> RouteConfig:
        try:
            return self.routes[name]
        except KeyError:
            raise NotFoundError("no such route", obj=f"route {name!r}") from None

    def models_of(self, datasource: str) -> list[ModelConfig]:
        return [m for m in self.models.values() if m.datasource == datasource]

    def routes_of_model(self, model: str) -> list[RouteConfig]:
        return [r for r in self.routes.values() if r.model == model]

    def routes_of_broker(self, broker: str) -> list[RouteConfig]:
        return [r for r in self.routes.values() if r.broker == broker]

    # -- validation ------------------------------------------------------------------------
    @staticmethod
    def validate_datasource(cfg: DatasourceConfig) -> DatasourceConfig:
        check_name(cfg.name, "datasource")
        cls = connector_class_for(cfg.kind, cfg.label)
        settings = cls.datasource_schema.validate(cfg.settings, cfg.label)
        return DatasourceConfig(cfg.name, cfg.kind, settings, cfg.secret)

    def validate_model(self, cfg: ModelConfig) -> ModelConfig:
        check_name(cfg.name, "model")
        if cfg.datasource not in self.datasources:
            raise NotFoundError(
                f"datasource {cfg.datasource!r} does not exist", obj=cfg.label, field="datasource"
            )
        ds = self.datasources[cfg.datasource]
        cls = connector_class_for(ds.kind, ds.label)
        settings = cls.model_schema.validate(cfg.settings, cfg.label)
        return ModelConfig(cfg.name, cfg.datasource, settings)

    @staticmethod
    def validate_broker(cfg: BrokerConfig) -> BrokerConfig:
        check_name(cfg.name, "broker")
        cls = broker_class_for(cfg.kind, cfg.label)
        settings = cls.schema.validate(cfg.settings, cfg.label)
        return BrokerConfig(cfg.name, cfg.kind, settings, cfg.secret)

    def validate_route(self, cfg: RouteConfig) -> RouteConfig:
        check_name(cfg.name, "route")
        if cfg.model not in self.models:
            raise NotFoundError(f"model {cfg.model!r} does not exist", obj=cfg.label, field="model")
        if cfg.broker not in self.brokers:
            raise NotFoundError(f"broker {cfg.broker!r} does not exist", obj=cfg.label, field="broker")
        settings = ROUTE_SCHEMA.validate(cfg.settings, cfg.label)
        publisher = broker_class_for(self.brokers[cfg.broker].kind, cfg.label)
        problem = check_template(settings["topic"], publisher.validate_topic)
        if problem:
            raise ConfigError(problem, obj=cfg.label, field="topic")
        return RouteConfig(cfg.name, cfg.model, cfg.broker, settings)

    # -- mutation --------------------------------------------------------------------------
    def _check_new(self, table: dict[str, Any], object_type: str, name: str, replace: bool) -> None:
        if name in table and not replace:
            raise ConfigError(
                f"a {object_type} with this name already exists", obj=f"{object_type} {name!r}", field="name"
            )

    def put_datasource(self, cfg: DatasourceConfig, *, replace: bool = False) -> DatasourceConfig:
        self._check_new(self.datasources, "datasource", cfg.name, replace)
        valid = self.validate_datasource(cfg)
        self.datasources[valid.name] = valid
        return valid

    def put_model(self, cfg: ModelConfig, *, replace: bool = False) -> ModelConfig:
        self._check_new(self.models, "model", cfg.name, replace)
        valid = self.validate_model(cfg)
        self.models[valid.name] = valid
        return valid

    def put_broker(self, cfg: BrokerConfig, *, replace: bool = False) -> BrokerConfig:
        self._check_new(self.brokers, "broker", cfg.name, replace)
        valid = self.validate_broker(cfg)
        self.brokers[valid.name] = valid
        return valid

    def put_route(self, cfg: RouteConfig, *, replace: bool = False) -> RouteConfig:
        self._check_new(self.routes, "route", cfg.name, replace)
        valid = self.validate_route(cfg)
        self.routes[valid.name] = valid
        return valid

    def remove(self, object_type: str, name: str) -> list[str]:
        """Remove an object and what depends on it; return labels of everything removed."""
        removed: list[str] = []
        if object_type == "datasource":
            ds = self.datasource(name)
            for m in self.models_of(name):
                removed += self.remove("model", m.name)
            del self.datasources[name]
            removed.append(ds.label)
        elif object_type == "model":
            m = self.model(name)
            for r in self.routes_of_model(name):
                removed += self.remove("route", r.name)
            del self.models[name]
            removed.append(m.label)
        elif object_type == "broker":
            b = self.broker(name)
            for r in self.routes_of_broker(name):
                removed += self.remove("route", r.name)
            del self.brokers[name]
            removed.append(b.label)
        elif object_type == "route":
            r = self.route(name)
            del self.routes[name]
            removed.append(r.label)
        else:
            raise ConfigError(f"unknown object type {object_type!r}", field="type")
        return removed

    # -- persistence -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def with_secret(d: dict[str, Any], ref: SecretRef | None) -> dict[str, Any]:
            if ref is not None:
                d["secret"] = ref.to_json()
            return d

        return {
            "schema_version": SCHEMA_VERSION,
            "datasources": {
                n: with_secret({"kind": c.kind, "settings": c.settings}, c.secret)
                for n, c in sorted(self.datasources.items())
            },
            "models": {
                n: {"datasource": c.datasource, "settings": c.settings}
                for n, c in sorted(self.models.items())
            },
            "brokers": {
                n: with_secret({"kind": c.kind, "settings": c.settings}, c.secret)
                for n, c in sorted(self.brokers.items())
            },
            "routes": {
                n: {"model": c.model, "broker": c.broker, "settings": c.settings}
                for n, c in sorted(self.routes.items())
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "workspace") -> Workspace:
        if not isinstance(data, dict):
            raise ConfigError("expected a JSON object", obj=source)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"unsupported schema_version {version!r} (this EventDesk reads {SCHEMA_VERSION})",
                obj=source,
                field="schema_version",
            )
        ws = cls()
        try:
            for name, d in dict(data.get("datasources") or {}).items():
                obj = f"datasource {name!r}"
                ws.put_datasource(
                    DatasourceConfig(
                        name,
                        d["kind"],
                        dict(d.get("settings") or {}),
                        SecretRef.from_json(d.get("secret"), obj),
                    )
                )
            for name, d in dict(data.get("models") or {}).items():
                ws.put_model(ModelConfig(name, d["datasource"], dict(d.get("settings") or {})))
            for name, d in dict(data.get("brokers") or {}).items():
                obj = f"broker {name!r}"
                ws.put_broker(
                    BrokerConfig(
                        name,
                        d["kind"],
                        dict(d.get("settings") or {}),
                        SecretRef.from_json(d.get("secret"), obj),
                    )
                )
            for name, d in dict(data.get("routes") or {}).items():
                ws.put_route(RouteConfig(name, d["model"], d["broker"], dict(d.get("settings") or {})))
        except KeyError as exc:
            raise ConfigError(f"missing key {exc.args[0]!r}", obj=source) from None
        except (TypeError, AttributeError) as exc:
            raise ConfigError(f"malformed entry: {exc}", obj=source) from None
        return ws


def connector_class_for(kind: str, obj: str) -> Any:
    try:
        return connector_class(kind)
    except ConfigError as exc:
        raise ConfigError(exc.detail, obj=obj, field="kind") from None


def broker_class_for(kind: str, obj: str) -> Any:
    try:
        return broker_class(kind)
    except ConfigError as exc:
        raise ConfigError(exc.detail, obj=obj, field="kind") from None


def load_workspace(path: Path) -> Workspace:
    """Read the workspace at ``path``; a missing file is an empty workspace."""
    if not path.exists():
        return Workspace()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}); the last good copy is {path.name}.bak",
            obj=f"workspace file {str(path)!r}",
        ) from None
    return Workspace.from_json(data, source=f"workspace file {str(path)!r}")


def save_workspace(ws: Workspace, path: Path) -> None:
    """Write atomically; keep the previous good file as ``.bak``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(ws.to_json(), indent=2, sort_keys=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
