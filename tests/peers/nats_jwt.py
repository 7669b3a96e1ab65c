"""NATS decentralised authentication for tests, without `nsc`: an operator, its system account
and one account with JetStream, as signed JWTs (ed25519 NKeys signing, the header and claims
nats-server 2.9+ reads), user credentials files (.creds) as `nsc generate creds` writes them,
and the server's configuration (a memory resolver preloaded with the accounts).
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nkeys
import pytest

from tests.peers.nats_server import NatsServer, running_nats

UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True}
ACCOUNT_LIMITS = UNLIMITED | {"conn": -1, "leaf": -1}
JETSTREAM_LIMITS = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def new_key(prefix: int) -> nkeys.KeyPair:
    """A fresh ed25519 key pair of the NKey role ``prefix`` (operator, account or user)."""
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def public(key: nkeys.KeyPair) -> str:
    return str(key.public_key.decode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_jwt(signer: nkeys.KeyPair, subject: str, name: str, claims: dict[str, Any]) -> str:
    """A NATS JWT for ``subject`` issued and signed by ``signer``."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = {
        "jti": uuid.uuid4().hex.upper(),
        "iat": int(time.time()),
        "iss": public(signer),
        "name": name,
        "sub": subject,
        "nats": claims | {"version": 2},
    }
    payload = _b64(json.dumps(body).encode())
    return f"{header}.{payload}.{_b64(signer.sign(f'{header}.{payload}'.encode()))}"


@dataclass(frozen=True)
class CredsUser:
    """A user's .creds file and its seed (for the tests that check it is never shown)."""

    creds_file: Path
    seed: str = field(repr=False)  # not in pytest's reports either


@dataclass
class NatsOperator:
    """An operator, its system account and one account (JetStream on) that issues users."""

    operator: nkeys.KeyPair
    system: nkeys.KeyPair
    account: nkeys.KeyPair

    @classmethod
    def create(cls) -> NatsOperator:
        return cls(
            new_key(nkeys.PREFIX_BYTE_OPERATOR),
            new_key(nkeys.PREFIX_BYTE_ACCOUNT),
            new_key(nkeys.PREFIX_BYTE_ACCOUNT),
        )

    def server_conf(self) -> str:
        """nats-server's trust and accounts (a memory resolver preloaded with both accounts)."""
        op = signed_jwt(
            self.operator,
            public(self.operator),
            "op",
            {"type": "operator", "system_account": public(self.system)},
        )
        sys_jwt = signed_jwt(
            self.operator, public(self.system), "SYS", {"type": "account", "limits": ACCOUNT_LIMITS}
        )
        acc_jwt = signed_jwt(
            self.operator,
            public(self.account),
            "ed",
            {"type": "account", "limits": ACCOUNT_LIMITS | JETSTREAM_LIMITS},
        )
        return (
            f'operator: "{op}"\nsystem_account: {public(self.system)}\nresolver: MEMORY\n'
            f'resolver_preload: {{\n  {public(self.system)}: "{sys_jwt}"\n  {public(self.account)}: "{acc_jwt}"\n}}\n'
        )

    def user_creds(self, path: Path, name: str = "user", account: nkeys.KeyPair | None = None) -> CredsUser:
        """A new user's .creds file written at ``path`` (issued by ``account``, by default this
        operator's)."""
        user = new_key(nkeys.PREFIX_BYTE_USER)
        issuer = account or self.account
        jwt = signed_jwt(issuer, public(user), name, {"type": "user", "pub": {}, "sub": {}} | UNLIMITED)
        seed = user.seed.decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
        path.chmod(0o600)
        return CredsUser(path, seed)


@pytest.fixture
def nats_operator() -> NatsOperator:
    return NatsOperator.create()


@pytest.fixture
def creds_user(tmp_path: Path, nats_operator: NatsOperator) -> CredsUser:
    """A user of ``nats_operator``'s account, with its .creds file."""
    return nats_operator.user_creds(tmp_path / "creds" / "ed.creds")


@pytest.fixture
def nats_creds_server(tmp_path: Path, nats_operator: NatsOperator) -> Iterator[NatsServer]:
    """nats-server with JetStream in operator mode: users of ``nats_operator``'s account only."""
    yield from running_nats(tmp_path / "nats-jwt", extra_conf=nats_operator.server_conf())


@dataclass(frozen=True)
class FileLogin:
    """A server that lets in one user by a file, and that user: the kind's setting naming the
    file (``nkey`` or ``creds``), nats.connect's options for the test's own client, the seed."""

    url: str
    setting: dict[str, str]
    connect: dict[str, str] = field(repr=False)
    seed: str = field(repr=False)


@pytest.fixture(params=["nkey", "creds"])
def file_login(request: pytest.FixtureRequest) -> FileLogin:
    """Each way of logging in with a file, against its server: an NKey seed file (a server
    listing NKey users) and a credentials file (a server in operator mode). The test module
    imports the fixtures named here."""
    if request.param == "nkey":
        server, user = request.getfixturevalue("nats_nkey_server"), request.getfixturevalue("nkey_user")
        return FileLogin(server.url, {"nkey": str(user.seed_file)}, {"nkeys_seed_str": user.seed}, user.seed)
    server, creds = request.getfixturevalue("nats_creds_server"), request.getfixturevalue("creds_user")
    path = str(creds.creds_file)
    return FileLogin(server.url, {"creds": path}, {"user_credentials": path}, creds.seed)
