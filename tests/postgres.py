"""A throwaway PostgreSQL server for the tests: initdb in a temporary dir, started with pg_ctl on a
free local port, stopped and removed at the end.

PostgreSQL refuses to run as root, so as root (CI, these machines) the server runs as the
`postgres` user that Debian's package creates, in a dir of its own under /tmp (pytest's temporary
dirs are root's alone); as anyone else, as that user.
"""

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD, DATABASE = "sweeper", "sweeper-secret", "studies"


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def url(self, password: str = PASSWORD, port: int | None = None, database: str = DATABASE) -> str:
        """A database's URL as Optuna and SQLAlchemy take it, driven by psycopg 3."""
        return f"postgresql+psycopg://{USER}:{password}@{self.host}:{port or self.port}/{database}"

    def new_database(self, name: str) -> str:
        """An empty database: its URL."""
        import psycopg

        admin = f"host={self.host} port={self.port} user={USER} password={PASSWORD} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(database=name)


def server_binaries() -> Path:
    """The newest PostgreSQL's bin dir (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3]))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed: make system (or apt-get install -y postgresql)")
    return Path(pg_ctl).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[Server]:
    """A running server with a database `studies` of the user `sweeper` (password login), then gone."""
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    owner = pwd.getpwnam("postgres" if as_root else getpass.getuser())
    bin_dir, port = server_binaries(), free_port()
    base = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
    try:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        password_file = base / "password"
        password_file.write_text(PASSWORD)
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
        data = base / "data"

        def run(*command: str) -> None:
            subprocess.run([*run_as, *command], check=True, capture_output=True, cwd=base)

        run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "-E", "UTF8")  # fmt: skip
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", options, "-w", "start")
        try:
            server = Server("127.0.0.1", port)
            server.new_database(DATABASE)
            yield server
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
