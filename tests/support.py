"""Real processes and misbehaving servers for the tests: no mocks, only things that run.

- ``project_env``: an environment for a subprocess of this project (valid unless overridden).
- ``run_manage``: ``python manage.py ...`` as a subprocess.
- ``Server``: gunicorn or runserver on a free port, its output captured to a file.
- ``RedisServer``, ``PostgresCluster``: throwaway servers on free ports, stoppable and restartable.
- ``BlackHole``: a TCP listener that accepts connections and never answers.
- ``DelayProxy``: a TCP proxy that delivers a server's replies late (a slow dependency).
- ``child_pids``: a process's children (a gunicorn master's workers).
- ``wait_until``: poll for a condition with a generous cap (never a fixed sleep in its place).
- ``parse_json_lines``: the JSON log lines of a process's output.
- ``preserved_environ``: undo whatever a test (or the code under test) did to ``os.environ``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

SECRET_KEY = "subprocess-test-secret-key-9f8e7d6c5b4a-0123456789-abcdefghijklmnop"
# The database every PostgreSQL installation has: subprocess health checks need no migrations.
DATABASE_URL = os.environ.get("TEST_SUBPROCESS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_SUBPROCESS_REDIS_URL", "redis://127.0.0.1:6379/14")
CONTRACT_VARIABLES = (
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "PORT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "HEALTHCHECK_TIMEOUT",
    "HEALTHCHECK_CACHE_SECONDS",
    "HEALTHCHECK_TOKEN",
    "WEB_CONCURRENCY",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SECURE_HSTS_SECONDS",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_SECURE_HSTS_PRELOAD",
    "DJANGO_SECURE_COOKIES",
    "DJANGO_SECURE_PROXY_SSL_HEADER",
    "DJANGO_ADMIN_URL",
    "FORWARDED_ALLOW_IPS",
)

GUNICORN_READS = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")


def caches_at(redis_url: str) -> dict[str, Any]:
    """The project's CACHES with the app's Redis (cache and probe) moved to ``redis_url``."""
    from django.conf import settings

    caches: dict[str, Any] = dict(settings.CACHES)
    caches["default"] = {**caches["default"], "LOCATION": redis_url}
    return caches


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout``.

    The cap is generous on purpose: it only bounds a test that would otherwise hang, it is
    never the thing under test.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among ``text``'s lines (other lines, such as a traceback, are skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
    return events


@contextlib.contextmanager
def preserved_environ() -> Iterator[None]:
    """Restore ``os.environ`` exactly as it was, whatever the block (or ``read_dotenv``) set."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def project_env(clear: bool = False, **overrides: str | None) -> dict[str, str]:
    """A production-like environment for a subprocess: DEBUG off, valid key and hosts.

    ``clear=True`` starts with every contract variable unset; an override of ``None`` unsets
    one. "Unset" is an empty value (the contract treats both alike), so a developer's ``.env``,
    which never overrides a variable that exists, cannot fill the gap.
    """
    env = {key: value for key, value in os.environ.items() if key not in CONTRACT_VARIABLES}
    # gunicorn parses these two itself at import time and fails on an empty value: leave them out.
    env.update(dict.fromkeys(set(CONTRACT_VARIABLES) - set(GUNICORN_READS), ""))
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if not clear:
        env.update(
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY=SECRET_KEY,
            DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1",
            DATABASE_URL=DATABASE_URL,
            REDIS_URL=REDIS_URL,
            DJANGO_SECURE_SSL_REDIRECT="false",
            LOG_FORMAT="json",
        )
    for key, value in overrides.items():
        if value is not None:
            env[key] = value
        elif key not in GUNICORN_READS:
            env[key] = ""
    return env


def run_manage(*args: str, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        import json

        return json.loads(self.body)


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10, method: str = "GET") -> Response:
    request = urllib.request.Request(url, headers=dict(headers or {}), method=method)  # noqa: S310 - test URLs

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as reply:
            return Response(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


@dataclass(frozen=True)
class ProbeAnswer:
    status: int
    body: Any
    server_seconds: float  # the probe's own duration, from the server's log
    round_trip_seconds: float  # as this client saw it


@dataclass
class Server:
    """A real HTTP server of this project in a subprocess (gunicorn by default)."""

    env: dict[str, str]
    kind: str = "gunicorn"
    extra_args: tuple[str, ...] = ()
    # Runs before the server's own command, e.g. ``setpriv ... --`` to start it as another user.
    prefix: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: float = 30) -> Server:
        fd, name = tempfile.mkstemp(prefix=f"{self.kind}-", suffix=".log")
        self.log_path = Path(name)
        env = {**self.env, "PORT": str(self.port)}
        if self.kind == "gunicorn":
            command = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", *self.extra_args]
        else:
            command = [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}", *self.extra_args]
        self.process = subprocess.Popen(
            [*self.prefix, *command], cwd=ROOT, env=env, stdout=fd, stderr=subprocess.STDOUT
        )
        os.close(fd)
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early:\n{self.output()}")
            try:
                return http_get(self.url + "/livez", timeout=2).status == 200
            except OSError:
                return False

        try:
            wait_until(answers, wait, f"{self.kind} to answer /livez", interval=0.1)
        except AssertionError:
            self.stop()
            raise RuntimeError(f"{self.kind} did not answer /livez in {wait}s:\n{self.output()}") from None
        return self

    def get(self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> Response:
        return http_get(self.url + path, headers, timeout)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def events(self) -> list[dict[str, Any]]:
        """The server's JSON log lines so far (``LOG_FORMAT=json``)."""
        return parse_json_lines(self.output())

    def probe(self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 30) -> ProbeAnswer:
        """GET a probe path; also how long the server itself took, from its ``health_probe`` line.

        That line (DEBUG, so the server needs ``LOG_LEVEL=DEBUG`` and ``LOG_FORMAT=json``) is
        written before the response is sent: it is in the log once the answer is here. The
        server-side time is where the deadline is enforced; the round trip also counts the
        scheduling of a loaded machine, so tests bound it only loosely.
        """
        request_id = f"probe-{uuid.uuid4().hex}"
        with timed() as elapsed:
            response = self.get(path, {**(headers or {}), "X-Request-ID": request_id}, timeout=timeout)
        (line,) = wait_until(
            lambda: [
                e for e in self.events() if e.get("event") == "health_probe" and e.get("request_id") == request_id
            ],
            10,
            f"the health_probe line of {request_id}",
        )
        return ProbeAnswer(response.status, json.loads(response.body), float(line["duration_ms"]) / 1000, elapsed[0])

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer:
    """A throwaway redis-server on a free port; stop() kills it, start() brings it back."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *options: str) -> RedisServer:
        """Start (or restart, on the same port) the server; ``options`` are extra arguments."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def command(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return result.stdout


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


class BlackHole:
    """Accepts TCP connections and never sends a byte: a host that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close_listener(self) -> None:
        """Stop accepting, but keep the accepted connections silent and open (no FIN sent)."""
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


PG_BIN = Path("/usr/lib/postgresql")


def postgres_bin() -> Path | None:
    """The machine's PostgreSQL server binaries (initdb, pg_ctl), if installed."""
    for candidate in sorted(PG_BIN.glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, trust auth."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bin = binaries
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgcluster-"))
        self.data = self.directory / "data"
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120, cwd=self.directory)

    @property
    def log_path(self) -> Path:
        return self.directory / "log"

    def start(self, *settings: str) -> PostgresCluster:
        """Start the server; ``settings`` are extra ``name=value`` server settings."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        options += "".join(f" -c {setting}" for setting in settings)
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "immediate") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def process_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def established_connections(pid: int, remote_port: int) -> int:
    """TCP connections of process ``pid`` to ``127.0.0.1:remote_port`` that are still open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) == remote_port and state == "01":
            count += 1
    return count


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as elapsed: ...``; ``elapsed[0]`` is the block's duration in seconds."""
    box: list[float] = []
    started = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - started)


class DelayProxy:
    """A TCP proxy to ``127.0.0.1:upstream_port`` that holds every reply ``delay`` seconds.

    Requests reach the upstream at once; bytes coming back are delivered ``delay`` seconds
    after they arrived (in order). ``delay`` can change at any time and applies to replies
    received from then on, so a client can connect while it is 0 and see the server turn slow
    under an established connection. ``close()`` drops the listener and every connection.
    """

    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self._lock = threading.Lock()
        self._open: dict[socket.socket, socket.socket] = {}  # client -> upstream
        self._closed = False
        threading.Thread(target=self._accept, name="delay-proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    self._close(client, upstream)
                    return
                self._open[client] = upstream
            pair = _Pair(self, client, upstream)
            threading.Thread(target=self._requests, args=(client, upstream, pair.finished), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, pair.finished), daemon=True).start()

    @staticmethod
    def _requests(source: socket.socket, target: socket.socket, finished: Callable[[], None]) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            DelayProxy._abort(source, target)
        finally:
            finished()

    def _replies(self, source: socket.socket, target: socket.socket, finished: Callable[[], None]) -> None:
        pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def deliver() -> None:
            try:
                while True:
                    due, data = pending.get()
                    if (wait := due - time.monotonic()) > 0:
                        time.sleep(wait)
                    if not data:
                        target.shutdown(socket.SHUT_WR)
                        return
                    target.sendall(data)
            except OSError:
                DelayProxy._abort(source, target)
            finally:
                finished()

        threading.Thread(target=deliver, daemon=True).start()
        data = b"-"
        while data:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            pending.put((time.monotonic() + self.delay, data))

    @staticmethod
    def _abort(*sockets: socket.socket) -> None:
        """Wake every thread blocked on these sockets; ``_close`` releases them."""
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @classmethod
    def _close(cls, *sockets: socket.socket) -> None:
        cls._abort(*sockets)
        for sock in sockets:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs, self._open = list(self._open.items()), {}
        self.sock.close()
        for client, upstream in pairs:
            self._abort(client, upstream)


class _Pair:
    """A proxied connection's two directions; whichever finishes second closes both sockets."""

    def __init__(self, proxy: DelayProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.remaining = 2

    def finished(self) -> None:
        with self.proxy._lock:
            self.remaining -= 1
            if self.remaining:
                return
            self.proxy._open.pop(self.client, None)
        DelayProxy._close(self.client, self.upstream)


def child_pids(pid: int) -> set[int]:
    """The live child processes of ``pid`` (for example a gunicorn master's workers)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) may contain spaces; the fields after its ")" do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.add(int(stat.parent.name))
    return children
