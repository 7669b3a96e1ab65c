"""Secrets: keyring (test backend and the real Secret Service), env vars, no plain-text fallback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from eventdesk.core.errors import SecretStoreError
from eventdesk.core.home import Home
from eventdesk.core.secrets import SERVICE, SecretRef, resolve_secret, store_secret
from tests.cli.harness import eventdesk, home_args, ok
from tests.peers.servers import missing_peer


def test_store_and_resolve_through_keyring() -> None:
    ref = store_secret("datasource", "prod", "s3cr3t-canary", workspace_id="ws1")
    assert ref == SecretRef("keyring", "ws1/datasource/prod")
    assert keyring.get_password(SERVICE, "ws1/datasource/prod") == "s3cr3t-canary"
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
        store_secret("broker", "b", "canary-123", workspace_id="ws1")
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
ref = store_secret("datasource", "real", "real-backend-secret", workspace_id="probe")
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


# -- one keyring, several workspaces -------------------------------------------------------------

COUCH = ("datasource", "add", "couch", "--kind", "couchdb", "--url", "http://127.0.0.1:5984", "--secret-stdin")  # fmt: skip


def test_adding_a_datasource_in_another_home_leaves_the_first_homes_secret_intact(tmp_path: Path) -> None:
    a, b = home_args(tmp_path / "a"), home_args(tmp_path / "b")
    ok(*a, *COUCH, stdin="secret-of-a\n")
    ok(*b, *COUCH, stdin="secret-of-b\n")
    home_a, home_b = Home.open(str(tmp_path / "a")), Home.open(str(tmp_path / "b"))
    ref_a, ref_b = home_a.workspace.datasource("couch").secret, home_b.workspace.datasource("couch").secret
    assert resolve_secret(ref_a, "datasource 'couch'") == "secret-of-a"
    assert resolve_secret(ref_b, "datasource 'couch'") == "secret-of-b"
    home_b.remove("datasource", "couch")
    assert resolve_secret(ref_a, "datasource 'couch'") == "secret-of-a"
    assert home_a.workspace.workspace_id != home_b.workspace.workspace_id
    home_a.close()
    home_b.close()


def _old_workspace(home: Path, account: str) -> None:
    """A workspace file as EventDesk wrote it before secrets were namespaced per workspace."""
    home.mkdir(parents=True)
    datasource = {
        "kind": "couchdb",
        "settings": {"url": "http://127.0.0.1:5984"},
        "secret": {"keyring": account},
    }
    data = {
        "schema_version": 1,
        "datasources": {"couch": datasource},
        "models": {},
        "brokers": {},
        "routes": {},
    }
    (home / "workspace.json").write_text(json.dumps(data))


def test_an_old_shared_secret_is_copied_to_the_workspace_own_account_on_open(tmp_path: Path) -> None:
    keyring.set_password(SERVICE, "datasource/couch", "old-secret")
    _old_workspace(tmp_path / "a", "datasource/couch")
    _old_workspace(tmp_path / "b", "datasource/couch")
    home_a = Home.open(str(tmp_path / "a"))
    workspace_id = home_a.workspace.workspace_id
    assert home_a.workspace.datasource("couch").secret == SecretRef(
        "keyring", f"{workspace_id}/datasource/couch"
    )
    saved = json.loads((tmp_path / "a" / "workspace.json").read_text())
    assert saved["workspace_id"] == workspace_id
    assert saved["datasources"]["couch"]["secret"] == {"keyring": f"{workspace_id}/datasource/couch"}
    assert keyring.get_password(SERVICE, f"{workspace_id}/datasource/couch") == "old-secret"
    # The old entry stays for workspace b, which still points at it, and b migrates in turn.
    home_a.set_secret("datasource", "couch", "new-secret-of-a")
    home_b = Home.open(str(tmp_path / "b"))
    assert resolve_secret(home_b.workspace.datasource("couch").secret, "datasource 'couch'") == "old-secret"
    assert Home.open(str(tmp_path / "a")).workspace.workspace_id == workspace_id
    assert resolve_secret(home_a.workspace.datasource("couch").secret, "x") == "new-secret-of-a"
    home_a.close()
    home_b.close()


def test_list_says_secret_set_only_when_the_keyring_holds_it(tmp_path: Path) -> None:
    h = home_args(tmp_path / "home")
    ok(*h, *COUCH, stdin="a-secret\n")
    assert "(secret set)" in ok(*h, "list", "datasources")
    keyring.delete_password(
        SERVICE, str(Home.open(str(tmp_path / "home")).workspace.datasource("couch").secret.name)
    )
    listing = ok(*h, "list", "datasources")
    assert "secret set" not in listing
    assert "(secret missing: no secret stored in the keyring; set it again)" in listing
    ok(*h, "datasource", "add", "couch", "--kind", "couchdb", "--url", "http://x:5984", "--replace",
       "--secret-env", "COUCH_PW")  # fmt: skip
    assert "(secret missing: environment variable COUCH_PW is not set)" in ok(*h, "list", "datasources")
    assert "(secret set)" in ok(*h, "list", "datasources", env={"COUCH_PW": "pw"})
    assert eventdesk(*h, "list", "--json").returncode == 0


def test_a_home_whose_file_cannot_be_written_still_opens_with_its_old_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring.set_password(SERVICE, "datasource/couch", "old-secret")
    _old_workspace(tmp_path / "a", "datasource/couch")

    def refuse(self: Home) -> None:
        raise PermissionError(13, "Permission denied")  # as a read-only mount would (tests run as root)

    monkeypatch.setattr(Home, "save", refuse)
    home = Home.open(str(tmp_path / "a"))
    assert resolve_secret(home.workspace.datasource("couch").secret, "datasource 'couch'") == "old-secret"
    home.close()
