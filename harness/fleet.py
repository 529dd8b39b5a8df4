"""Several replicas behind the ordinary tools: PgBouncer before PostgreSQL, HAProxy before gunicorn.

For the scaling tests and the benchmark (docs/scaling.md): Debian's ``pgbouncer`` and
``haproxy``, each a throwaway process on free ports with a configuration written for the test,
plus this project's gunicorn replicas and rq workers, started, stopped and restarted at will.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from harness.processes import free_port, wait_until


class PgBouncer:
    """A throwaway PgBouncer (Debian's ``pgbouncer``) in transaction mode, in front of ``postgres_port``.

    Every database name is passed through to the PostgreSQL server; the pool for one database
    and user holds at most ``pool_size`` server connections, whatever the number of clients.
    Trust authentication, as the throwaway clusters use. ``show("POOLS")`` reads the admin
    console. PgBouncer refuses to run as root, so it runs as ``postgres`` when we are root.
    """

    def __init__(self, postgres_port: int, pool_size: int = 4, pool_mode: str = "transaction") -> None:
        self.postgres_port = postgres_port
        self.pool_size = pool_size
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._as_postgres = os.geteuid() == 0
        (self.directory / "users.txt").write_text('"postgres" ""\n')
        (self.directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={postgres_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'users.txt'}\n"
            "admin_users = postgres\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 1000\n"
            f"logfile = {self.log_path}\n"
        )
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
            for path in self.directory.iterdir():
                shutil.chown(path, "postgres", "postgres")

    @property
    def log_path(self) -> Path:
        return self.directory / "pgbouncer.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgBouncer:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        self.process = subprocess.Popen(
            [*prefix, "pgbouncer", "-q", str(self.directory / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited {process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
            return False

        wait_until(listening, 15, f"pgbouncer on port {self.port}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def show(self, what: str) -> list[dict[str, object]]:
        """``SHOW <what>`` on the admin console (``POOLS``, ``SERVERS``, ``CLIENTS``), one dict per row."""
        import psycopg

        # The admin console speaks only the simple query protocol: a client-side cursor, no parameters.
        with psycopg.connect(self.url("pgbouncer"), autocommit=True, connect_timeout=5) as connection:
            cursor = psycopg.ClientCursor(connection)
            cursor.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
