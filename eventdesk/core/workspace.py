"""The workspace: datasources, models, brokers and routes, saved as JSON without secrets.

The file has a ``schema_version``, is written atomically (temporary file + rename) and the
last good version is kept beside it as ``workspace.json.bak``. A file of an older version is
upgraded as it is read (and saved as the current version with the next change, the old one
becoming the ``.bak``); a file of a newer version is refused, untouched.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from eventdesk import __version__
from eventdesk.core.errors import ConfigError, DiskFullError, NotFoundError
from eventdesk.core.object_configs import BrokerConfig as BrokerConfig
from eventdesk.core.object_configs import DatasourceConfig as DatasourceConfig
from eventdesk.core.object_configs import ModelConfig as ModelConfig
from eventdesk.core.object_configs import RouteConfig as RouteConfig
from eventdesk.core.registry import broker_class, connector_class
from eventdesk.core.route_settings import ON_POISON as ON_POISON
from eventdesk.core.route_settings import ROUTE_SCHEMA as ROUTE_SCHEMA
from eventdesk.core.route_settings import RouteSettings as RouteSettings
from eventdesk.core.secrets import SecretRef, new_workspace_id
from eventdesk.core.settings_schema import json_kind
from eventdesk.core.topic_template import check_template

# 2: the workspace's own id (its secrets' keyring accounts are named by it) and its capture's id.
# An EventDesk that reads version 1 only would drop them on saving, so it must refuse these files.
SCHEMA_VERSION = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_WORKSPACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OBJECT_TYPES = ("datasource", "model", "broker", "route")


def check_name(name: str, object_type: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            "a name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            obj=f"{object_type} {name!r}",
            field="name",
        )
    return name


AnyConfig = DatasourceConfig | ModelConfig | BrokerConfig | RouteConfig
# Where each object type lives in the file, and the key that names its parent object.
_SECTIONS = {"datasource": "datasources", "model": "models", "broker": "brokers", "route": "routes"}


@dataclass
class InvalidObject:
    """An object in the workspace file that does not validate: kept as it was read, with the reason.

    It is saved back unchanged, shown marked, and can be replaced (``put_*`` with
    ``replace=True``) or removed; nothing runs it.
    """

    object_type: str
    name: str
    raw: Any
    error: ConfigError

    @property
    def label(self) -> str:
        return f"{self.object_type} {self.name!r}"

    @property
    def key(self) -> str:
        return f"{self.object_type}/{self.name}"

    def ref(self, key: str) -> str | None:
        """The raw entry's text value at ``key`` (a model's datasource, ...), if it has one."""
        value = self.raw.get(key) if isinstance(self.raw, dict) else None
        return value if isinstance(value, str) else None

    @property
    def settings(self) -> dict[str, Any]:
        value = self.raw.get("settings") if isinstance(self.raw, dict) else None
        return dict(value) if isinstance(value, dict) else {}

    @property
    def secret(self) -> SecretRef | None:
        try:
            return SecretRef.from_json(self.raw.get("secret") if isinstance(self.raw, dict) else None, "")
        except ConfigError:
            return None

    def config(self) -> AnyConfig:
        """The stored values as a config object (not valid), e.g. to open them in an edit form."""
        if self.object_type == "datasource":
            return DatasourceConfig(self.name, self.ref("kind") or "", self.settings, self.secret)
        if self.object_type == "model":
            return ModelConfig(self.name, self.ref("datasource") or "", self.settings)
        if self.object_type == "broker":
            return BrokerConfig(self.name, self.ref("kind") or "", self.settings, self.secret)
        return RouteConfig(self.name, self.ref("model") or "", self.ref("broker") or "", self.settings)


@dataclass(frozen=True)
class Removal:
    """What removing one object takes with it: the dry run behind every removal."""

    object_type: str
    name: str
    models: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    secret: SecretRef | None = None
    checkpoints: tuple[str, ...] = ()  # the models whose checkpoint goes with them
    positions: tuple[str, ...] = ()  # the routes whose delivery position goes with them
    # (model, what it keeps on its source server): a replication slot that holds WAL until dropped
    held: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.object_type} {self.name!r}"

    @property
    def labels(self) -> list[str]:
        """Everything that goes, dependants first, the object itself last."""
        out = [f"route {r!r}" for r in self.routes if not (self.object_type == "route" and r == self.name)]
        out += [f"model {m!r}" for m in self.models if not (self.object_type == "model" and m == self.name)]
        return [*out, self.label]

    @property
    def dependants(self) -> list[str]:
        return self.labels[:-1]

    def describe(self) -> list[str]:
        """One line per thing that goes, in words for a confirmation."""

        def line(label: str, kept: bool, what: str) -> str:
            return f"{label} and its {what}" if kept else label

        lines = [line(f"route {r!r}", r in self.positions, "delivery position") for r in self.routes]
        lines += [line(f"model {m!r}", m in self.checkpoints, "checkpoint") for m in self.models]
        if self.object_type in ("datasource", "broker"):
            lines.append(self.label)
        if self.secret is not None and self.secret.store == "keyring":
            lines.append(f"the secret of {self.label} in the OS keyring")
        return lines


@dataclass
class Workspace:
    """All configured objects; every mutation validates before it changes anything.

    Objects of a loaded file that do not validate are kept apart in ``invalid`` (keyed like
    ``model/NAME``), so the rest of the workspace loads, runs and can be edited.
    """

    datasources: dict[str, DatasourceConfig] = field(default_factory=dict)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    brokers: dict[str, BrokerConfig] = field(default_factory=dict)
    routes: dict[str, RouteConfig] = field(default_factory=dict)
    invalid: dict[str, InvalidObject] = field(default_factory=dict)
    # The capture this workspace's checkpoints and route positions live in (its meta capture_id).
    capture_id: str | None = None
    # Namespaces the keyring accounts of this workspace's secrets (see core/secrets.py); a file
    # without one (older versions) gets a new one, saved with the next change.
    workspace_id: str = field(default_factory=new_workspace_id)

    @property
    def empty(self) -> bool:
        return not (self.datasources or self.models or self.brokers or self.routes or self.invalid)

    def invalid_of(self, object_type: str) -> dict[str, InvalidObject]:
        """The invalid objects of one type, by name."""
        return {o.name: o for o in self.invalid.values() if o.object_type == object_type}

    @overload
    def stored(self, object_type: Literal["datasource"]) -> dict[str, DatasourceConfig]: ...
    @overload
    def stored(self, object_type: Literal["model"]) -> dict[str, ModelConfig]: ...
    @overload
    def stored(self, object_type: Literal["broker"]) -> dict[str, BrokerConfig]: ...
    @overload
    def stored(self, object_type: Literal["route"]) -> dict[str, RouteConfig]: ...
    @overload
    def stored(self, object_type: str) -> dict[str, AnyConfig]: ...
    def stored(self, object_type: str) -> dict[str, Any]:
        """Every object of a type by name, an invalid one as its stored (unvalidated) values."""
        table: dict[str, Any] = dict(self._table(object_type))
        table.update({n: o.config() for n, o in self.invalid_of(object_type).items()})
        return table

    def _table(self, object_type: str) -> dict[str, Any]:
        if object_type not in _SECTIONS:
            raise ConfigError(f"unknown object type {object_type!r}", field="type")
        table: dict[str, Any] = getattr(self, _SECTIONS[object_type])
        return table

    def _raise_if_invalid(self, object_type: str, name: str) -> None:
        bad = self.invalid.get(f"{object_type}/{name}")
        if bad is not None:
            raise ConfigError(bad.error.detail, obj=bad.error.obj or bad.label, field=bad.error.field)

    # -- lookups ---------------------------------------------------------------------------
    def datasource(self, name: str) -> DatasourceConfig:
        try:
            return self.datasources[name]
        except KeyError:
            self._raise_if_invalid("datasource", name)
            raise NotFoundError("no such datasource", obj=f"datasource {name!r}") from None

    def model(self, name: str) -> ModelConfig:
        try:
            return self.models[name]
        except KeyError:
            self._raise_if_invalid("model", name)
            raise NotFoundError("no such model", obj=f"model {name!r}") from None

    def broker(self, name: str) -> BrokerConfig:
        try:
            return self.brokers[name]
        except KeyError:
            self._raise_if_invalid("broker", name)
            raise NotFoundError("no such broker", obj=f"broker {name!r}") from None

    def route(self, name: str) -> RouteConfig:
        try:
            return self.routes[name]
        except KeyError:
            self._raise_if_invalid("route", name)
            raise NotFoundError("no such route", obj=f"route {name!r}") from None

    def _missing(self, object_type: str, name: str, obj: str) -> ConfigError:
        """The error for a reference to ``name`` that is not a valid object."""
        bad = self.invalid.get(f"{object_type}/{name}")
        if bad is not None:
            return ConfigError(f"{bad.label} is invalid; fix or remove it first", obj=obj, field=object_type)
        return NotFoundError(f"{object_type} {name!r} does not exist", obj=obj, field=object_type)

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
            raise self._missing("datasource", cfg.datasource, cfg.label)
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
            raise self._missing("model", cfg.model, cfg.label)
        if cfg.broker not in self.brokers:
            raise self._missing("broker", cfg.broker, cfg.label)
        settings = ROUTE_SCHEMA.validate(cfg.settings, cfg.label)
        publisher = broker_class_for(self.brokers[cfg.broker].kind, cfg.label)
        problem = check_template(settings["topic"], publisher.validate_topic)
        if problem:
            raise ConfigError(problem, obj=cfg.label, field="topic")
        return RouteConfig(cfg.name, cfg.model, cfg.broker, settings)

    # -- mutation --------------------------------------------------------------------------
    def _check_new(self, table: dict[str, Any], object_type: str, name: str, replace: bool) -> None:
        if replace:
            return
        if name in table:
            raise ConfigError(
                f"a {object_type} with this name already exists", obj=f"{object_type} {name!r}", field="name"
            )
        if f"{object_type}/{name}" in self.invalid:
            raise ConfigError(
                f"an invalid {object_type} with this name exists; replace or remove it",
                obj=f"{object_type} {name!r}",
                field="name",
            )

    def _stored(self, object_type: str, valid: AnyConfig) -> None:
        """Keep a validated object; it replaces an invalid one of that name, whose dependants may now
        validate too."""
        if isinstance(valid, DatasourceConfig):
            valid.workspace_id = self.workspace_id
        self._table(object_type)[valid.name] = valid
        if self.invalid.pop(f"{object_type}/{valid.name}", None) is not None:
            self._retry_invalid()

    def put_datasource(self, cfg: DatasourceConfig, *, replace: bool = False) -> DatasourceConfig:
        self._check_new(self.datasources, "datasource", cfg.name, replace)
        valid = self.validate_datasource(cfg)
        self._stored("datasource", valid)
        return valid

    def put_model(self, cfg: ModelConfig, *, replace: bool = False) -> ModelConfig:
        self._check_new(self.models, "model", cfg.name, replace)
        valid = self.validate_model(cfg)
        self._stored("model", valid)
        return valid

    def put_broker(self, cfg: BrokerConfig, *, replace: bool = False) -> BrokerConfig:
        self._check_new(self.brokers, "broker", cfg.name, replace)
        valid = self.validate_broker(cfg)
        self._stored("broker", valid)
        return valid

    def put_route(self, cfg: RouteConfig, *, replace: bool = False) -> RouteConfig:
        self._check_new(self.routes, "route", cfg.name, replace)
        valid = self.validate_route(cfg)
        self._stored("route", valid)
        return valid

    def _put_entry(self, object_type: str, name: str, entry: Any) -> None:
        """Add one entry read from the file; if it does not validate, keep it in ``invalid``."""
        key = f"{object_type}/{name}"
        try:
            cfg = _parse_entry(object_type, name, entry)
            if object_type == "datasource":
                valid = self.validate_datasource(cfg)  # type: ignore[arg-type]
                valid.workspace_id = self.workspace_id
                self.datasources[name] = valid
            elif object_type == "model":
                self.models[name] = self.validate_model(cfg)  # type: ignore[arg-type]
            elif object_type == "broker":
                self.brokers[name] = self.validate_broker(cfg)  # type: ignore[arg-type]
            else:
                self.routes[name] = self.validate_route(cfg)  # type: ignore[arg-type]
        except ConfigError as exc:
            self.invalid[key] = InvalidObject(object_type, name, entry, exc)
        else:
            self.invalid.pop(key, None)

    def _retry_invalid(self) -> None:
        """Validate the invalid objects again (one may have failed only because of another)."""
        for object_type in OBJECT_TYPES:
            for bad in list(self.invalid_of(object_type).values()):
                self._put_entry(object_type, bad.name, bad.raw)

    def removal(self, object_type: str, name: str) -> Removal:
        """What ``remove(object_type, name)`` would remove, without removing anything."""
        table = self._table(object_type)
        bad = self.invalid.get(f"{object_type}/{name}")
        if name not in table and bad is None:
            raise NotFoundError(f"no such {object_type}", obj=f"{object_type} {name!r}")
        stored = self.stored(object_type)[name]

        def children(object_type: str, key: str, parent: str) -> list[str]:
            """Valid and invalid objects of ``object_type`` whose ``key`` names ``parent``."""
            return sorted(n for n, c in self.stored(object_type).items() if getattr(c, key) == parent)

        models = (
            [name]
            if object_type == "model"
            else children("model", "datasource", name)
            if object_type == "datasource"
            else []
        )
        if object_type == "route":
            routes = [name]
        elif object_type == "broker":
            routes = children("route", "broker", name)
        else:
            routes = sorted({r for m in models for r in children("route", "model", m)})
        secret = getattr(stored, "secret", None)
        held = []
        for m in models:
            cfg = self.models.get(m)
            ds = self.datasources.get(cfg.datasource) if cfg is not None else None
            what = None if cfg is None or ds is None else connector_class(ds.kind).held_on_server(ds, cfg)
            if what is not None:
                held.append((m, what))
        return Removal(object_type, name, tuple(models), tuple(routes), secret, held=tuple(held))

    def remove(self, object_type: str, name: str) -> list[str]:
        """Remove an object and what depends on it; return labels of everything removed."""
        plan = self.removal(object_type, name)
        for r in plan.routes:
            self.routes.pop(r, None)
            self.invalid.pop(f"route/{r}", None)
        for m in plan.models:
            self.models.pop(m, None)
            self.invalid.pop(f"model/{m}", None)
        self._table(object_type).pop(name, None)
        self.invalid.pop(f"{object_type}/{name}", None)
        return plan.labels

    # -- persistence -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def with_secret(d: dict[str, Any], ref: SecretRef | None) -> dict[str, Any]:
            if ref is not None:
                d["secret"] = ref.to_json()
            return d

        sections: dict[str, dict[str, Any]] = {
            "datasources": {
                n: with_secret({"kind": c.kind, "settings": c.settings}, c.secret)
                for n, c in self.datasources.items()
            },
            "models": {
                n: {"datasource": c.datasource, "settings": c.settings} for n, c in self.models.items()
            },
            "brokers": {
                n: with_secret({"kind": c.kind, "settings": c.settings}, c.secret)
                for n, c in self.brokers.items()
            },
            "routes": {
                n: {"model": c.model, "broker": c.broker, "settings": c.settings}
                for n, c in self.routes.items()
            },
        }
        for bad in self.invalid.values():
            sections[_SECTIONS[bad.object_type]][bad.name] = bad.raw
        head: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "workspace_id": self.workspace_id}
        if self.capture_id is not None:
            head["capture_id"] = self.capture_id
        return head | {section: dict(sorted(entries.items())) for section, entries in sections.items()}

    @classmethod
    def from_json(cls, data: Any, source: str = "workspace") -> Workspace:
        """Read a parsed workspace file: a malformed file is a ConfigError naming ``source`` and the
        key; an object that does not validate is kept in ``invalid``."""
        if not isinstance(data, dict):
            raise ConfigError(f"expected a JSON object, got {json_kind(data)}", obj=source)
        data = upgrade_workspace(data, source)
        ws = cls()
        workspace_id = data.get("workspace_id")
        if workspace_id is None:
            raise ConfigError("missing", obj=source, field="workspace_id")
        if not isinstance(workspace_id, str) or not _WORKSPACE_ID.match(workspace_id):
            raise ConfigError("expected 1-64 letters, digits, '_' or '-'", obj=source, field="workspace_id")
        ws.workspace_id = workspace_id
        capture_id = data.get("capture_id")
        if capture_id is not None and not (isinstance(capture_id, str) and capture_id):
            raise ConfigError(f"expected a capture id, got {capture_id!r}", obj=source, field="capture_id")
        ws.capture_id = capture_id
        for object_type in OBJECT_TYPES:
            section = _SECTIONS[object_type]
            entries = data.get(section)
            if entries is None:
                continue
            if not isinstance(entries, dict):
                raise ConfigError(
                    f"expected a JSON object of {object_type} names, got {json_kind(entries)}",
                    obj=source,
                    field=section,
                )
            for name, entry in entries.items():
                ws._put_entry(object_type, name, entry)
        return ws


def _upgrade_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (up to commit 301e23e) had no workspace id: it gets a new one. (Files of the
    development versions between 1 and 2 may have ids already: they are kept.)"""
    return {"workspace_id": new_workspace_id()} | data | {"schema_version": 2}


# The upgrade from each older version to the next; each returns a new dict.
_UPGRADES = {1: _upgrade_1_to_2}


def upgrade_workspace(data: dict[str, Any], source: str = "workspace") -> dict[str, Any]:
    """A parsed workspace file of any known version as the current version; a newer or unknown
    version is a ConfigError naming ``source`` and the key."""
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise ConfigError(
            f"written by a newer EventDesk (needs workspace version {version}; EventDesk {__version__}"
            f" reads workspace versions up to {SCHEMA_VERSION}): open it with that newer EventDesk."
            " The file was left unchanged",
            obj=source,
            field="schema_version",
        )
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not (version in _UPGRADES or version == SCHEMA_VERSION)
    ):
        raise ConfigError(
            f"unsupported schema_version {version!r} (this EventDesk reads"
            f" {', '.join(map(str, sorted(_UPGRADES)))} to {SCHEMA_VERSION})",
            obj=source,
            field="schema_version",
        )
    while data["schema_version"] != SCHEMA_VERSION:
        data = _UPGRADES[data["schema_version"]](data)
    return data


def _parse_entry(object_type: str, name: str, entry: Any) -> AnyConfig:
    """One object's entry of the file as a config object; a ConfigError names the key at fault."""
    obj = f"{object_type} {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"expected a JSON object, got {json_kind(entry)}", obj=obj)

    def text(key: str) -> str:
        value = entry.get(key)
        if value is None:
            raise ConfigError("missing", obj=obj, field=key)
        if not isinstance(value, str):
            raise ConfigError(f"expected text, got {json_kind(value)}", obj=obj, field=key)
        return value

    settings = entry.get("settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError(f"expected a JSON object, got {json_kind(settings)}", obj=obj, field="settings")
    if object_type == "datasource":
        return DatasourceConfig(
            name, text("kind"), dict(settings), SecretRef.from_json(entry.get("secret"), obj)
        )
    if object_type == "model":
        return ModelConfig(name, text("datasource"), dict(settings))
    if object_type == "broker":
        return BrokerConfig(name, text("kind"), dict(settings), SecretRef.from_json(entry.get("secret"), obj))
    return RouteConfig(name, text("model"), text("broker"), dict(settings))


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
    source = f"workspace file {str(path)!r}"
    backup = f"the last good copy is {path.name}.bak"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", obj=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); {backup}", obj=source) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno}); {backup}", obj=source) from None
    except RecursionError:
        raise ConfigError(f"JSON nested too deeply; {backup}", obj=source) from None
    return Workspace.from_json(data, source=source)


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
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DiskFullError(str(path)) from None
        raise
