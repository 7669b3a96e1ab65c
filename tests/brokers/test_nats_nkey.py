"""The nats broker kind logging in with an NKey seed file to a real nats-server that lets in
NKey users only, and with a credentials file (user JWT and seed) to one in operator mode: it
publishes; a key the server does not know, a file holding no valid seed or JWT, or a missing
file are named (broker, field nkey or creds) and the seed never shows in a message or a log."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats
import pytest

from eventdesk.brokers.nats import SCHEMA, NatsPublisher
from eventdesk.core.errors import BrokerError, ConfigError
from tests.brokers.test_nats_publisher import MakeNats, fields, make_nats, nats_config  # noqa: F401 - fixture
from tests.peers.nats_jwt import (  # noqa: F401 - fixtures
    CredsUser,
    FileLogin,
    NatsOperator,
    creds_user,
    file_login,
    nats_creds_server,
    nats_operator,
)
from tests.peers.nats_server import NatsServer, NkeyUser, nats_nkey_server, nkey_stranger, nkey_user  # noqa: F401

pytestmark = pytest.mark.asyncio


async def test_a_login_file_logs_in_and_publishes(
    file_login: FileLogin,  # noqa: F811
    make_nats: MakeNats,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = nats_config(
        file_login.url, stream="ED", create_stream=True, subjects="ed.>", **file_login.setting
    )
    summary = await NatsPublisher.test_connection(config, None)
    assert "connected to nats://127.0.0.1" in summary
    publisher, _ = make_nats(config)
    await publisher.start()
    await publisher.wait_connected()
    messages = [(f"ed.accounts.k{i}", b'{"n": %d}' % i) for i in range(10)]
    await asyncio.wait_for(
        publisher.publish_with_fields(messages, [fields(i) for i in range(10)], 1, False), 10
    )
    nc = await nats.connect(file_login.url, **file_login.connect)
    try:
        js = nc.jetstream()
        assert (await js.stream_info("ED")).state.messages == 10
        assert (await js.get_msg("ED", 10)).subject == "ed.accounts.k9"
    finally:
        await nc.close()
    # Without the file the same server refuses: the file is what let the publisher in.
    with pytest.raises(BrokerError) as refused:
        await NatsPublisher.test_connection(nats_config(file_login.url), None)
    assert "authorization violation" in str(refused.value)
    assert file_login.seed not in caplog.text and file_login.seed not in summary


async def test_a_seed_the_server_does_not_know_is_named_and_never_echoed(
    nats_nkey_server: NatsServer,  # noqa: F811
    nkey_stranger: NkeyUser,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stranger = nkey_stranger
    config = nats_config(nats_nkey_server.url, name="nk", nkey=str(stranger.seed_file))
    with pytest.raises(BrokerError) as caught:
        await NatsPublisher.test_connection(config, None)
    error = caught.value
    assert error.field == "nkey" and error.terminal
    assert str(error).startswith("broker 'nk': field 'nkey': ")
    assert "authorization violation" in str(error) and "NKey seed file" in str(error)
    for text in (str(error), repr(error), caplog.text):
        assert stranger.seed not in text and stranger.seed[2:20] not in text


async def test_a_file_without_a_valid_seed_is_named_and_never_echoed(
    tmp_path: Path,
    nats_nkey_server: NatsServer,  # noqa: F811
    nkey_user: NkeyUser,  # noqa: F811
) -> None:
    # The right user's seed with its key part damaged: still shaped like one (SU..., 58 chars).
    damaged = nkey_user.seed[:2] + "0" * 30 + nkey_user.seed[32:]
    bad = tmp_path / "bad.nk"
    bad.write_text(damaged + "\n")
    with pytest.raises(ConfigError) as refused:  # when added
        nats_config(nats_nkey_server.url, nkey=str(bad))
    assert refused.value.field == "nkey" and "holds no valid NKey seed" in str(refused.value)
    assert damaged[2:20] not in str(refused.value)
    # Valid when added, damaged since: named when connecting.
    config = nats_config(nats_nkey_server.url, nkey=str(nkey_user.seed_file))
    nkey_user.seed_file.write_text(damaged + "\n")
    with pytest.raises(BrokerError) as caught:
        await NatsPublisher.test_connection(config, None)
    assert caught.value.field == "nkey" and caught.value.terminal
    assert "holds no valid NKey seed" in str(caught.value)
    assert damaged not in str(caught.value) and damaged[2:20] not in repr(caught.value)


async def test_a_missing_seed_file_is_named(tmp_path: Path, nkey_user: NkeyUser) -> None:  # noqa: F811
    missing = tmp_path / "nowhere.nk"
    with pytest.raises(ConfigError) as refused:
        SCHEMA.validate({"url": "nats://127.0.0.1:1", "nkey": str(missing)}, "broker 'nk'")
    assert "broker 'nk'" in str(refused.value) and "nkey" in str(refused.value)
    assert "no such file" in str(refused.value)
    # Valid when added, gone when connecting: named too, before any server is asked.
    config = nats_config("nats://127.0.0.1:1", nkey=str(nkey_user.seed_file))
    nkey_user.seed_file.unlink()
    with pytest.raises(BrokerError) as caught:
        await NatsPublisher.test_connection(config, None)
    assert caught.value.field == "nkey" and caught.value.terminal
    assert "cannot read the NKey seed file" in str(caught.value)


async def test_credentials_the_server_does_not_trust_are_named_and_never_echoed(
    tmp_path: Path,
    nats_creds_server: NatsServer,  # noqa: F811
    nats_operator: NatsOperator,  # noqa: F811
) -> None:
    # A user issued by an account that no operator the server trusts signed.
    stranger = nats_operator.user_creds(tmp_path / "stranger.creds", account=NatsOperator.create().account)
    config = nats_config(nats_creds_server.url, name="cr", creds=str(stranger.creds_file))
    with pytest.raises(BrokerError) as caught:
        await NatsPublisher.test_connection(config, None)
    assert str(caught.value).startswith("broker 'cr': field 'creds': ")
    assert "authorization violation" in str(caught.value) and caught.value.terminal
    assert stranger.seed not in str(caught.value) and stranger.seed not in repr(caught.value)


async def test_a_credentials_file_without_a_jwt_or_a_valid_seed_is_named(
    tmp_path: Path,
    creds_user: CredsUser,  # noqa: F811
    nats_creds_server: NatsServer,  # noqa: F811
) -> None:
    text, seed = creds_user.creds_file.read_text(), creds_user.seed
    no_jwt = tmp_path / "no-jwt.creds"
    # Only the seed block: nats-py alone would read lines for ever looking for the JWT.
    no_jwt.write_text(text[text.index("-----BEGIN USER NKEY SEED") :])
    bad_seed = tmp_path / "bad-seed.creds"
    bad_seed.write_text(text.replace(seed, seed[:2] + "0" * (len(seed) - 2)))
    for path, expected in ((no_jwt, "holds no user JWT"), (bad_seed, "holds no valid NKey seed")):
        with pytest.raises(ConfigError) as refused:  # when added
            nats_config(nats_creds_server.url, creds=str(path))
        assert refused.value.field == "creds" and expected in str(refused.value)
        assert seed[2:20] not in str(refused.value)
        # Valid when added, replaced since: named when connecting.
        config = nats_config(nats_creds_server.url, creds=str(creds_user.creds_file))
        creds_user.creds_file.write_text(path.read_text())
        with pytest.raises(BrokerError) as caught:
            await asyncio.wait_for(NatsPublisher.test_connection(config, None), 10)
        assert caught.value.field == "creds" and caught.value.terminal, path
        assert expected in str(caught.value) and seed[2:20] not in str(caught.value)
        creds_user.creds_file.write_text(text)
