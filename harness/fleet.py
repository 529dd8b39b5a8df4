"""Several replicas behind the ordinary tools: PgBouncer before PostgreSQL, HAProxy before gunicorn.

For the scaling tests and the benchmark (docs/scaling.md): Debian's ``pgbouncer`` and
``haproxy``, each a throwaway process on free ports with a configuration written for the test,
plus this project's gunicorn replicas and rq workers, started, stopped and restarted at will.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.processes import free_port, wait_until
from harness.project import PYTHON, ROOT, run_manage


def terminate(process: subprocess.Popen[bytes] | None, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if ``process`` is still there ``grace`` seconds later."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


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
        terminate(self.process)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PausableProxy:
    """A TCP proxy to ``127.0.0.1:upstream_port`` whose path can stall and heal: a network partition.

    ``pause()``: bytes are still accepted from both ends (their kernels see ACKs, so no TCP timer
    fires) but none is passed on, and new connections wait before reaching the upstream, as if
    packets vanished on the way. ``resume()``: everything held is delivered, in order, as TCP
    retransmission would once a partition heals.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, name="pausable-proxy", daemon=True).start()

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        self._flowing.wait()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            if self._closed:
                client.close()
                upstream.close()
                return
            self._sockets += [client, upstream]
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self.listener.close()
        self._flowing.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
_BIND = "    bind :8080\n"
_STATS_SOCKET = "stats socket /run/haproxy/admin.sock"
_SERVER_LINE = re.compile(r"^    server \S+ .*\n", re.MULTILINE)
_BALANCE = "    balance roundrobin\n"


@dataclass(frozen=True)
class Backend:
    name: str
    port: int
    probe_port: int | None = None


def haproxy_config(listen_port: int, backends: Sequence[Backend], stats_socket: Path) -> str:
    """``deploy/haproxy/haproxy.cfg`` as written, with this machine's addresses.

    Replaced: the ``bind`` line, the stats socket's path and the ``server`` lines. Added: a
    response header naming the server that answered (``X-Served-By``), for the tests only.
    """
    text = HAPROXY_CONFIG.read_text()
    for marker in (_BIND, _STATS_SOCKET, _BALANCE):
        if text.count(marker) != 1:
            raise ValueError(f"{HAPROXY_CONFIG.name}: expected {marker.strip()!r} exactly once")
    if not _SERVER_LINE.search(text):
        raise ValueError(f"{HAPROXY_CONFIG.name}: no server lines")
    servers = "".join(
        f"    server {b.name} 127.0.0.1:{b.port}" + (f" port {b.probe_port}" if b.probe_port else "") + "\n"
        for b in backends
    )
    first = _SERVER_LINE.search(text)
    assert first is not None
    text = text[: first.start()] + servers + _SERVER_LINE.sub("", text[first.start() :])
    text = text.replace(_BIND, f"    bind 127.0.0.1:{listen_port}\n")
    text = text.replace(_STATS_SOCKET, f"stats socket {stats_socket}")
    return text.replace(_BALANCE, _BALANCE + "    http-response set-header X-Served-By %[srv_name]\n")


class HAProxy:
    """Debian's ``haproxy`` in the foreground with ``deploy/haproxy/haproxy.cfg``, on a free port."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = list(backends)
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="haproxy-"))
        self.socket_path = self.directory / "admin.sock"
        self.config_path = self.directory / "haproxy.cfg"
        self.log_path = self.directory / "haproxy.log"
        self.config_path.write_text(haproxy_config(self.port, self.backends, self.socket_path))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"haproxy exited {process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                return bool(self.stats())
            return False

        wait_until(ready, 15, "haproxy's stats socket")
        return self

    def command(self, line: str) -> str:
        """One command on the runtime API (the stats socket)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` for the backend's servers: name -> row (``status``: UP, DOWN, "UP 1/2", ...)."""
        lines = self.command("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {row["svname"]: row for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")}

    def status(self, server: str) -> str:
        return self.stats()[server]["status"]

    def wait_status(self, server: str, status: str, timeout: float) -> float:
        """Poll until ``server``'s status is exactly ``status``; the ``time.monotonic()`` it was seen."""
        wait_until(lambda: self.status(server) == status, timeout, f"{server} to be {status}", interval=0.02)
        return time.monotonic()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        terminate(self.process)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class RqWorker:
    """``manage.py rqworker default`` (as ``make worker`` runs it) in a subprocess; log to a file."""

    def __init__(self, env: dict[str, str], name: str, queue: str = "default", ttl: int = 30, *extra: str) -> None:
        self.env = env
        self.name = name
        self.args = ["rqworker", queue, "--worker-ttl", str(ttl), "--name", name, *extra]
        fd, path = tempfile.mkstemp(prefix=f"rqworker-{name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RqWorker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [PYTHON, "manage.py", *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.process, grace=30)  # warm shutdown: the current job finishes


def staff_session(env: dict[str, str]) -> str:
    """A logged-in superuser's session key in ``env``'s database, for "ordinary admin requests"."""
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "user, _ = get_user_model().objects.get_or_create(username='fleet-staff', "
        "defaults={'is_staff': True, 'is_superuser': True})\n"
        "session = SessionStore()\n"
        "session.update({'_auth_user_id': str(user.pk), "
        "'_auth_user_backend': 'django.contrib.auth.backends.ModelBackend', "
        "'_auth_user_hash': user.get_session_auth_hash()})\n"
        "session.create()\n"
        "print(session.session_key)\n"
    )
    result = run_manage("shell", "-c", code, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"could not create a staff session:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


class PeakBackends:
    """The most client backends PostgreSQL reports for ``database`` while the block runs.

    Sampled every 50 ms from ``pg_stat_activity`` on one kept connection to ``server_url``'s
    maintenance database (a new connection per sample would be a fork of PostgreSQL every 50 ms;
    it is not counted, being another database).
    """

    def __init__(self, server_url: str, database: str) -> None:
        self.server_url = server_url
        self.database = database
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-backends", daemon=True)

    def _sample(self) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=5) as connection:
            while not self._stop.wait(0.05):
                connection.execute("SELECT pg_stat_clear_snapshot()")
                row = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                    (self.database,),
                ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)
                self.samples += 1

    def __enter__(self) -> PeakBackends:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
