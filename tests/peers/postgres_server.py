"""A PostgreSQL cluster of the test's own: ``initdb`` into a temporary directory, started on a
free port of 127.0.0.1 with its Unix socket in that directory, ``wal_level=logical``.

It never touches the machine's own PostgreSQL (port 5432, its data directory): the binaries are
used, nothing else. The superuser ``postgres`` is trusted from 127.0.0.1 and the socket; the
user ``pw_user`` (a replication user owning nothing) needs its password, for the auth tests.
Run as root, the cluster runs as the system user ``postgres`` (``initdb`` refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.servers import free_port, missing_peer

PASSWORD_USER = "pw_user"
PASSWORD = "s3cret-Pässword"
SUPERUSER = "postgres"


def postgres_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``pg_recvlogical`` (or a test failure/skip)."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if all((Path(directory) / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    missing_peer("the PostgreSQL server (initdb, pg_ctl)", "apt-get install postgresql")
    raise AssertionError("unreachable")  # missing_peer fails or skips


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that run the server as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        missing_peer("a 'postgres' system user (initdb refuses to run as root)", "apt-get install postgresql")
        raise AssertionError("unreachable") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class PostgresServer:
    """One cluster: ``dsn(...)`` for psycopg2, ``url`` for an EventDesk datasource."""

    bindir: Path
    root: Path  # the temporary directory: data/, the socket, the log
    port: int
    wal_level: str = "logical"
    settings: dict[str, str] = field(default_factory=dict)
    tls: tuple[Path, Path] | None = None  # (certificate, key) PEM files: TLS on, with them

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """The datasource URL for the superuser (no password: trusted)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def password_url(self, database: str = "postgres") -> str:
        return f"postgresql://{PASSWORD_USER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, user: str = SUPERUSER, dbname: str = "postgres", **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.port), "user": user, "dbname": dbname, **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def _tool(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / name), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"},
            **_run_as(),
        )

    def init(self) -> None:
        self._tool(
            "initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "wal_level": self.wal_level,
            "max_replication_slots": "20",
            "max_wal_senders": "20",
            # No fsync (a test cluster), but synchronous_commit stays on: a walsender sends only
            # WAL flushed, and with it off a commit waits for the WAL writer (up to 200 ms).
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "timezone": "'UTC'",
            "wal_sender_timeout": "60s",
            **self.settings,
        }
        if self.tls is not None:
            conf.update(ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'")
            for source, name in zip(self.tls, ("server.crt", "server.key"), strict=True):
                target = self.datadir / name
                shutil.copyfile(source, target)
                os.chmod(target, 0o600)  # the server refuses a key others can read
                as_user = _run_as()
                if as_user:
                    os.chown(target, as_user["user"], as_user["group"])
        with (self.datadir / "postgresql.conf").open("a") as fh:
            fh.write("\n# tests/peers/postgres_server.py\n")
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        (self.datadir / "pg_hba.conf").write_text(
            f"local all {SUPERUSER} trust\n"
            f"local replication {SUPERUSER} trust\n"
            f"host all {SUPERUSER} 127.0.0.1/32 trust\n"
            f"host replication {SUPERUSER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n"
        )

    def start(self) -> None:
        self._tool("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._tool("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self._tool(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "restart",
        )

    # -- SQL, as the superuser -----------------------------------------------------------------
    def connect(self, user: str = SUPERUSER, dbname: str = "postgres", **extra: str) -> Any:
        import psycopg2

        conn = psycopg2.connect(self.dsn(user, dbname, **extra))
        conn.autocommit = True
        return conn

    def execute(self, sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run ``sql`` in its own autocommit connection; return its rows (if any)."""
        conn = self.connect(dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description is not None else []
        finally:
            conn.close()

    def create_password_user(self) -> None:
        self.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN REPLICATION PASSWORD %s", (PASSWORD,))


ROOT_PREFIX = "eventdesk-pg-"
OWNER_FILE = "owner.pid"  # the PID of the test process that started the cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphans(bindir: Path) -> None:
    """Stop and remove the clusters of test processes that died without tearing them down (a
    crash, a kill): they would hold ports, memory and disk until the machine restarts."""
    for owner_file in Path(tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*/{OWNER_FILE}"):
        root = owner_file.parent
        try:
            owner = int(owner_file.read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
                **_run_as(),
            )
        shutil.rmtree(root, ignore_errors=True)


def start_postgres(
    wal_level: str = "logical", settings: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None
) -> PostgresServer:
    bindir = postgres_bindir()
    stop_orphans(bindir)
    # Not under pytest's tmp_path: that is 0700 root's, and the server runs as ``postgres``.
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
    (root / OWNER_FILE).write_text(str(os.getpid()))
    as_user = _run_as()
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    server = PostgresServer(
        bindir=bindir, root=root, port=free_port(), wal_level=wal_level, settings=settings or {}, tls=tls
    )
    try:
        server.init()
        server.start()
        server.create_password_user()
    except BaseException:
        log = server.logfile.read_text(errors="replace")[-2000:] if server.logfile.exists() else ""
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(log, str) and log:
            print(log)
        raise
    return server


@contextlib.contextmanager
def running_postgres(
    wal_level: str = "logical", settings: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[PostgresServer]:
    server = start_postgres(wal_level, settings, tls)
    try:
        yield server
    finally:
        server.stop("immediate")
        for _ in range(50):  # the postmaster's children may hold files a moment longer
            if not (server.datadir / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(server.root, ignore_errors=True)
