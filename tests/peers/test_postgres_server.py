"""The PostgreSQL test cluster is a real server of the test's own: its own data directory and
socket in a temporary directory, a free port (never 5432), logical WAL, a trusted superuser and
a user that needs its password; it stops and restarts on demand and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests.peers.postgres_server import PASSWORD, PASSWORD_USER, running_postgres


def test_the_cluster_is_the_tests_own_and_goes_away() -> None:
    with running_postgres() as pg:
        assert pg.port != 5432
        assert (pg.root / f".s.PGSQL.{pg.port}").is_socket()
        assert pg.execute("SHOW wal_level") == [("logical",)]
        assert pg.execute("SHOW data_directory") == [(str(pg.datadir),)]
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(pg.dsn(PASSWORD_USER, password="wrong")).close()
        psycopg2.connect(pg.dsn(PASSWORD_USER, password=PASSWORD)).close()
        pg.restart()
        assert pg.execute("SELECT 1") == [(1,)]
        root = pg.root
    assert not root.exists()


def test_a_cluster_left_by_a_dead_test_process_is_stopped_and_removed() -> None:
    script = "from tests.peers.postgres_server import start_postgres; import os; print(start_postgres().root); os._exit(0)"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    orphan = Path(out.stdout.strip())
    assert (orphan / "data" / "postmaster.pid").exists()  # still running: nobody stopped it
    with running_postgres():
        assert not orphan.exists()
