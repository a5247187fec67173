"""A throwaway PostgreSQL server for the tests: initdb in a temporary dir, started with pg_ctl
listening on a Unix socket in that dir only (no TCP port is taken, so no other process can race
for it), stopped and removed at the end.

PostgreSQL refuses to run as root, so as root (CI, these machines) the server runs as the
`postgres` user that Debian's package creates, in a dir of its own under /tmp (pytest's temporary
dirs are root's alone); as anyone else, as that user.
"""

import getpass
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

USER, PASSWORD, DATABASE = "sweeper", "sweeper-secret", "studies"
# With no TCP listener the port only names the socket file, <socket dir>/.s.PGSQL.<port>; the
# socket dir is the server's own, so any number will do.
PORT = 5432


@dataclass(frozen=True)
class Server:
    socket_dir: Path
    port: int = PORT

    def url(self, password: str = PASSWORD, database: str = DATABASE, socket_dir: Path | None = None) -> str:
        """A database's URL as Optuna and SQLAlchemy take it, driven by psycopg 3, which connects
        through the socket in `socket_dir` (the server's unless told another)."""
        host = socket_dir or self.socket_dir
        return f"postgresql+psycopg://{USER}:{password}@/{database}?host={host}&port={self.port}"

    def heartbeat(self, study_name: str, trial_number: int, database: str = DATABASE) -> datetime | None:
        """When the trial's worker last recorded a heartbeat for it (Optuna's trial_heartbeats table)."""
        import psycopg

        query = (
            "SELECT heartbeat FROM trial_heartbeats JOIN trials USING (trial_id) "
            "JOIN studies USING (study_id) WHERE study_name = %s AND number = %s"
        )
        login = f"host={self.socket_dir} port={self.port} user={USER} password={PASSWORD} dbname={database}"
        with psycopg.connect(login) as connection:
            row = connection.execute(query, (study_name, trial_number)).fetchone()
        return row[0] if row else None

    def new_database(self, name: str) -> str:
        """An empty database: its URL."""
        import psycopg

        admin = f"host={self.socket_dir} port={self.port} user={USER} password={PASSWORD} dbname=postgres"
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


@contextmanager
def postgres_server() -> Iterator[Server]:
    """A running server with a database `studies` of the user `sweeper` (password login, through
    the socket too), then gone."""
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    owner = pwd.getpwnam("postgres" if as_root else getpass.getuser())
    bin_dir = server_binaries()
    base = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
    try:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        password_file = base / "password"
        password_file.write_text(PASSWORD)
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
        data = base / "data"

        def run(*command: str) -> None:
            subprocess.run([*run_as, *command], check=True, capture_output=True, cwd=base)

        # --auth: scram-sha-256 for local (socket) connections too, so that a wrong password is refused.
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "-E", "UTF8")  # fmt: skip
        options = f"-p {PORT} -k {base} -c listen_addresses='' -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", options, "-w", "start")
        try:
            server = Server(base, PORT)
            server.new_database(DATABASE)
            yield server
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
