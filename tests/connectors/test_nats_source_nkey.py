"""The nats source kind logging in with an NKey seed file to a real nats-server that lets in
NKey users only, and with a credentials file to one in operator mode: a stream's messages
become events; a seed the server does not know and a seed
file gone since the datasource was added are named (datasource, field nkey), never echoing the
seed."""

from __future__ import annotations

import logging
from pathlib import Path

import nats
import pytest

from tests.connectors.test_nats_source import Source
from tests.peers.nats_jwt import FileLogin, creds_user, file_login, nats_creds_server, nats_operator  # noqa: F401
from tests.peers.nats_server import NatsServer, NkeyUser, nats_nkey_server, nkey_stranger, nkey_user  # noqa: F401

pytestmark = pytest.mark.asyncio


async def test_a_login_file_logs_in_and_messages_become_events(
    tmp_path: Path,
    file_login: FileLogin,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    nc = await nats.connect(file_login.url, **file_login.connect)
    try:
        js = nc.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        for i in range(3):
            await js.publish("orders.new", b'{"id": "o-%d"}' % i)
    finally:
        await nc.close()
    source = Source(tmp_path / "home", file_login.url, login=file_login.setting, stream="ORDERS", since="0")
    try:
        await source.runtime.start_model("m")
        events = await source.wait_events(3)
    finally:
        await source.close()
    assert [e["payload"]["id"] for e in events] == ["o-0", "o-1", "o-2"]
    assert file_login.seed not in caplog.text


async def test_a_seed_the_server_does_not_know_is_named(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    nats_nkey_server: NatsServer,  # noqa: F811
    nkey_stranger: NkeyUser,  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    login = {"nkey": str(nkey_stranger.seed_file)}
    source = Source(tmp_path / "home", nats_nkey_server.url, login=login, stream="ORDERS")
    detail = await source.first_error()
    assert "datasource 'nd': field 'nkey'" in detail and "authorization violation" in detail
    assert nkey_stranger.seed not in detail and nkey_stranger.seed not in caplog.text


async def test_a_seed_file_gone_since_it_was_added_is_named(
    tmp_path: Path,
    nats_nkey_server: NatsServer,  # noqa: F811
    nkey_user: NkeyUser,  # noqa: F811
) -> None:
    source = Source(
        tmp_path / "home", nats_nkey_server.url, login={"nkey": str(nkey_user.seed_file)}, stream="ORDERS"
    )
    nkey_user.seed_file.unlink()
    detail = await source.first_error()
    assert "datasource 'nd': field 'nkey'" in detail and "cannot read the NKey seed file" in detail
    assert str(nkey_user.seed_file) in detail
