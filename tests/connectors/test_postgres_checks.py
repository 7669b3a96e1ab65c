"""What people trip over, each with its own message naming the object and field:
``PostgresConnector.test_connection`` against real clusters (wal_level not logical, a missing
table, a table without a primary key, a wrong password, a user without REPLICATION), and a
``run`` that meets them (or a slot dropped behind its back) ends in a terminal error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventdesk.connectors.postgres import PostgresConnector
from eventdesk.connectors.postgres.settings import PostgresDatasourceSettings
from eventdesk.core.contracts import State
from eventdesk.core.errors import ConfigError, ConnectorError
from eventdesk.core.object_configs import DatasourceConfig, ModelConfig
from tests.cli.harness import eventdesk, home_args, ok
from tests.connectors.postgres_pipeline import Pipeline
from tests.peers.postgres_server import PASSWORD, PASSWORD_USER, PostgresServer, running_postgres
from tests.peers.tls import make_test_pki

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        server.execute("CREATE TABLE keyed (id int PRIMARY KEY, v text)")
        server.execute("CREATE TABLE keyless (v text)")
        server.execute("CREATE TABLE keyless_full (v text)")
        server.execute("ALTER TABLE keyless_full REPLICA IDENTITY FULL")
        yield server


def datasource(url: str) -> DatasourceConfig:
    settings = PostgresDatasourceSettings.load({"url": url, "sslmode": "disable"}, "datasource 'pg'")
    return DatasourceConfig("pg", "postgres", settings.as_dict())


def model(table: str) -> ModelConfig:
    return ModelConfig("m", "pg", {"table": table})


@pytest.mark.asyncio
async def test_a_good_setup_is_summarised_with_the_names_eventdesk_derives(pg: PostgresServer) -> None:
    summary = await PostgresConnector.test_connection(datasource(pg.url), None, model("keyed"))
    assert "PostgreSQL 15" in summary and "wal_level logical" in summary
    assert "table public.keyed (key: id)" in summary and "slot eventdesk_m_" in summary
    full = await PostgresConnector.test_connection(datasource(pg.url), None, model("keyless_full"))
    assert "key: REPLICA IDENTITY FULL" in full


@pytest.mark.asyncio
async def test_wal_level_not_logical_is_named() -> None:
    with running_postgres(wal_level="replica") as replica, pytest.raises(ConnectorError) as caught:
        await PostgresConnector.test_connection(datasource(replica.url), None)
    assert caught.value.terminal and caught.value.obj == "datasource 'pg'"
    assert "wal_level is 'replica', not 'logical'" in str(caught.value)


@pytest.mark.asyncio
async def test_a_missing_table_names_the_model_and_field(pg: PostgresServer) -> None:
    with pytest.raises(ConnectorError) as caught:
        await PostgresConnector.test_connection(datasource(pg.url), None, model("public.nowhere"))
    assert (caught.value.obj, caught.value.field) == ("model 'm'", "table")
    assert "no table public.nowhere" in str(caught.value)


@pytest.mark.asyncio
async def test_a_table_without_primary_key_offers_replica_identity_full(pg: PostgresServer) -> None:
    with pytest.raises(ConnectorError) as caught:
        await PostgresConnector.test_connection(datasource(pg.url), None, model("keyless"))
    assert (caught.value.obj, caught.value.field) == ("model 'm'", "table")
    assert "has no primary key" in str(caught.value) and "REPLICA IDENTITY FULL" in str(caught.value)


@pytest.mark.asyncio
async def test_a_wrong_password_names_datasource_and_field_and_never_echoes_it(pg: PostgresServer) -> None:
    wrong = "Wr0ng-" + PASSWORD[::-1]
    with pytest.raises(ConnectorError) as caught:
        await PostgresConnector.test_connection(datasource(pg.password_url()), wrong)
    assert (caught.value.obj, caught.value.field) == ("datasource 'pg'", "secret")
    assert caught.value.terminal
    assert "refused the password" in str(caught.value)
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
    with pytest.raises(ConnectorError) as missing:
        await PostgresConnector.test_connection(datasource(pg.password_url()), None)
    assert missing.value.field == "secret" and "set the secret" in str(missing.value)
    summary = await PostgresConnector.test_connection(datasource(pg.password_url()), PASSWORD)
    assert "wal_level logical" in summary


@pytest.mark.asyncio
async def test_a_user_without_replication_is_named(pg: PostgresServer) -> None:
    pg.execute("CREATE ROLE plain_user LOGIN PASSWORD 'plain-pw'")
    url = pg.password_url().replace(PASSWORD_USER, "plain_user")
    with pytest.raises(ConnectorError) as caught:
        await PostgresConnector.test_connection(datasource(url), "plain-pw")
    assert caught.value.field == "url" and "REPLICATION privilege" in str(caught.value)


def test_a_password_in_the_url_or_a_stray_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresDatasourceSettings.load({"url": "postgresql://u:pw@localhost/db"}, "datasource 'pg'")
    assert caught.value.field == "url" and "pw" not in str(caught.value)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = DatasourceConfig("pg", "postgres", {"url": "postgresql://u@localhost/db", "ca_file": str(ca)})
    cfg.settings = PostgresDatasourceSettings.load(cfg.settings, cfg.label).as_dict()
    with pytest.raises(ConfigError) as stray:
        PostgresConnector.check_datasource(cfg, has_secret=False)
    assert stray.value.field == "sslmode"


@pytest.mark.asyncio
async def test_run_ends_in_a_named_terminal_error_for_a_missing_table(
    pg: PostgresServer, isolated_home: Path
) -> None:
    pipeline = Pipeline(isolated_home, pg, "public.absent")
    try:
        await pipeline.runtime.start_model("m")
        detail = await pipeline.wait_state(State.ERROR)
        assert detail is not None and "model 'm': field 'table': no table public.absent" in detail
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_a_slot_dropped_behind_eventdesks_back_is_a_terminal_named_error(
    pg: PostgresServer, isolated_home: Path
) -> None:
    pg.execute("CREATE TABLE dropped (id int PRIMARY KEY)")
    pipeline = Pipeline(isolated_home, pg, "dropped")
    try:
        await pipeline.start()
        pg.execute("INSERT INTO dropped VALUES (1)")
        await pipeline.wait_events(1)
        await pipeline.runtime.stop_model("m")
        pg.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
        await pipeline.runtime.start_model("m")
        detail = await pipeline.wait_state(State.ERROR)
        assert detail is not None and "no longer exists" in detail and "eventdesk_m_" in detail
    finally:
        await pipeline.close()


def test_cli_datasource_and_model_add_and_a_failing_run_exits_non_zero(
    pg: PostgresServer, tmp_path: Path
) -> None:
    h = home_args(tmp_path / "home")
    out = ok(
        *h, "datasource", "add", "pg", "--kind", "postgres", "--url", pg.password_url(),
        "--secret-env", "PG_PW", "--sslmode", "disable",
    )  # fmt: skip
    assert "postgres" in out and PASSWORD not in out
    ok(*h, "model", "add", "keyless", "--datasource", "pg")  # the table: public.<model name>
    result = eventdesk(*h, "run", env={"PG_PW": PASSWORD}, timeout=60)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "model 'keyless': field 'table'" in text and "has no primary key" in text
    assert PASSWORD not in text
    wrong = eventdesk(*h, "run", env={"PG_PW": "not-the-password"}, timeout=60)
    assert wrong.returncode != 0
    text = wrong.stdout + wrong.stderr
    assert "datasource 'pg': field 'secret'" in text and "not-the-password" not in text


@pytest.mark.asyncio
async def test_no_free_replication_slot_is_named_by_test_and_run(isolated_home: Path) -> None:
    with running_postgres(settings={"max_replication_slots": "1"}) as server:
        server.execute("CREATE TABLE t (id int PRIMARY KEY)")
        server.execute("SELECT pg_create_logical_replication_slot('someone_elses', 'pgoutput')")
        with pytest.raises(ConnectorError) as caught:
            await PostgresConnector.test_connection(datasource(server.url), None, model("t"))
        assert caught.value.obj == "datasource 'pg'" and "replication slots are all in use" in str(
            caught.value
        )
        pipeline = Pipeline(isolated_home, server, "t")
        try:
            await pipeline.runtime.start_model("m")
            detail = await pipeline.wait_state(State.ERROR)
            assert detail is not None and "max_replication_slots" in detail
        finally:
            await pipeline.close()


@pytest.mark.asyncio
async def test_a_user_who_may_not_create_the_publication_is_told_who_can(
    pg: PostgresServer, isolated_home: Path
) -> None:
    with pytest.raises(ConnectorError) as caught:
        await PostgresConnector.test_connection(datasource(pg.password_url()), PASSWORD, model("keyed"))
    assert (caught.value.obj, caught.value.field) == ("model 'm'", "table")
    assert "must own public.keyed" in str(caught.value) and "CREATE PUBLICATION" in str(caught.value)
    pipeline = Pipeline(isolated_home, pg, "keyed", url=pg.password_url(), secret=PASSWORD)
    try:
        await pipeline.runtime.start_model("m")
        detail = await pipeline.wait_state(State.ERROR)
        assert detail is not None and "must own public.keyed" in detail and PASSWORD not in detail
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_a_models_slot_and_publication_can_be_dropped(pg: PostgresServer, isolated_home: Path) -> None:
    pg.execute("CREATE TABLE to_drop (id int PRIMARY KEY)")
    pipeline = Pipeline(isolated_home, pg, "to_drop")
    try:
        await pipeline.start()
        await pipeline.runtime.stop_model("m")
    finally:
        await pipeline.close()
    ds = pipeline.home.workspace.datasource("pg")
    cfg = pipeline.home.workspace.model("m")
    summary = await PostgresConnector.drop_replication_objects(ds, None, cfg)
    assert summary.startswith("dropped replication slot eventdesk_m_") and "and publication" in summary
    slot = pipeline.names("to_drop").slot
    assert pg.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == [(0,)]
    assert await PostgresConnector.drop_replication_objects(ds, None, cfg) == "nothing to drop"


@pytest.mark.asyncio
async def test_the_tables_a_model_can_follow_are_listed(pg: PostgresServer) -> None:
    tables = await PostgresConnector.list_tables(datasource(pg.url), None)
    assert {"public.keyed", "public.keyless (no primary key)", "public.keyless_full (no primary key)"} <= set(
        tables
    )
    assert not any(t.startswith(("pg_catalog.", "information_schema.")) for t in tables)


@pytest.mark.asyncio
async def test_tls_with_a_ca_file_and_what_goes_wrong_with_it(pg: PostgresServer, tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    with running_postgres(tls=(pki.server.cert, pki.server.key)) as secure:

        def over_tls(sslmode: str, ca: Path | None) -> DatasourceConfig:
            values = {"url": secure.url, "sslmode": sslmode, "ca_file": str(ca) if ca else ""}
            return DatasourceConfig("pg", "postgres", PostgresDatasourceSettings.load(values, "x").as_dict())

        summary = await PostgresConnector.test_connection(over_tls("verify-full", pki.ca), None)
        assert "wal_level logical" in summary
        with pytest.raises(ConnectorError) as wrong_ca:
            await PostgresConnector.test_connection(over_tls("verify-full", pki.other_ca), None)
        assert wrong_ca.value.field == "ca_file" and wrong_ca.value.terminal
    plain = PostgresDatasourceSettings.load({"url": pg.url, "sslmode": "require"}, "x")
    with pytest.raises(ConnectorError) as no_tls:  # the module's cluster has no TLS
        await PostgresConnector.test_connection(DatasourceConfig("pg", "postgres", plain.as_dict()), None)
    assert no_tls.value.field == "sslmode" and "SSL" in str(no_tls.value)


@pytest.mark.asyncio
async def test_remove_names_the_slot_it_keeps_and_drops_it_with_drop_slot(
    pg: PostgresServer, isolated_home: Path
) -> None:
    pg.execute("CREATE TABLE removed_a (id int PRIMARY KEY)")
    pg.execute("CREATE TABLE removed_b (id int PRIMARY KEY)")
    pipeline = Pipeline(isolated_home, pg, "removed_a", model="a")
    pipeline.home.add_model("b", "pg", {"table": "removed_b"})
    try:
        await pipeline.start()
        await pipeline.runtime.start_model("b")
        await pipeline.wait_state(State.RUNNING, model="b")
    finally:
        await pipeline.close()
    slot_a = pipeline.names("removed_a", "a").slot
    slot_b = pipeline.names("removed_b", "b").slot
    slots = "SELECT slot_name FROM pg_replication_slots WHERE slot_name IN (%s, %s) ORDER BY 1"
    assert pg.execute(slots, (slot_a, slot_b)) == sorted([(slot_a,), (slot_b,)])
    h = home_args(isolated_home)
    kept = ok(*h, "remove", "model", "a")
    assert f"kept on the server for model 'a': replication slot {slot_a} and publication" in kept
    assert pg.execute(slots, (slot_a, slot_b)) == sorted([(slot_a,), (slot_b,)])  # named, not dropped
    dropped = ok(*h, "remove", "model", "b", "--drop-slot")
    assert f"model 'b': dropped replication slot {slot_b}" in dropped and "kept on the server" not in dropped
    assert pg.execute(slots, (slot_a, slot_b)) == [(slot_a,)]
    pg.execute("SELECT pg_drop_replication_slot(%s)", (slot_a,))


def our_slots(pg: PostgresServer) -> dict[str, str | None]:
    """EventDesk's slots on the server, each with what its publication says it publishes."""
    rows = pg.execute(
        "SELECT s.slot_name, obj_description(p.oid, 'pg_publication') FROM pg_replication_slots s "
        "LEFT JOIN pg_publication p ON p.pubname = s.slot_name WHERE s.slot_name LIKE 'eventdesk\\_edited\\_%'"
    )
    return dict(rows)


@pytest.mark.asyncio
async def test_editing_a_models_row_filter_or_table_leaves_no_slot_unsaid(
    pg: PostgresServer, isolated_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventdesk.connectors.postgres")
    pg.execute("CREATE TABLE edit_a (id int PRIMARY KEY, v text)")
    pg.execute("CREATE TABLE edit_b (id int PRIMARY KEY, v text)")
    pipeline = Pipeline(isolated_home, pg, "edit_a", model="edited", row_filter="id > 0")
    try:
        await pipeline.start()
        pg.execute("INSERT INTO edit_a VALUES (1, 'in'), (-1, 'filtered out')")
        await pipeline.wait_events(1)
        assert list(our_slots(pg).values()) == ["public.edit_a WHERE id > 0"]
        await pipeline.runtime.stop_model("edited")

        # The row filter edited: the slot and publication are made anew for it (same names).
        pipeline.home.add_model("edited", "pg", {"table": "edit_a", "row_filter": "id > 10"}, replace=True)
        await pipeline.runtime.start_model("edited")
        await pipeline.wait_state(State.RUNNING)
        assert list(our_slots(pg).values()) == ["public.edit_a WHERE id > 10"]  # one slot, not two
        pg.execute("INSERT INTO edit_a VALUES (5, 'filtered out now'), (11, 'in')")
        events = await pipeline.wait_events(2, model="edited")
        assert [e["key"] for e in events] == ["1", "11"]
        await pipeline.runtime.stop_model("edited")

        # The table edited: the new table is followed from now on, and the slot the previous
        # one left (it still holds WAL) is named, since only the user can tell whose it is.
        pipeline.home.add_model("edited", "pg", {"table": "edit_b"}, replace=True)
        await pipeline.runtime.start_model("edited")
        await pipeline.wait_state(State.RUNNING)
        slots = our_slots(pg)
        old = next(name for name, covered in slots.items() if covered == "public.edit_a WHERE id > 10")
        assert sorted(slots.values()) == ["public.edit_a WHERE id > 10", "public.edit_b"]
        pg.execute("INSERT INTO edit_b VALUES (7, 'b')")
        pg.execute("INSERT INTO edit_a VALUES (12, 'not followed any more')")
        events = await pipeline.wait_events(3, model="edited")
        assert [(e["key"], e["source"]["table"]) for e in events] == [
            ("1", "edit_a"),
            ("11", "edit_a"),
            ("7", "edit_b"),
        ]
        summary = await PostgresConnector.test_connection(
            pipeline.home.workspace.datasource("pg"), None, pipeline.home.workspace.model("edited")
        )
        assert "slot eventdesk_edited_" in summary and " exists" in summary
        warned = [r.getMessage() for r in caplog.records if "now follows public.edit_b" in r.getMessage()]
        assert len(warned) == 1 and f"{old} (public.edit_a WHERE id > 10)" in warned[0]
    finally:
        await pipeline.close()


@pytest.mark.asyncio
async def test_two_homes_following_the_same_table_each_have_their_own_slot(
    pg: PostgresServer, tmp_path: Path, isolated_home: Path
) -> None:
    pg.execute("CREATE TABLE shared (id int PRIMARY KEY)")
    first = Pipeline(tmp_path / "first", pg, "shared")  # same datasource, model and table names
    second = Pipeline(tmp_path / "second", pg, "shared")
    try:
        await first.start()
        await second.start()
        slots = {first.names("shared").slot, second.names("shared").slot}
        assert len(slots) == 2
        active = "SELECT slot_name FROM pg_replication_slots WHERE active AND slot_name = ANY(%s) ORDER BY 1"
        assert pg.execute(active, (sorted(slots),)) == [(s,) for s in sorted(slots)]  # both followed
        for shown in (first, second):  # each run shows its own slot
            detail = shown.runtime.state_of("model/m").detail or ""
            assert f"slot {shown.names('shared').slot}" in detail
        pg.execute("INSERT INTO shared VALUES (1)")
        for pipeline in (first, second):  # neither takes the other's changes
            assert [e["key"] for e in await pipeline.wait_events(1)] == ["1"]
    finally:
        await first.close()
        await second.close()
