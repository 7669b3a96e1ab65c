"""An EventDesk home: the workspace file, the capture and the secrets, edited together.

The CLI and the desktop app both change the workspace only through :class:`Home`, so a
secret always goes to the store before a reference is saved, and removals clean up after
themselves. A home opened with ``lock=`` holds the home's lock (one runner, app or edit at a
time); the workspace records which capture is its own, so a lost or swapped capture is refused
instead of silently replaced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eventdesk.core.capture import Capture
from eventdesk.core.contracts import State
from eventdesk.core.envelope import utc_now_iso
from eventdesk.core.errors import CaptureUnusableError, ConfigError, EventDeskError, HomeInUseError
from eventdesk.core.home_lock import Holder, HomeLock, holder
from eventdesk.core.paths import Paths, resolve_paths
from eventdesk.core.registry import connector_class
from eventdesk.core.secrets import SecretRef, delete_secret, env_ref, migrate_ref, store_secret
from eventdesk.core.workspace import (
    BrokerConfig,
    DatasourceConfig,
    ModelConfig,
    Removal,
    RouteConfig,
    Workspace,
    load_workspace,
    save_workspace,
)

log = logging.getLogger(__name__)

FRESH_CAPTURE_HINT = (
    "start with a fresh capture: `eventdesk run --fresh-capture` (in the app: Start with a fresh"
    " capture); models then follow new changes only and routes start at the end of the new"
    " capture, so nothing is published again"
)


@dataclass
class Home:
    paths: Paths
    workspace: Workspace = field(default_factory=Workspace)
    _capture: Capture | None = None
    lock: HomeLock | None = None
    # Set when the home was opened read only because another process holds it.
    read_only: HomeInUseError | None = None
    fresh_capture: bool = False
    # What opening the capture did that the user should hear of (a fresh capture, the old one's new name).
    capture_notice: str | None = None

    @classmethod
    def open(
        cls,
        home: str | None = None,
        *,
        lock: str | None = None,
        read_only_if_held: bool = False,
        fresh_capture: bool = False,
    ) -> Home:
        """Open a home; with ``lock`` (``run``, ``app``, ``edit``) take its lock first, or open it
        read only if ``read_only_if_held`` and another process holds it (else raise
        :class:`HomeInUseError`). ``fresh_capture``: the capture is started anew (the old file,
        if any, is moved aside, never deleted)."""
        paths = resolve_paths(home).ensure()
        held: HomeLock | None = None
        refused: HomeInUseError | None = None
        if lock is not None:
            try:
                held = HomeLock.acquire(paths.lock_file, lock, home=str(paths.data_dir))
            except HomeInUseError as exc:
                if not read_only_if_held:
                    raise
                refused = exc
        try:
            workspace = load_workspace(paths.workspace_file)
        except BaseException:
            if held is not None:
                held.release()
            raise
        opened = cls(
            paths=paths, workspace=workspace, lock=held, read_only=refused, fresh_capture=fresh_capture
        )
        opened.migrate_secrets()
        return opened

    @property
    def capture(self) -> Capture:
        if self._capture is None:
            self._capture = self._open_capture()
        return self._capture

    def _open_capture(self) -> Capture:
        if self.fresh_capture and self.read_only is None:
            return self._start_fresh_capture()
        path = self.paths.capture_file
        recorded = self.workspace.capture_id
        obj = f"capture {str(path)!r}"
        if recorded is not None and not path.exists():
            raise CaptureUnusableError(
                f"the workspace's capture (id {recorded}) is missing: deleted or moved? Its events,"
                " checkpoints and route positions went with it. Put it back, or " + FRESH_CAPTURE_HINT,
                obj=obj,
            )
        capture = Capture(path, readonly=self.read_only is not None)
        if recorded is None:
            if self.lock is not None and capture.capture_id is not None:
                self._adopt(capture)  # a workspace from before capture ids
        elif capture.capture_id != recorded:
            found = capture.capture_id
            capture.close()
            raise CaptureUnusableError(
                f"belongs to another workspace (its id is {found}, the workspace's capture is {recorded}):"
                " its checkpoints and route positions are not this workspace's. Put the right capture"
                " back, or " + FRESH_CAPTURE_HINT,
                obj=obj,
            )
        return capture

    def _adopt(self, capture: Capture) -> None:
        self.workspace.capture_id = capture.capture_id
        self.save()

    def start_fresh_capture(self) -> Capture:
        """Replace the capture with a new, empty one (the old file, if any, is moved aside and
        named in :attr:`capture_notice`). Routes start at its end and models at ``now`` even if
        their ``since`` setting says otherwise: reading a model's history again would publish
        it again, and the old checkpoints went with the old capture."""
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        self._capture = self._start_fresh_capture()
        return self._capture

    def _start_fresh_capture(self) -> Capture:
        if self.read_only is not None:
            raise self.read_only
        path = self.paths.capture_file
        aside = _move_aside(path)
        capture = Capture(path)
        for model in self.workspace.models.values():
            if model.settings.get("since", "now") != "now":
                capture.append(model.name, [], "now")
        for route in self.workspace.routes.values():
            capture.set_route_position(route.name, capture.last_pos(route.model))
        self._adopt(capture)
        self.fresh_capture = False
        self.capture_notice = f"started a fresh capture at {path}" + (
            f"; the previous one is kept as {aside}" if aside is not None else ""
        )
        return capture

    def close(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def holder(self) -> Holder | None:
        """Who holds this home now (this process too), or None."""
        return holder(self.paths.lock_file)

    def live_states(self) -> dict[str, tuple[str, str | None]]:
        """Each object's recorded ``(state, detail)``; one recorded by a process that no longer
        holds the home (a runner killed or crashed) is ``stopped``, saying so."""
        current = self.holder()
        live_pid = None if current is None else current.pid
        shown: dict[str, tuple[str, str | None]] = {}
        for st in self.capture.states():
            if st.state == State.STOPPED.value or (st.pid is not None and st.pid == live_pid):
                shown[st.object] = (st.state, st.detail)
            else:
                last = st.state + (f": {st.detail}" if st.detail else "")
                shown[st.object] = (
                    State.STOPPED.value,
                    f"runner PID {st.pid} is not running; last seen {st.updated_at} as {last}",
                )
        return shown

    def save(self) -> None:
        if self.read_only is not None:
            raise self.read_only
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
        if changed and self.read_only is None:  # read only: the copies serve this time
            try:
                self.save()
            except (OSError, EventDeskError) as exc:  # an unwritable home still runs, on the copies
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
        secret_ref: SecretRef | None = None,
        replace: bool = False,
    ) -> DatasourceConfig:
        """Add (or replace) a datasource; ``secret`` is stored in the keyring here, while a
        ``secret_ref`` from :meth:`keep_secret` (called off the loop) is taken as it is."""
        cfg = self._put_with_secret(
            DatasourceConfig(name, kind, settings), secret, secret_env, replace, secret_ref
        )
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
        secret_ref: SecretRef | None = None,
        replace: bool = False,
    ) -> BrokerConfig:
        cfg = self._put_with_secret(
            BrokerConfig(name, kind, settings), secret, secret_env, replace, secret_ref
        )
        assert isinstance(cfg, BrokerConfig)
        return cfg

    def _put_with_secret(
        self,
        cfg: DatasourceConfig | BrokerConfig,
        secret: str | None,
        secret_env: str | None,
        replace: bool,
        secret_ref: SecretRef | None = None,
    ) -> DatasourceConfig | BrokerConfig:
        """Validate first, store the secret only then, keep the old secret on a replace without one."""
        has_secret = secret is not None or secret_env is not None or secret_ref is not None
        self.check_put(cfg, has_secret=has_secret, replace=replace)
        ws = self.workspace
        is_ds = isinstance(cfg, DatasourceConfig)
        object_type = "datasource" if is_ds else "broker"
        old = (ws.stored("datasource") if is_ds else ws.stored("broker")).get(cfg.name)
        ref = secret_ref or self._secret_ref(object_type, cfg.name, secret, secret_env)
        if ref is None and old is not None and replace:
            ref = old.secret
        cfg.secret = ref
        stored = (
            ws.put_datasource(cfg, replace=replace)
            if isinstance(cfg, DatasourceConfig)
            else ws.put_broker(cfg, replace=replace)
        )
        self.save()
        return stored

    def keep_secret(self, object_type: str, name: str, secret: str) -> SecretRef:
        """Store ``secret`` in the keyring for ``object_type`` ``name`` (blocks: off the loop)."""
        ref = self._secret_ref(object_type, name, secret, None)
        assert ref is not None  # a secret was given
        return ref

    def check_put(self, cfg: DatasourceConfig | BrokerConfig, *, has_secret: bool, replace: bool) -> None:
        """Every check adding ``cfg`` makes, storing nothing (no keyring): a dialog runs it on the
        loop before it stores a secret off the loop."""
        ws = self.workspace
        is_ds = isinstance(cfg, DatasourceConfig)
        # An invalid one too: replacing it keeps its secret.
        old = (ws.stored("datasource") if is_ds else ws.stored("broker")).get(cfg.name)
        valid = ws.validate_datasource(cfg) if isinstance(cfg, DatasourceConfig) else ws.validate_broker(cfg)
        if not replace and old is not None:
            if isinstance(cfg, DatasourceConfig):
                ws.put_datasource(cfg, replace=False)  # raises "already exists"
            else:
                ws.put_broker(cfg, replace=False)
        if isinstance(valid, DatasourceConfig):
            keeps_secret = replace and old is not None and old.secret is not None
            connector_class(valid.kind).check_datasource(valid, has_secret or keeps_secret)

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
        self,
        object_type: str,
        name: str,
        secret: str | None,
        secret_env: str | None = None,
        *,
        delete_stored: bool = True,
    ) -> None:
        """Set, replace (or with both None, remove) the secret of a datasource or broker.

        ``delete_stored=False`` when the caller already deleted the keyring entry (off the loop)."""
        target: DatasourceConfig | BrokerConfig
        target = (
            self.workspace.datasource(name) if object_type == "datasource" else self.workspace.broker(name)
        )
        if secret is None and secret_env is None:
            if isinstance(target, DatasourceConfig):
                connector_class(target.kind).check_datasource(target, False)
            if delete_stored:
                delete_secret(target.secret)
            target.secret = None
        else:
            target.secret = self._secret_ref(object_type, name, secret, secret_env)
        self.save()

    def removal(self, object_type: str, name: str) -> Removal:
        """What ``remove`` would take away (models, routes, their checkpoints and positions, the
        secret), without removing anything: what a confirmation shows."""
        plan = self.workspace.removal(object_type, name)
        checkpoints = [m for m in plan.models if self.capture.checkpoint(m) is not None]
        positions = [r for r in plan.routes if self.capture.route_position(r) is not None]
        return replace(plan, checkpoints=tuple(checkpoints), positions=tuple(positions))

    def remove(
        self, object_type: str, name: str, *, cascade: bool = False, delete_secret_too: bool = True
    ) -> list[str]:
        """Remove an object; what depends on it goes too only with ``cascade`` (else ConfigError).

        ``delete_secret_too=False`` leaves the secret (``removal(...).secret``) to the caller: the
        app deletes it off the loop, as a keyring may block on D-Bus."""
        plan = self.workspace.removal(object_type, name)
        if plan.dependants and not cascade:
            raise ConfigError(
                "other objects depend on it: " + ", ".join(plan.dependants) + "; remove them too (cascade) "
                "or remove them first",
                obj=plan.label,
            )
        removed = self.workspace.remove(object_type, name)
        self.save()
        if delete_secret_too:
            delete_secret(plan.secret)
        for m in plan.models:
            self.capture.forget(model=m)
        for r in plan.routes:
            self.capture.forget(route=r)
        return removed


def _move_aside(path: Path) -> Path | None:
    """Rename the capture at ``path`` (with its WAL files, which SQLite then finds beside the new
    name) to ``<name>.aside-<UTC time>``; None if there was none."""
    if not path.exists():
        return None
    stamp = utc_now_iso().replace(":", "").replace("-", "")
    target = path.with_name(f"{path.name}.aside-{stamp}")
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target
