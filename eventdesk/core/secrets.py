"""Secrets live in the OS keyring (service ``eventdesk``) or in an environment variable.

The workspace stores only a :class:`SecretRef`. Nothing here ever writes a secret to a file,
and no message contains one. keyring's own ``PYTHON_KEYRING_BACKEND`` is honoured.

Keyring accounts are ``<workspace_id>/<object_type>/<name>``: two workspaces (``--home A``,
``--home B``) may both have a datasource ``couch`` without sharing or overwriting its secret.
Older workspaces used ``<object_type>/<name>``; :func:`migrate_ref` copies such an entry to
the new account when the workspace is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import keyring
import keyring.errors
from keyring.backends import fail

from eventdesk.core.errors import SecretStoreError

log = logging.getLogger(__name__)

SERVICE = "eventdesk"

NO_BACKEND_HELP = (
    "no usable OS keyring backend was found, so the secret cannot be stored safely. "
    "Fix: run inside a desktop session with a Secret Service (GNOME Keyring or KWallet; on a "
    "server: apt-get install gnome-keyring dbus and start it with dbus-run-session), or pass "
    "the secret through an environment variable with --secret-env VAR. EventDesk never "
    "writes secrets to a plain file."
)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret is: ``keyring`` account name, or ``env`` variable name."""

    store: str  # "keyring" | "env"
    name: str

    def to_json(self) -> dict[str, str]:
        return {self.store: self.name}

    @classmethod
    def from_json(cls, data: Any, obj: str) -> SecretRef | None:
        from eventdesk.core.errors import ConfigError

        if data is None:
            return None
        if isinstance(data, dict) and len(data) == 1:
            ((store, name),) = data.items()
            if store in ("keyring", "env") and isinstance(name, str) and name:
                return cls(store, name)
        raise ConfigError('expected {"keyring": ACCOUNT} or {"env": VAR}', obj=obj, field="secret")

    def describe(self) -> str:
        return "OS keyring" if self.store == "keyring" else f"environment variable {self.name}"


def new_workspace_id() -> str:
    """A random identity for a new workspace; it namespaces the workspace's keyring accounts."""
    return uuid.uuid4().hex


def account_for(workspace_id: str, object_type: str, name: str) -> str:
    return f"{workspace_id}/{object_type}/{name}"


def legacy_account_for(object_type: str, name: str) -> str:
    """The account older EventDesk versions used, shared by every workspace."""
    return f"{object_type}/{name}"


def keyring_usable() -> bool:
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    priority = getattr(backend, "priority", 1)
    try:
        return float(priority) > 0
    except (TypeError, ValueError):
        return True


def backend_name() -> str:
    backend = keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__name__}"


def store_secret(object_type: str, name: str, secret: str, *, workspace_id: str) -> SecretRef:
    """Put ``secret`` in the keyring for ``object_type/name`` of that workspace; return its reference."""
    obj = f"{object_type} {name!r}"
    if not keyring_usable():
        raise SecretStoreError(NO_BACKEND_HELP, obj=obj, field="secret")
    account = account_for(workspace_id, object_type, name)
    try:
        keyring.set_password(SERVICE, account, secret)
    except keyring.errors.KeyringError as exc:
        raise SecretStoreError(
            f"the keyring refused to store it ({type(exc).__name__}). " + NO_BACKEND_HELP,
            obj=obj,
            field="secret",
        ) from None
    return SecretRef("keyring", account)


def env_ref(var: str, obj: str) -> SecretRef:
    from eventdesk.core.errors import ConfigError

    if not var or not var.replace("_", "").isalnum():
        raise ConfigError(f"not an environment variable name: {var!r}", obj=obj, field="secret-env")
    return SecretRef("env", var)


def resolve_secret(ref: SecretRef | None, obj: str) -> str | None:
    """Return the secret behind ``ref`` or raise SecretStoreError naming the object."""
    if ref is None:
        return None
    if ref.store == "env":
        value = os.environ.get(ref.name)
        if value is None:
            raise SecretStoreError(f"environment variable {ref.name} is not set", obj=obj, field="secret")
        return value
    if not keyring_usable():
        raise SecretStoreError(NO_BACKEND_HELP, obj=obj, field="secret")
    try:
        value = keyring.get_password(SERVICE, ref.name)
    except keyring.errors.KeyringError as exc:
        raise SecretStoreError(
            f"the keyring could not be read ({type(exc).__name__})", obj=obj, field="secret"
        ) from None
    if value is None:
        raise SecretStoreError("no secret stored in the keyring; set it again", obj=obj, field="secret")
    return value


def secret_problem(ref: SecretRef, obj: str) -> str | None:
    """Why the secret behind ``ref`` cannot be had now (None: it can). Blocks on the keyring:
    call it off the UI's loop."""
    try:
        resolve_secret(ref, obj)
    except SecretStoreError as exc:
        return exc.detail
    return None


def migrate_ref(ref: SecretRef | None, workspace_id: str, object_type: str, name: str) -> SecretRef | None:
    """The reference to use from now on: an entry under the old shared account
    (``datasource/couch``) is copied to this workspace's own account.

    The old entry is kept, not deleted: another workspace (another ``--home``, a copy, the
    ``workspace.json.bak`` beside this one) may still point at it, and nothing can tell. A
    stale copy in the user's own keyring costs less than a secret lost for a workspace that
    still needs it; it can be deleted with the keyring's own tools (e.g. Seahorse).
    Anything else (an env variable, an account already namespaced, no keyring, nothing
    stored) is returned as it is.
    """
    if ref is None or ref.store != "keyring" or ref.name != legacy_account_for(object_type, name):
        return ref
    if not keyring_usable():
        return ref
    try:
        value = keyring.get_password(SERVICE, ref.name)
        if value is None:
            return ref
        account = account_for(workspace_id, object_type, name)
        keyring.set_password(SERVICE, account, value)
    except keyring.errors.KeyringError as exc:
        log.warning(
            "%s %r: secret left under its old keyring account (%s)", object_type, name, type(exc).__name__
        )
        return ref
    return SecretRef("keyring", account)


def delete_secret(ref: SecretRef | None) -> None:
    if ref is None or ref.store != "keyring" or not keyring_usable():
        return
    with contextlib.suppress(keyring.errors.PasswordDeleteError):
        keyring.delete_password(SERVICE, ref.name)
