"""This project's own processes: ``manage.py`` commands and an HTTP server (gunicorn or runserver).

``project_env`` gives a subprocess a valid production-like environment (DEBUG off, a real
key) pointed at the shared PostgreSQL and Redis, unless told otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.env import VARIABLES
from harness.processes import free_port, parse_json_lines, timed, wait_until

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

SECRET_KEY = "subprocess-test-secret-key-9f8e7d6c5b4a-0123456789-abcdefghijklmnop"
# The database every PostgreSQL installation has: subprocess health checks need no migrations.
DATABASE_URL = os.environ.get("TEST_SUBPROCESS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_SUBPROCESS_REDIS_URL", "redis://127.0.0.1:6379/14")
# Every variable of the contract, from its one declaration.
CONTRACT_VARIABLES = tuple(variable.name for variable in VARIABLES)
# gunicorn parses these itself at import time and fails on an empty value.
GUNICORN_READS = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")


def project_env(clear: bool = False, **overrides: str | None) -> dict[str, str]:
    """A production-like environment for a subprocess: DEBUG off, valid key and hosts.

    ``clear=True`` starts with every contract variable unset; an override of ``None`` unsets
    one. "Unset" is an empty value (the contract treats both alike), which a developer's ``.env``
    fills (``make run`` writes one): a test that needs a required variable unset runs in a
    ``project_copy``, which has no ``.env``.
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


def run_manage(
    *args: str, env: Mapping[str, str], timeout: float = 60, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` in ``cwd`` (default: this checkout; or a ``project_copy``)."""
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )


def project_copy(destination: Path) -> Path:
    """The project's files (tracked, or new and not ignored) copied to ``destination``.

    A checkout whose ``.env`` a test may write: commands run there with this checkout's
    virtualenv, and nothing in the developer's own tree (their ``.env``, ``staticfiles``) is
    seen or touched.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    )
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


NGINX_SITE = ROOT / "deploy" / "nginx" / "default.conf"
# The two addresses in it that are compose's; everything else is used as written.
_NGINX_UPSTREAM, _NGINX_LISTEN = "server web:8000;", "listen 8080;"


def nginx_site(upstream_port: int, listen_port: int) -> str:
    """``deploy/nginx/default.conf`` with gunicorn at 127.0.0.1:``upstream_port``, nginx on ``listen_port``."""
    site = NGINX_SITE.read_text()
    for marker in (_NGINX_UPSTREAM, _NGINX_LISTEN):
        if site.count(marker) != 1:
            raise ValueError(f"{NGINX_SITE.name}: expected {marker!r} exactly once")
    return site.replace(_NGINX_UPSTREAM, f"server 127.0.0.1:{upstream_port};").replace(
        _NGINX_LISTEN, f"listen 127.0.0.1:{listen_port};"
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
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
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

    def wait_for_workers(self, count: int, timeout: float = 60) -> set[int]:
        """The PIDs of ``count`` workers that have loaded the application (their ``worker_ready`` lines).

        ``start()`` returns once one worker answers; a test about how work spreads over the
        workers waits for all of them.
        """

        def ready() -> set[int]:
            pids = {e["pid"] for e in self.events() if e.get("event") == "worker_ready"}
            return pids if len(pids) >= count else set()

        pids: set[int] = wait_until(ready, timeout, f"{count} gunicorn workers to be ready", interval=0.1)
        return pids

    def probe(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 30, port: int | None = None
    ) -> ProbeAnswer:
        """GET a probe path; also how long the server itself took, from its ``health_probe`` line.

        That line (DEBUG, so the server needs ``LOG_LEVEL=DEBUG`` and ``LOG_FORMAT=json``) is
        written before the response is sent: it is in the log once the answer is here. The
        server-side time is where the deadline is enforced; the round trip also counts the
        scheduling of a loaded machine, so tests bound it only loosely. ``port``: another port of
        the same server (``PROBE_PORT``).
        """
        request_id = f"probe-{uuid.uuid4().hex}"
        url = f"http://127.0.0.1:{port or self.port}{path}"
        with timed() as elapsed:
            response = http_get(url, {**(headers or {}), "X-Request-ID": request_id}, timeout=timeout)
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
