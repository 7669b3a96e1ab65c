"""``eventdesk test datasource|model NAME`` on the postgres kind: each misconfiguration has its
own named message and a non-zero exit, and a wrong password is named, never shown. (The command
comes with the runtime's public API; until it is there, these tests skip.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.harness import eventdesk, home_args, ok
from tests.peers.postgres_server import PASSWORD, PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        server.execute("CREATE TABLE keyed (id int PRIMARY KEY)")
        server.execute("CREATE TABLE keyless (v text)")
        yield server


def add(home: Path, url: str, *extra: str) -> tuple[str, ...]:
    h = home_args(home)
    ok(*h, "datasource", "add", "pg", "--kind", "postgres", "--url", url, "--sslmode", "disable", *extra)
    return h


def test_a_good_datasource_and_model_pass(pg: PostgresServer, tmp_path: Path) -> None:
    h = add(tmp_path / "home", pg.url)
    ok(*h, "model", "add", "keyed", "--datasource", "pg")
    assert "wal_level logical" in ok(*h, "test", "datasource", "pg")
    assert "table public.keyed (key: id)" in ok(*h, "test", "model", "keyed")


def test_each_misconfiguration_is_named_with_a_non_zero_exit(pg: PostgresServer, tmp_path: Path) -> None:
    h = add(tmp_path / "home", pg.url)
    ok(*h, "model", "add", "keyless", "--datasource", "pg")
    ok(*h, "model", "add", "absent", "--datasource", "pg")
    for model, words in (("keyless", "has no primary key"), ("absent", "no table public.absent")):
        result = eventdesk(*h, "test", "model", model)
        assert result.returncode != 0
        assert f"model '{model}': field 'table'" in result.stdout + result.stderr
        assert words in result.stdout + result.stderr
    with running_postgres(wal_level="replica") as replica:
        h2 = add(tmp_path / "home2", replica.url)
        result = eventdesk(*h2, "test", "datasource", "pg")
    assert result.returncode != 0 and "not 'logical'" in result.stdout + result.stderr


def test_a_wrong_password_is_named_never_shown(pg: PostgresServer, tmp_path: Path) -> None:
    h = add(tmp_path / "home", pg.password_url(), "--secret-env", "PG_PW")
    wrong = eventdesk(*h, "test", "datasource", "pg", env={"PG_PW": "not-" + PASSWORD})
    assert wrong.returncode != 0
    assert "datasource 'pg': field 'secret'" in wrong.stdout + wrong.stderr
    assert "not-" + PASSWORD not in wrong.stdout + wrong.stderr
    right = eventdesk(*h, "test", "datasource", "pg", env={"PG_PW": PASSWORD})
    assert right.returncode == 0, right.stderr
