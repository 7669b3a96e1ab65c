"""Secrets: keyring (test backend and the real Secret Service), env vars, no plain-text fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from eventdesk.core.errors import SecretStoreError
from eventdesk.core.secrets import SERVICE, SecretRef, resolve_secret, store_secret
from tests.peers.servers import missing_peer


def test_store_and_resolve_through_keyring() -> None:
    ref = store_secret("datasource", "prod", "s3cr3t-canary")
    assert ref == SecretRef("keyring", "datasource/prod")
    assert keyring.get_password(SERVICE, "datasource/prod") == "s3cr3t-canary"
    assert resolve_secret(ref, "datasource 'prod'") == "s3cr3t-canary"


def test_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROD_PW", "from-env")
    assert resolve_secret(SecretRef("env", "PROD_PW"), "datasource 'prod'") == "from-env"
    monkeypatch.delenv("PROD_PW")
    with pytest.raises(
        SecretStoreError, match=r"datasource 'prod': field 'secret': environment variable PROD_PW"
    ):
        resolve_secret(SecretRef("env", "PROD_PW"), "datasource 'prod'")


def test_no_keyring_backend_explains_the_fix_and_writes_nothing(tmp_path: Path) -> None:
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(SecretStoreError) as info:
        store_secret("broker", "b", "canary-123")
    message = str(info.value)
    assert "broker 'b'" in message
    assert "--secret-env" in message
    assert "canary-123" not in message
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"canary-123" not in path.read_bytes(), path


REAL_KEYRING_SCRIPT = """
import keyring
from eventdesk.core.secrets import store_secret, resolve_secret, backend_name
ref = store_secret("datasource", "real", "real-backend-secret")
assert resolve_secret(ref, "datasource 'real'") == "real-backend-secret"
print("BACKEND", backend_name())
"""


def test_real_secret_service_keyring(tmp_path: Path) -> None:
    """Exercise the real backend: gnome-keyring's Secret Service on a private D-Bus session."""
    for tool in ("dbus-run-session", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            missing_peer(tool, "apt-get install gnome-keyring dbus")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS")
    }
    env["HOME"] = str(tmp_path)
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    (tmp_path / "run").mkdir(mode=0o700)
    script = tmp_path / "probe.py"
    script.write_text(REAL_KEYRING_SCRIPT)
    shell = (
        'eval "$(echo pw | gnome-keyring-daemon --unlock --components=secrets)"; '
        f'"{sys.executable}" "{script}"'
    )
    result = subprocess.run(
        ["dbus-run-session", "--", "bash", "-c", shell], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BACKEND keyring.backends.SecretService.Keyring" in result.stdout
