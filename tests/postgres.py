"""A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` in a temporary folder, reached through a Unix
socket in that folder (no TCP port), removed afterwards.

PostgreSQL refuses to run as root; as root the server runs as the `postgres` user that Debian's package
creates (`runuser -u postgres --`). `make test` installs the package when it is missing and we are root, so
the tests that use it skip only where it is absent and cannot be installed (not root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROLE = "slovo"  # the server's superuser, trusted on the socket


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl: Debian keeps them in /usr/lib/postgresql/NN/bin, off the PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_postgres() -> Path:
    """The binaries' folder, or skip (not root: nothing can install them) / fail (root: `make test` should have)."""
    bindir = postgres_bin()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        pytest.skip(
            "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH); "
            "apt-get install postgresql, or run `make test` as root, which installs it"
        )
    pytest.fail("PostgreSQL is not installed: `make test` installs it as root (apt-get install postgresql)")


class PostgresServer:
    """`with PostgresServer() as pg:` starts a server; `pg.url` is a SQLAlchemy URL for its `postgres` database."""

    def __init__(self):
        self.bindir = require_postgres()
        self.root = Path(tempfile.mkdtemp(prefix="slovo-pg-"))  # short: a socket path must fit in 107 bytes
        self.data = self.root / "data"
        self.socket_dir = self.root
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(
                    "running as root, and there is no `postgres` user to run the server as "
                    "(Debian's postgresql package creates it)"
                )
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{ROLE}@/{name}?host={self.socket_dir}"

    def new_database(self, name: str) -> str:
        """Create an empty database (no Optuna tables yet) and return its URL."""
        import psycopg

        with psycopg.connect(dbname="postgres", user=ROLE, host=str(self.socket_dir), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {proc.stderr[-2000:]}\n{tail}")

    def start(self) -> PostgresServer:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", ROLE, "-A", "trust", "--no-sync", "-E", "UTF8"
        )
        options = f"-k {self.socket_dir} -c listen_addresses='' -F"  # socket only; no fsync for a test server
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
