"""A Docker engine, Compose and the project's compose stack, for the end-to-end tests.

- ``engine_problem``: why no Docker engine can be used here, or None.
- ``Stack``: one compose project (own name, port and data) driven by shell commands (``make up``)
  and ``docker compose``,
  from a ``project_copy`` of its own: its own ``./data``, no developer ``.env``, its own source mount.
- ``debian_compose``: a Compose release from Debian's archive, unpacked, never installed: the
  oldest one the compose files support.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.processes import free_port, parse_json_lines, timed, wait_until
from harness.project import CONTRACT_VARIABLES, ProbeAnswer, Response, http_get, project_copy

BASE_FILE = "docker-compose.yml"
PRODUCTION_FILES = (BASE_FILE, "docker-compose.prod.yml")
APP_SERVICES = ("migrate", "web", "worker")
DEFAULT_COMPOSE = ("docker", "compose")
# Set by CI (.ci/run): a missing engine is then a failure, not a skip.
REQUIRED = os.environ.get("REQUIRE_DOCKER") == "1"

# Variables of the caller's shell that would change what compose or make do.
_FOREIGN_VARIABLES = {
    *CONTRACT_VARIABLES,
    "APP_IMAGE",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
    "COMPOSE",
    "COMPOSE_MIN_VERSION",
}


def clean_env(**variables: str) -> dict[str, str]:
    """The caller's environment without project, compose or make variables, plus ``variables``.

    DOCKER_HOST and DOCKER_CONFIG stay: they say which engine and which CLI plugins to use.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _FOREIGN_VARIABLES and not key.startswith("COMPOSE_")
    }
    env.update(variables)
    return env


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command),
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,  # never a terminal: `docker compose exec` then allocates no TTY
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def engine_problem() -> str | None:
    """Why the Docker end-to-end tests cannot run here, in one line, or None when they can."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        server = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    except subprocess.TimeoutExpired:
        return "no Docker engine answers (docker version timed out)"
    if server.returncode != 0:
        reason = (server.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker engine answers ({reason})"
    compose = run(["docker", "compose", "version", "--short"], timeout=30)
    if compose.returncode != 0:
        return "the Docker Compose plugin (docker compose, v2 or later) is missing"
    return None


def skip_without_engine(items: Sequence[pytest.Item]) -> None:
    """Mark the tests that use the ``engine`` fixture to skip when no engine answers.

    A skip marker rather than a skip in the fixture: pytest folds those into one report line.
    Under REQUIRE_DOCKER=1 nothing is marked: the fixture then fails them.
    """
    needing = [item for item in items if "engine" in getattr(item, "fixturenames", ())]
    if not needing or REQUIRED:
        return
    problem = engine_problem()
    if problem is not None:
        for item in needing:
            item.add_marker(pytest.mark.skip(reason=f"Docker end-to-end tests: {problem}"))


def versions() -> dict[str, str]:
    """The engine's and the default Compose's versions, for the report."""
    server = run(["docker", "version", "--format", "{{.Server.Version}}"], check=True).stdout.strip()
    compose = run(["docker", "compose", "version", "--short"], check=True).stdout.strip()
    return {"engine": server, "compose": compose}


def remove_tree(directory: Path, image: str) -> None:
    """Delete a project copy, including ``./data`` files that belong to the containers' users."""
    try:
        shutil.rmtree(directory)
    except PermissionError:
        mount = f"{directory}:/tree"
        run(
            ["docker", "run", "--rm", "--user", "0", "--entrypoint", "rm", "-v", mount, image, "-rf", "/tree/data"],
            check=True,
        )
        shutil.rmtree(directory)


def inspect(*objects: str, kind: str = "container") -> list[dict[str, Any]]:
    """``docker <kind> inspect``, parsed."""
    result = run(["docker", kind, "inspect", *objects], check=True)
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


@dataclass
class Stack:
    """One compose project from its own copy of the project: own name, port, data and image tag.

    The copy's directory is named like the project, so Compose finds the same project name
    without COMPOSE_PROJECT_NAME too, as in a user's shell.
    """

    directory: Path
    image: str
    files: tuple[str, ...] = (BASE_FILE,)
    variables: dict[str, str] = field(default_factory=dict)
    compose_command: tuple[str, ...] = DEFAULT_COMPOSE  # also what `make` runs (COMPOSE)
    port: int = field(default_factory=free_port)
    up_output: str = ""  # what the last `make up` printed

    @classmethod
    def create(
        cls,
        parent: Path,
        image: str,
        files: tuple[str, ...] = (BASE_FILE,),
        compose_command: Sequence[str] = DEFAULT_COMPOSE,
        **variables: str,
    ) -> Stack:
        directory = project_copy(parent / f"dsf-test-{secrets.token_hex(4)}")
        return cls(directory, image, files, dict(variables), tuple(compose_command))

    @property
    def project(self) -> str:
        return self.directory.name

    def env(self, **overrides: str | None) -> dict[str, str]:
        """What compose reads: project name, files, port and image tag; ``None`` drops a variable."""
        env = clean_env(
            COMPOSE_PROJECT_NAME=self.project,
            COMPOSE_FILE=":".join(self.files),
            PORT=str(self.port),
            APP_IMAGE=self.image,
            **self.variables,
        )
        if self.compose_command != DEFAULT_COMPOSE:
            env["COMPOSE"] = " ".join(self.compose_command)
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def sh(self, command: str, timeout: float = 600, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        """A shell command line in the project copy, as a user types it (docs/docker.md's, verbatim)."""
        env = {**self.env(**overrides), "MAKEFLAGS": "--no-print-directory"}
        return run(["bash", "-c", command], cwd=self.directory, env=env, timeout=timeout)

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self.compose_command, *args]
        return run(command, cwd=self.directory, env=self.env(), timeout=timeout, check=check)

    def exec(
        self, service: str, *command: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose exec`` in the service's running container; never raises on exit status."""
        options = [option for key, value in (env or {}).items() for option in ("-e", f"{key}={value}")]
        return self.compose("exec", "-T", *options, service, *command, check=False)

    def manage(self, service: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.exec(service, "python", "manage.py", *args)

    def shell(self, code: str) -> str:
        """Run ``code`` in ``manage.py shell`` inside web; the last line it printed."""
        result = self.manage("web", "shell", "--no-imports", "-c", code)
        assert result.returncode == 0, result.stdout + result.stderr
        return (result.stdout.strip().splitlines() or [""])[-1]

    def containers(self, service: str, all_states: bool = False) -> list[str]:
        args = ["ps", "-q", *(["-a"] if all_states else []), service]
        return self.compose(*args).stdout.split()

    def container(self, service: str) -> dict[str, Any]:
        (container,) = self.containers(service, all_states=True)
        return inspect(container)[0]

    def logs(self, service: str) -> str:
        """The service's container's output, from the engine (Compose 2.26 decorates its own)."""
        result = run(["docker", "logs", self.container(service)["Id"]], check=True)
        return result.stdout + result.stderr

    def get(self, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> Response:
        return http_get(f"http://127.0.0.1:{self.port}{path}", headers, timeout)

    def probe(self, path: str) -> ProbeAnswer:
        """GET a probe path, and how long web itself took, from its ``health_probe`` log line.

        That line is DEBUG and read as JSON: the stack needs LOG_LEVEL=DEBUG and LOG_FORMAT=json.
        The server-side time is where the deadline is enforced; the round trip from here also
        counts docker-proxy and a loaded machine's scheduling, so tests bound it only loosely.
        """
        request_id = f"probe-{secrets.token_hex(8)}"
        with timed() as elapsed:
            response = self.get(path, {"X-Request-ID": request_id}, timeout=30)

        def logged() -> list[dict[str, Any]]:
            events = parse_json_lines(self.logs("web"))
            return [e for e in events if e.get("event") == "health_probe" and e.get("request_id") == request_id]

        (line,) = wait_until(logged, 30, f"the health_probe line of {request_id}", interval=0.2)
        return ProbeAnswer(response.status, response.json(), float(line["duration_ms"]) / 1000, elapsed[0])

    def destroy(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False, timeout=180)
        remove_tree(self.directory, self.image)


def uids_of_processes(container: str) -> list[tuple[str, int]]:
    """Every process in a running container: (command line, real uid)."""
    # docker top needs the pid column to map the processes to the container.
    top = run(["docker", "top", container, "-eo", "pid,uid,args"], check=True).stdout.splitlines()[1:]
    return [(args, int(uid)) for _pid, uid, args in (line.split(None, 2) for line in top)]


def health_status(container: str) -> str | None:
    state = inspect(container)[0]["State"]
    health = state.get("Health")
    return health["Status"] if health else None


# --- An older Compose, from Debian's archive -----------------------------------------------


class Unavailable(Exception):
    """The package cannot be fetched here (no apt-get, no Debian mirror in the apt sources)."""


def _debian_mirror() -> str | None:
    """The Debian mirror this machine's apt already uses (never a host named in our code)."""
    if mirror := os.environ.get("DEBIAN_MIRROR"):
        return mirror
    candidates: list[str] = []
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        candidates += re.findall(r"^URIs:\s*(\S+)", sources.read_text(errors="replace"), flags=re.MULTILINE)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        candidates += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", legacy.read_text(errors="replace"), re.MULTILINE)
    return next((uri for uri in candidates if uri.rstrip("/").endswith("/debian")), None)


def debian_compose(suite: str, cache: Path) -> Path:
    """Debian ``suite``'s ``docker-compose`` package, downloaded and unpacked under ``cache``.

    Uses apt with a state of its own (its own sources list, lists and cache), so nothing of this
    machine's apt configuration or installed packages changes. Cached after the first call.
    """
    root = cache / suite
    binary = root / "unpacked" / "usr" / "libexec" / "docker" / "cli-plugins" / "docker-compose"
    if binary.exists():
        return binary
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    mirror = _debian_mirror()
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb") and keyring.exists() and mirror):
        raise Unavailable(
            f"cannot fetch Debian {suite}'s docker-compose: needs apt-get, dpkg-deb, the keyring, a mirror"
        )
    state = root / "apt"
    for directory in (state / "lists" / "partial", state / "cache" / "archives" / "partial", root / "debs"):
        directory.mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb [signed-by={keyring}] {mirror} {suite} main\n")
    options = [
        *("-o", f"Dir::Etc::SourceList={state / 'sources.list'}"),
        *("-o", "Dir::Etc::SourceParts=/nonexistent"),
        *("-o", f"Dir::State::Lists={state / 'lists'}"),
        *("-o", f"Dir::Cache={state / 'cache'}"),
        *("-o", "Dir::State::status=/var/lib/dpkg/status"),
        # Download as ourselves: apt's own sandbox user cannot write into this cache.
        *("-o", f"APT::Sandbox::User={pwd.getpwuid(os.geteuid()).pw_name}"),
    ]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command, cwd in ((["update", "-qq"], None), (["download", "-qq", "docker-compose"], root / "debs")):
        result = run(["apt-get", *options, *command], cwd=cwd, env=env, timeout=300)
        if result.returncode != 0:
            raise Unavailable(f"apt-get {command[0]} ({suite}) failed: {result.stderr.strip()[-300:]}")
    (package,) = sorted((root / "debs").glob("docker-compose_*.deb"))
    run(["dpkg-deb", "-x", str(package), str(root / "unpacked")], check=True)
    return binary


def compose_version(command: Sequence[str]) -> str:
    return run([*command, "version", "--short"], check=True).stdout.strip().removeprefix("v")


def version_tuple(version: str) -> tuple[int, ...]:
    """``2.26.1-4`` (Debian's) -> (2, 26, 1)."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    assert match, f"not a version: {version!r}"
    return tuple(int(part) for part in match.groups())


def compose_config_run(
    command: Sequence[str], directory: Path, files: Sequence[str], **variables: str
) -> subprocess.CompletedProcess[str]:
    """``compose config --format json`` of ``files`` in ``directory``: Compose's own reading.

    Only ``variables`` (and PATH, HOME) in its environment and an empty env file, so neither the
    caller's shell nor a developer's ``.env`` changes what is read.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        return run(
            [*command, "--project-directory", str(directory), "--env-file", empty.name]
            + [argument for name in files for argument in ("-f", str(directory / name))]
            + ["config", "--format", "json"],
            cwd=directory,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/nonexistent"), **variables},
        )


def compose_config(command: Sequence[str], directory: Path, files: Sequence[str], **variables: str) -> dict[str, Any]:
    result = compose_config_run(command, directory, files, **variables)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config
