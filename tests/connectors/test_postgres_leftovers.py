"""``eventdesk datasource leftovers`` on the postgres kind, against a real cluster: the slot of a
model removed without ``--drop-slot`` is listed as followed by nobody and holding WAL once the
database is written to, ``test datasource`` warns about it, ``--drop`` drops its slot and
publication; a followed slot and another workspace's are refused; a wrong password is named,
never shown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventdesk.connectors.postgres.leftovers import owned_by
from eventdesk.connectors.postgres.settings import object_names, workspace_mark
from eventdesk.core import server_leftovers
from eventdesk.core.contracts import State
from eventdesk.core.home import Home
from tests.cli.harness import RunProcess, eventdesk, home_args, ok
from tests.connectors.postgres_pipeline import Pipeline
from tests.peers.postgres_server import PASSWORD, PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(120)

SLOTS = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s"
PUBLICATIONS = "SELECT count(*) FROM pg_publication WHERE pubname = %s"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        for table in ("gone", "kept", "theirs"):
            server.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
        yield server


async def started(home_dir: Path, pg: PostgresServer, *tables: str) -> Pipeline:
    """A home whose models (one per table, named after it) have made their slots; closed."""
    pipeline = Pipeline(home_dir, pg, tables[0], model=tables[0])
    for table in tables[1:]:
        pipeline.home.add_model(table, "pg", {"table": table})
    for table in tables:
        await pipeline.runtime.start_model(table)
        await pipeline.wait_state(State.RUNNING, model=table)
    await pipeline.close()
    return pipeline


def listed(h: tuple[str, ...]) -> dict[str, dict[str, object]]:
    return {e["name"]: e for e in json.loads(ok(*h, "datasource", "leftovers", "pg", "--json"))}


@pytest.mark.asyncio
async def test_a_removed_models_slot_is_listed_as_followed_by_nobody_warned_about_and_dropped(
    pg: PostgresServer, tmp_path: Path
) -> None:
    pipeline = await started(tmp_path / "home", pg, "gone", "kept")
    gone, kept = pipeline.names("gone", "gone").slot, pipeline.names("kept", "kept").slot
    h = home_args(tmp_path / "home")
    removed = ok(*h, "remove", "model", "gone")
    assert "kept on the server for model 'gone'" in removed
    assert "(until dropped: `eventdesk datasource leftovers pg` lists it, --drop drops it)" in removed
    for i in range(200):
        pg.execute("INSERT INTO gone VALUES (%s, repeat('x', 500))", (i,))

    entries = listed(h)
    assert entries[gone]["followed_by"] is None and entries[gone]["other_workspace"] is False
    assert isinstance(entries[gone]["held"], int) and entries[gone]["held"] > 100_000
    assert entries[gone]["what"] == "replication slot + publication" and entries[gone]["active"] is False
    assert entries[kept]["followed_by"] == "kept"
    table = ok(*h, "datasource", "leftovers", "pg").splitlines()
    assert table[0].split() == ["OBJECT", "KIND", "OF", "OBJECT", "HELD", "ACTIVE", "FOLLOWED", "BY"]
    row = next(line for line in table if line.startswith(gone))
    assert "kB of WAL" in row and row.endswith("nobody")
    assert next(line for line in table if line.startswith(kept)).endswith("model 'kept'")

    tested = eventdesk(*h, "test", "datasource", "pg")
    assert tested.returncode == 0, tested.stderr
    warning = f"datasource 'pg': {gone} (replication slot + publication), followed by no model, holds "
    assert warning in tested.stderr
    assert f"drop it with `eventdesk datasource leftovers pg --drop {gone}`" in tested.stderr
    assert kept not in tested.stderr

    refused = eventdesk(*h, "datasource", "leftovers", "pg", "--drop", kept)
    assert refused.returncode == 2 and f"model 'kept' follows {kept}" in refused.stderr
    assert pg.execute(SLOTS, (kept,)) == [(1,)]
    unknown = eventdesk(*h, "datasource", "leftovers", "pg", "--drop", gone[:-1])
    assert unknown.returncode == 3 and "datasource 'pg': EventDesk left nothing named" in unknown.stderr

    dropped = ok(*h, "datasource", "leftovers", "pg", "--drop", gone)
    assert dropped.strip() == f"dropped replication slot {gone} and publication {gone}"
    assert pg.execute(SLOTS, (gone,)) == [(0,)] and pg.execute(PUBLICATIONS, (gone,)) == [(0,)]
    assert gone not in listed(h)
    quiet = eventdesk(*h, "test", "datasource", "pg")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
    ok(*h, "remove", "model", "kept", "--drop-slot")


@pytest.mark.asyncio
async def test_another_workspaces_slot_is_marked_and_not_dropped_unless_asked(
    pg: PostgresServer, tmp_path: Path
) -> None:
    other = await started(tmp_path / "other", pg, "theirs")
    theirs = other.names("theirs", "theirs").slot
    home = Home.open(str(tmp_path / "home"))
    home.add_datasource("pg", "postgres", {"url": pg.url, "sslmode": "disable"})
    home.add_model("theirs", "pg", {"table": "theirs"})  # same model, same table: another name
    entries = {e.name: e for e in await server_leftovers.list_left(home.workspace, "pg")}
    home.close()
    assert entries[theirs].other_workspace and entries[theirs].followed_by is None
    assert not entries[theirs].droppable

    h = home_args(tmp_path / "home")
    row = next(line for line in ok(*h, "datasource", "leftovers", "pg").splitlines() if theirs in line)
    assert row.endswith("another workspace's")
    assert theirs not in eventdesk(*h, "test", "datasource", "pg").stderr
    refused = eventdesk(*h, "datasource", "leftovers", "pg", "--drop", theirs)
    assert refused.returncode == 2 and "another workspace's" in refused.stderr
    assert pg.execute(SLOTS, (theirs,)) == [(1,)]
    ok(*h, "datasource", "leftovers", "pg", "--drop", theirs, "--other-workspace")
    assert pg.execute(SLOTS, (theirs,)) == [(0,)] and pg.execute(PUBLICATIONS, (theirs,)) == [(0,)]


def test_a_wrong_password_is_named_never_shown(pg: PostgresServer, tmp_path: Path) -> None:
    h = home_args(tmp_path / "home")
    ok(*h, "datasource", "add", "pg", "--kind", "postgres", "--url", pg.password_url(), "--sslmode",
       "disable", "--secret-env", "PG_PW")  # fmt: skip
    wrong = eventdesk(*h, "datasource", "leftovers", "pg", env={"PG_PW": "not-" + PASSWORD})
    assert wrong.returncode == 5
    assert "datasource 'pg': field 'secret'" in wrong.stderr
    assert "not-" + PASSWORD not in wrong.stdout + wrong.stderr
    right = eventdesk(*h, "datasource", "leftovers", "pg", "--json", env={"PG_PW": PASSWORD})
    assert right.returncode == 0, right.stderr


@pytest.mark.parametrize("workspace", ["ab", "0123456789abcdef", "X-y_z"])
def test_a_slot_is_this_workspaces_by_the_mark_its_name_carries(workspace: str) -> None:
    name = object_names(workspace, "pg", "orders_abcdef", "public", "orders").slot
    assert owned_by(name, workspace_mark(workspace))
    assert not owned_by(name, workspace_mark("zzzzzz")) and not owned_by(name, "")


def test_run_warns_of_a_slot_no_model_follows(pg: PostgresServer, tmp_path: Path) -> None:
    """A headless ``run`` names, once its models run, the slot a removed model left holding WAL
    (and the command that drops it), and not the slot its own model follows."""
    pipeline = asyncio.run(started(tmp_path / "home", pg, "gone", "kept"))
    gone, kept = pipeline.names("gone", "gone").slot, pipeline.names("kept", "kept").slot
    h = home_args(tmp_path / "home")
    ok(*h, "remove", "model", "gone")
    for i in range(100):
        pg.execute("INSERT INTO gone VALUES (%s, repeat('x', 500))", (10_000 + i,))
    run = RunProcess(h)
    try:
        line = run.lines[run.wait_line(f"{gone} (replication slot + publication), followed by no model", 60)]
        assert "of WAL" in line and f"eventdesk datasource leftovers pg --drop {gone}" in line, line
        run.wait_line("model 'kept': running", 30)
    finally:
        run.stop()
    assert not [x for x in run.lines if kept in x and "followed by no model" in x], run.lines
