"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests.

PostgreSQL refuses to run as root, so under root the cluster belongs to a
system user ``sparringtest`` (created with useradd if missing; ``nobody``
otherwise) and every server command runs through ``runuser``. The cluster
lives in a fresh directory under /tmp (pytest's own tmp dirs are private to
root), uses trust authentication on loopback only, and is stopped and
removed after the session.

Fixtures:
- ``postgres_server``: session; the running cluster (``PgCluster``).
- ``postgres_url``: session; ``postgresql+psycopg://USER@127.0.0.1:PORT/sparring``.
- ``db_url``: per test, parametrised over sqlite and postgresql; each test
  gets an empty database (a new SQLite file, or a new PostgreSQL database).
- ``own_postgres``: per test; a cluster of its own, to stop, start and fail
  over (``PgCluster.stop``/``start``, ``standby_of`` and ``promote``).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import unavailable

BIN_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
TEST_USER = "sparringtest"
_counter = itertools.count(1)


@dataclass
class PgCluster:
    root: Path  # holds data/, sock/, log
    user: str
    port: int
    bin_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        """Run a server tool as the cluster's owner."""
        return subprocess.run(
            [*_as_user(self.user), str(self.bin_dir / tool), *args],
            check=True, capture_output=True, text=True, timeout=120,
        )

    def start(self) -> None:
        self.run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.root / "log"),
                 "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root / 'sock'}")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: as if the server died (no checkpoint, connections cut)."""
        self.run("pg_ctl", "stop", "-w", "-D", str(self.data_dir), "-m", mode)

    def promote(self) -> None:
        self.run("pg_ctl", "promote", "-w", "-D", str(self.data_dir))

    def remove(self) -> None:
        subprocess.run([*_as_user(self.user), str(self.bin_dir / "pg_ctl"), "stop", "-D",
                        str(self.data_dir), "-m", "immediate", "-w"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             dbname=database, autocommit=True) as conn:
            conn.execute(statement)


def _as_user(user: str) -> list[str]:
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _bin_dir() -> Path | None:
    """The server's own bin directory (symlinks resolved), so pg_dump matches the server."""
    for directory in BIN_DIRS:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return (Path(directory) / "initdb").resolve().parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _server_user() -> str:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(TEST_USER)
        return TEST_USER
    except KeyError:
        pass
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
                          capture_output=True)
    return TEST_USER if made.returncode == 0 else "nobody"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _new_root(user: str, bin_dir: Path) -> PgCluster:
    root = Path(tempfile.mkdtemp(prefix="sparring-pg-"))
    (root / "sock").mkdir()
    if os.geteuid() == 0:
        info = pwd.getpwnam(user)
        for path in (root, root / "sock"):
            os.chown(path, info.pw_uid, info.pw_gid)
    return PgCluster(root, user, _free_port(), bin_dir)


def _start(bin_dir: Path, *settings: str) -> PgCluster:
    """A new cluster; ``settings`` (``name = value`` lines) go into its postgresql.conf."""
    cluster = _new_root(_server_user(), bin_dir)
    cluster.run("initdb", "-D", str(cluster.data_dir), "-U", cluster.user, "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync", "--no-instructions")
    _configure(cluster, "fsync = off", "full_page_writes = off", "max_connections = 50", *settings)
    cluster.start()
    return cluster


def _configure(cluster: PgCluster, *settings: str) -> None:
    conf = cluster.data_dir / "postgresql.conf"
    with open(conf, "a", encoding="utf-8") as handle:
        handle.write("\n".join(settings) + "\n")


def standby_of(primary: PgCluster) -> PgCluster:
    """A streaming replica of ``primary`` (pg_basebackup -R), started, and
    made the primary's synchronous standby: nothing the primary committed is
    lost when the standby is promoted."""
    standby = _new_root(primary.user, primary.bin_dir)
    standby.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", primary.user,
                "-D", str(standby.data_dir), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast")
    _configure(standby, "cluster_name = 'standby'")
    standby.start()
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
    primary.sql("SELECT pg_reload_conf()")
    return standby


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgCluster]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg 3 is not installed")
    try:
        cluster = _start(bin_dir)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        unavailable(f"PostgreSQL could not be started: {str(detail).strip()[-300:]}")
    try:
        yield cluster
    finally:
        subprocess.run([*_as_user(cluster.user), str(bin_dir / "pg_ctl"), "stop", "-D",
                        str(cluster.data_dir), "-m", "fast", "-w"], capture_output=True, timeout=60)
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[PgCluster]:
    """A cluster for one test, which may stop it, fail it over or kill its
    connections; ready for a standby (``standby_of``)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    try:
        cluster = _start(bin_dir, "wal_level = replica", "max_wal_senders = 4")
    except (subprocess.SubprocessError, OSError) as exc:
        unavailable(f"PostgreSQL could not be started: {str(getattr(exc, 'stderr', '') or exc).strip()[-300:]}")
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PgCluster) -> str:
    postgres_server.sql("CREATE DATABASE sparring")
    return postgres_server.url("sparring")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """An empty database of each kind; the same test runs on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    server: PgCluster = request.getfixturevalue("postgres_server")
    name = f"t{os.getpid()}_{next(_counter)}"
    server.sql(f"CREATE DATABASE {name}")
    yield server.url(name)
    server.sql(f"DROP DATABASE {name} WITH (FORCE)")
