"""An EventDesk home: the workspace file, the capture and the secrets, edited together.

The CLI and the desktop app both change the workspace only through :class:`Home`, so a
secret always goes to the store before a reference is saved, and removals clean up after
themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from eventdesk.core.capture import Capture
from eventdesk.core.errors import ConfigError
from eventdesk.core.paths import Paths, resolve_paths
from eventdesk.core.registry import connector_class
from eventdesk.core.secrets import SecretRef, delete_secret, env_ref, migrate_ref, store_secret
from eventdesk.core.workspace import (
    BrokerConfig,
    DatasourceConfig,
    ModelConfig,
    RouteConfig,
    Workspace,
    load_workspace,
    save_workspace,
)

log = logging.getLogger(__name__)


@dataclass
class Home:
    paths: Paths
    workspace: Workspace = field(default_factory=Workspace)
    _capture: Capture | None = None

    @classmethod
    def open(cls, home: str | None = None) -> Home:
        paths = resolve_paths(home).ensure()
        opened = cls(paths=paths, workspace=load_workspace(paths.workspace_file))
        opened.migrate_secrets()
        return opened

    @property
    def capture(self) -> Capture:
        if self._capture is None:
            self._capture = Capture(self.paths.capture_file)
        return self._capture

    def close(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None

    def save(self) -> None:
        save_workspace(self.workspace, self.paths.workspace_file)

    def reload(self) -> None:
        self.workspace = load_workspace(self.paths.workspace_file)

    # -- secrets ---------------------------------------------------------------------------
    def migrate_secrets(self) -> None:
        """Copy secrets kept under the old keyring accounts, shared by every workspace, to this
        workspace's own and save the new references (:func:`~eventdesk.core.secrets.migrate_ref`
        says why the old entries stay). Touches the keyring only for such old references."""
        ws = self.workspace
        changed = False
        for object_type, table in (("datasource", ws.datasources), ("broker", ws.brokers)):
            for cfg in table.values():
                ref = migrate_ref(cfg.secret, ws.workspace_id, object_type, cfg.name)
                if ref != cfg.secret:
                    cfg.secret, changed = ref, True
        if changed:
            try:
                self.save()
            except OSError as exc:  # a read-only home still runs, on the copies, this time
                log.warning(
                    "%s: the moved secret references are not saved: %s", self.paths.workspace_file, exc
                )

    def _secret_ref(
        self, object_type: str, name: str, secret: str | None, secret_env: str | None
    ) -> SecretRef | None:
        obj = f"{object_type} {name!r}"
        if secret is not None and secret_env is not None:
            raise ConfigError(
                "give the secret either on stdin or through --secret-env, not both", obj=obj, field="secret"
            )
        if secret_env is not None:
            return env_ref(secret_env, obj)
        if secret is not None:
            if not secret:
                raise ConfigError("the secret is empty", obj=obj, field="secret")
            return store_secret(object_type, name, secret, workspace_id=self.workspace.workspace_id)
        return None

    # -- adding ----------------------------------------------------------------------------
    def add_datasource(
        self,
        name: str,
        kind: str,
        settings: dict[str, Any],
        *,
        secret: str | None = None,
        secret_env: str | None = None,
        replace: bool = False,
    ) -> DatasourceConfig:
        cfg = self._put_with_secret(DatasourceConfig(name, kind, settings), secret, secret_env, replace)
        assert isinstance(cfg, DatasourceConfig)
        return cfg

    def add_model(
        self, name: str, datasource: str, settings: dict[str, Any], *, replace: bool = False
    ) -> ModelConfig:
        cfg = self.workspace.put_model(ModelConfig(name, datasource, settings), replace=replace)
        self.save()
        return cfg

    def add_broker(
        self,
        name: str,
        kind: str,
        settings: dict[str, Any],
        *,
        secret: str | None = None,
        secret_env: str | None = None,
        replace: bool = False,
    ) -> BrokerConfig:
        cfg = self._put_with_secret(BrokerConfig(name, kind, settings), secret, secret_env, replace)
        assert isinstance(cfg, BrokerConfig)
        return cfg

    def _put_with_secret(
        self,
        cfg: DatasourceConfig | BrokerConfig,
        secret: str | None,
        secret_env: str | None,
        replace: bool,
    ) -> DatasourceConfig | BrokerConfig:
        """Validate first, store the secret only then, keep the old secret on a replace without one."""
        ws = self.workspace
        is_ds = isinstance(cfg, DatasourceConfig)
        object_type = "datasource" if is_ds else "broker"
        old = (ws.datasources if is_ds else ws.brokers).get(cfg.name)

        def put(candidate: DatasourceConfig | BrokerConfig, replace: bool) -> DatasourceConfig | BrokerConfig:
            if isinstance(candidate, DatasourceConfig):
                return ws.put_datasource(candidate, replace=replace)
            return ws.put_broker(candidate, replace=replace)

        valid = ws.validate_datasource(cfg) if isinstance(cfg, DatasourceConfig) else ws.validate_broker(cfg)
        if not replace and old is not None:
            put(cfg, False)  # raises "already exists"
        if isinstance(valid, DatasourceConfig):
            keeps_secret = replace and old is not None and old.secret is not None
            has_secret = secret is not None or secret_env is not None or keeps_secret
            connector_class(valid.kind).check_datasource(valid, has_secret)
        ref = self._secret_ref(object_type, cfg.name, secret, secret_env)
        if ref is None and old is not None and replace:
            ref = old.secret
        cfg.secret = ref
        stored = put(cfg, replace)
        self.save()
        return stored

    def add_route(
        self, name: str, model: str, broker: str, settings: dict[str, Any], *, replace: bool = False
    ) -> RouteConfig:
        is_new = name not in self.workspace.routes
        cfg = self.workspace.put_route(RouteConfig(name, model, broker, settings), replace=replace)
        if is_new and self.capture.route_position(name) is None:
            # A new route republishes what arrives from now on, not the model's whole history.
            self.capture.set_route_position(name, self.capture.last_pos(model))
        self.save()
        return cfg

    def set_route_enabled(self, name: str, enabled: bool) -> RouteConfig:
        route = self.workspace.route(name)
        route.settings["enabled"] = enabled
        self.save()
        return route

    def set_secret(
        self, object_type: str, name: str, secret: str | None, secret_env: str | None = None
    ) -> None:
        """Set, replace (or with both None, remove) the secret of a datasource or broker."""
        target: DatasourceConfig | BrokerConfig
        target = (
            self.workspace.datasource(name) if object_type == "datasource" else self.workspace.broker(name)
        )
        if secret is None and secret_env is None:
            if isinstance(target, DatasourceConfig):
                connector_class(target.kind).check_datasource(target, False)
            delete_secret(target.secret)
            target.secret = None
        else:
            target.secret = self._secret_ref(object_type, name, secret, secret_env)
        self.save()

    def remove(self, object_type: str, name: str) -> list[str]:
        ws = self.workspace
        secrets: list[SecretRef | None] = []
        models = (
            [name]
            if object_type == "model"
            else [m.name for m in ws.models_of(name)]
            if object_type == "datasource"
            else []
        )
        routes = (
            [name]
            if object_type == "route"
            else [r.name for r in ws.routes_of_broker(name)]
            if object_type == "broker"
            else [r.name for m in models for r in ws.routes_of_model(m)]
        )
        if object_type == "datasource":
            secrets.append(ws.datasource(name).secret)
        elif object_type == "broker":
            secrets.append(ws.broker(name).secret)
        removed = ws.remove(object_type, name)
        self.save()
        for ref in secrets:
            delete_secret(ref)
        for m in models:
            self.capture.forget(model=m)
        for r in routes:
            self.capture.forget(route=r)
        return removed
