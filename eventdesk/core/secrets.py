"""Secrets live in the OS keyring (service ``eventdesk``) or in an environment variable.

The workspace stores only a :class:`SecretRef`. Nothing here ever writes a secret to a file,
and no message contains one. keyring's own ``PYTHON_KEYRING_BACKEND`` is honoured.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import keyring
import keyring.errors
from keyring.backends import fail

from eventdesk.core.errors import SecretStoreError

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


def account_for(object_type: str, name: str) -> str:
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


def store_secret(object_type: str, name: str, secret: str) -> SecretRef:
    """Put ``secret`` in the keyring for ``object_type/name`` and return its reference."""
    obj = f"{object_type} {name!r}"
    if not keyring_usable():
        raise SecretStoreError(NO_BACKEND_HELP, obj=obj, field="secret")
    account = account_for(object_type, name)
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


def delete_secret(ref: SecretRef | None) -> None:
    if ref is None or ref.store != "keyring" or not keyring_usable():
        return
    with contextlib.suppress(keyring.errors.PasswordDeleteError):
        keyring.delete_password(SERVICE, ref.name)
