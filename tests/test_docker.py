"""The Docker path end to end: the image built once, the compose stack started with `make up`,
probed over real HTTP from the host, faulted, scaled, restarted and stopped. No mocks.

`make test-docker` runs this module (marker ``docker``); `make test` leaves it out. Without a
Docker engine the tests that need one skip with one line (CI sets REQUIRE_DOCKER=1: a failure).
Each stack is a compose project of its own (name, free port, a copy of the project with its own
``./data``), removed afterwards; the image has a tag of this session's own, removed at the end.
The PostgreSQL and Redis that serve the rest of the suite are never touched: stacks run theirs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.processes import parse_json_lines, wait_until
from harness.project import BIN, ROOT, project_copy
from tests.docker_support import (
    APP_SERVICES,
    BASE_FILE,
    DEFAULT_COMPOSE,
    PRODUCTION_FILES,
    REQUIRED,
    Stack,
    Unavailable,
    clean_env,
    compose_config,
    compose_version,
    debian_compose,
    engine_problem,
    health_status,
    inspect,
    remove_tree,
    run,
    uids_of_processes,
    version_tuple,
    versions,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

HEALTHY = {"status": "ok", "db": "ok", "redis": "ok"}
APP_USER = "10001:10001"
APP_UID = 10001
# The contract's default; the compose files set no HEALTHCHECK_TIMEOUT (TestDevelopmentStack checks).
HEALTHCHECK_TIMEOUT = 1.0
DEADLINE = HEALTHCHECK_TIMEOUT + 0.25  # the contract, measured in web (its health_probe log line)
# The round trip seen from the host also counts docker-proxy and a loaded machine's scheduling:
# bounded only loosely (a hang is still caught).
ROUND_TRIP_SLACK = 3.0
# Generous caps for things that take a few seconds on a quiet machine: polled, never slept.
SETTLE = 60.0
# Debian's release whose docker-compose (2.26.1) is the oldest Compose the files support.
OLDEST_COMPOSE_SUITE = "trixie"
# compose-go's fix for `!reset` inside a merged anchor first shipped in Compose v5.1.4.
ANCHOR_RESET_FIX = (5, 1, 4)
# What .dockerignore must keep out of the image: planted in the build's copy of the project.
DOCKERIGNORE_DECOYS = (
    ".env",
    ".env.production",
    ".env.local",
    "production.env",  # the name docs once used with `docker run --env-file`
    "deploy/staging.env",
    "deploy/.env",
    ".git",
    ".venv/decoy",
    "data/decoy",
    "staticfiles/decoy.css",
    "apps/__pycache__/decoy.cpython-311.pyc",
)


def skip_or_fail(message: str) -> None:
    if REQUIRED:
        pytest.fail(f"{message} (REQUIRE_DOCKER=1: the Docker tests must run here)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine() -> dict[str, str]:
    problem = engine_problem()
    if problem:
        skip_or_fail(f"Docker end-to-end tests: {problem}")
    return versions()


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    log: str  # BuildKit's plain progress output: its own reading of the Dockerfile, step by step
    # Every image this session's builds wrote: a cached rebuild (`make up` builds too) may assemble
    # an equal image from another build's cache records, under a new id.
    ids: set[str] = field(default_factory=set)

    def record(self, build_output: str) -> None:
        self.ids.update(re.findall(r"writing image (sha256:[0-9a-f]{64})", build_output))


@pytest.fixture(scope="session")
def image(engine: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    """The image, built once per session the way `make up` builds it (Compose), from scratch."""
    tree = project_copy(tmp_path_factory.mktemp("build") / "project")
    for decoy in DOCKERIGNORE_DECOYS:
        (tree / decoy).parent.mkdir(parents=True, exist_ok=True)
        (tree / decoy).write_text("DECOY=planted-by-the-test\n")
    tag = f"django-service-foundation:test-{secrets.token_hex(4)}"
    env = clean_env(APP_IMAGE=tag, COMPOSE_PROJECT_NAME=f"dsf-build-{secrets.token_hex(4)}")
    # --no-cache: every step really runs (and prints), as on a machine that never built it.
    result = run(["docker", "compose", "--progress", "plain", "build", "--no-cache"], cwd=tree, env=env, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    built = BuiltImage(tag, log)
    built.record(log)
    try:
        yield built
    finally:
        # After the stacks (fixtures end in reverse order); an id still in use elsewhere stays.
        run(["docker", "image", "rm", tag, *built.ids])
        remove_tree(tree, tag)


# docs/docker.md's commands, run below as written.
UP = "make up"
PRODUCTION_UP = "COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml make up"
NEW_SECRET_KEY = '''export DJANGO_SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(64))')"'''


def start(stack: Stack, image: BuiltImage, command: str = UP) -> Stack:
    """`make up` (build, start detached, wait until healthy), or the production override's."""
    result = stack.sh(command, COMPOSE_FILE=None)
    image.record(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stack.up_output = result.stdout
    return stack


def ps(stack: Stack) -> dict[str, dict[str, Any]]:
    """``docker compose ps -a`` by container name (one JSON object per line, or one array)."""
    output = stack.compose("ps", "-a", "--format", "json").stdout.strip()
    try:
        rows = json.loads(output)
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in output.splitlines()]
    return {row["Name"]: row for row in ([rows] if isinstance(rows, dict) else rows)}


def worker_count(stack: Stack) -> int | None:
    """Live workers per ``check_services --worker`` in web, when its canary round trip succeeded."""
    result = stack.sh("docker compose exec web python manage.py check_services --worker")
    match = re.search(r"workers=(\d+)", result.stdout)
    return int(match.group(1)) if result.returncode == 0 and match else None


def fault_then_recovery(stack: Stack, service: str, fault: str, undo: str, failing_check: str) -> None:
    """While `docker compose <fault> <service>` lasts, /healthz answers 503 with ``failing_check``
    "error" within the deadline; after `<undo>`, 200 again from the same web container, never
    restarted."""
    web = stack.container("web")
    assert stack.get("/healthz").status == 200  # the probes hold live connections
    stack.compose(fault, service)
    try:
        for _ in range(3):
            answer = stack.probe("/healthz")
            assert (answer.status, answer.body) == (503, {**HEALTHY, "status": "error", failing_check: "error"})
            assert answer.server_seconds <= DEADLINE, f"the probe took {answer.server_seconds:.3f} s in web"
            assert answer.round_trip_seconds <= HEALTHCHECK_TIMEOUT + ROUND_TRIP_SLACK
    finally:
        stack.compose(undo, service)
    wait_until(lambda: stack.get("/healthz").status == 200, SETTLE, f"/healthz 200 after compose {undo} {service}")
    assert unchanged(web, stack.container("web"))


def unchanged(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """The same container, never restarted in between."""
    return (before["Id"], before["State"]["StartedAt"], after["RestartCount"]) == (
        after["Id"],
        after["State"]["StartedAt"],
        0,
    )


# --- The oldest Compose the files support (no engine needed) -------------------------------


@pytest.fixture(scope="session")
def fetched_oldest_compose() -> list[str] | Unavailable:
    """Debian's docker-compose 2.26.1, or why it cannot be had here."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "django-service-foundation"
    try:
        return [str(debian_compose(OLDEST_COMPOSE_SUITE, cache / "debian-compose"))]
    except Unavailable as error:
        return error


@pytest.fixture(scope="session")
def oldest_compose(fetched_oldest_compose: list[str] | Unavailable) -> list[str]:
    if isinstance(fetched_oldest_compose, Unavailable):
        skip_or_fail(f"oldest-Compose tests: {fetched_oldest_compose}")
        raise fetched_oldest_compose
    return fetched_oldest_compose


class TestOldestCompose:
    def test_it_predates_the_fix_for_reset_in_anchors(self, oldest_compose: list[str]) -> None:
        """So the next test would fail with the `!reset` inside the shared anchor."""
        assert version_tuple(compose_version(oldest_compose)) < ANCHOR_RESET_FIX

    def test_production_override_drops_the_source_mount(self, oldest_compose: list[str]) -> None:
        """Defect 1: Compose before v5.1.4 kept `.:/app`, hiding the image's static files."""
        config = compose_config(oldest_compose, ROOT, PRODUCTION_FILES, DJANGO_SECRET_KEY=secrets.token_urlsafe(64))
        for name in APP_SERVICES:
            service = config["services"][name]
            assert not service.get("volumes"), (name, service.get("volumes"))
            assert service["read_only"] is True, name
            assert service["environment"]["DJANGO_DEBUG"] == "false", name
        assert config["services"]["web"]["command"] == ["gunicorn", "--config", "gunicorn.conf.py"]

    def test_development_stack_reads_the_same(self, oldest_compose: list[str]) -> None:
        def essentials(config: dict[str, Any]) -> dict[str, Any]:
            return {
                name: (
                    service.get("image"),
                    service.get("command"),
                    "build" in service,
                    service.get("pull_policy"),
                    sorted((volume["source"], volume["target"]) for volume in service.get("volumes", [])),
                    {dependency: spec["condition"] for dependency, spec in service.get("depends_on", {}).items()},
                    service.get("healthcheck", {}).get("test"),
                    sorted(service["networks"]),
                )
                for name, service in config["services"].items()
            }

        oldest = compose_config(oldest_compose, ROOT, (BASE_FILE,))
        current = compose_config([str(BIN / "docker-compose")], ROOT, (BASE_FILE,))
        assert essentials(oldest) == essentials(current)

    def test_make_up_checks_the_compose_version(self, oldest_compose: list[str], tmp_path: Path) -> None:
        """It accepts the oldest supported Compose, and refuses one below the floor with one line."""
        tree = project_copy(tmp_path / "project")
        env = clean_env(COMPOSE_PROJECT_NAME=f"dsf-never-{secrets.token_hex(4)}")
        make = ["make", "--no-print-directory", f"COMPOSE={oldest_compose[0]}"]
        accepted = run([*make, "compose-check"], cwd=tree, env=env)
        assert accepted.returncode == 0, accepted.stderr
        version = compose_version(oldest_compose)
        major, minor, _ = version_tuple(version)
        floor = f"{major}.{minor + 1}"
        refused = run([*make, "up", f"COMPOSE_MIN_VERSION={floor}"], cwd=tree, env=env)
        assert refused.returncode != 0
        assert refused.stdout == ""  # stopped before running anything
        assert (
            refused.stderr.splitlines()[0]
            == f"Docker Compose {version} is too old: the compose files need {floor} or later"
        )


# --- The image ------------------------------------------------------------------------------


class TestImage:
    def test_the_build_fetches_no_frontend_image(self, image: BuiltImage) -> None:
        """Defect 2: `# syntax=docker/dockerfile:1` made every build fetch that image from a registry."""
        assert "docker/dockerfile" not in image.log
        assert not re.search(r"resolve image config for", image.log)

    def test_the_three_app_services_get_one_build(self, image: BuiltImage) -> None:
        """Defect 3: with `build:` on migrate, web and worker, one build wrote three images."""
        assert len(re.findall(r"writing image sha256:", image.log)) == 1, image.log[-3000:]

    def test_the_build_prints_no_warning(self, image: BuiltImage) -> None:
        """Defect 4: useradd warned that uid 10001 is above SYS_UID_MAX."""
        assert [line for line in image.log.splitlines() if "warning" in line.lower()] == []

    def test_multi_stage_on_python_slim_with_a_hash_checked_install(self, image: BuiltImage) -> None:
        bases = set(re.findall(r"load metadata for (\S+)", image.log))
        assert bases == {"docker.io/library/python:3.11-slim"}
        stages = set(re.findall(r"^#\d+ \[(\w[\w-]*) \d+/\d+\]", image.log, flags=re.MULTILINE))
        assert len(stages) >= 2, stages
        installs = [line for line in image.log.splitlines() if re.search(r"\] RUN .*pip install", line)]
        assert installs
        assert all("--require-hashes" in line and "requirements.txt" in line for line in installs), installs
        # The final image starts with python:3.11-slim's layers: the runtime stage is built on it.
        base_layers = inspect("python:3.11-slim", kind="image")[0]["RootFS"]["Layers"]
        assert inspect(image.tag, kind="image")[0]["RootFS"]["Layers"][: len(base_layers)] == base_layers

    def test_configuration(self, image: BuiltImage) -> None:
        config = inspect(image.tag, kind="image")[0]["Config"]
        assert config["User"] == APP_USER  # numeric and non-root: runAsNonRoot can verify it
        assert "PYTHONUNBUFFERED=1" in config["Env"]
        # The build-time placeholder secret never reaches the image's environment.
        assert not any(variable.startswith("DJANGO_SECRET_KEY=") for variable in config["Env"])
        assert config["Entrypoint"] == ["docker-entrypoint"]
        assert config["Cmd"][0] == "gunicorn"
        assert "8000/tcp" in config["ExposedPorts"]
        # The project answers its own health check: the slim image has no curl.
        assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "config.healthcheck", "/livez"]

    def test_dockerignore_keeps_secrets_state_and_caches_out(self, image: BuiltImage) -> None:
        """Nothing planted in the build's copy, and no tests, docs, caches or compose files."""
        unwanted = [
            *("decoy", "decoy.css", "__pycache__", "tests", "bench", "harness", ".ci", "docs", ".git", ".venv", "data")
        ]
        code = (
            "import json, pathlib, sys; app, names = pathlib.Path('/app'), set(json.loads(sys.argv[1]));"
            "print(json.dumps(sorted(str(p.relative_to(app)) for p in app.rglob('*')"
            " if p.name in names or p.name.startswith(('.env', 'docker-compose')) or p.name.endswith('.env'))))"
        )
        command = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image.tag]
        result = run([*command, "-c", code, json.dumps(unwanted)])
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [".env.example"]

    def test_size(self, image: BuiltImage, capsys: pytest.CaptureFixture[str]) -> None:
        size = inspect(image.tag, kind="image")[0]["Size"]
        base = inspect("python:3.11-slim", kind="image")[0]["Size"]
        with capsys.disabled():
            print(f"\n    image {image.tag}: {size / 1e6:.0f} MB, {(size - base) / 1e6:.0f} MB over python:3.11-slim")
        # The virtualenv, the source and the collected static files; no compiler, no caches.
        assert size - base < 150e6

    def test_healthcheck_turns_healthy_with_a_read_only_root(self, image: BuiltImage) -> None:
        variables = {
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "localhost",
            # /livez needs neither; nothing listens there (no network at all).
            "DATABASE_URL": "postgres://app@db.invalid:5432/app",
            "REDIS_URL": "redis://cache.invalid:6379/0",
        }
        options = [option for key, value in variables.items() for option in ("-e", f"{key}={value}")]
        # Only the interval is shortened (from 30 s); the check is the image's own.
        read_only = ["--read-only", "--tmpfs", "/tmp", "--network", "none"]
        started = run(
            ["docker", "run", "--detach", *read_only, "--health-interval", "1s", *options, image.tag], check=True
        )
        container = started.stdout.strip()
        try:
            wait_until(lambda: health_status(container) == "healthy", SETTLE, "the image's HEALTHCHECK turns healthy")
            logs = run(["docker", "logs", container]).stderr
            assert "Traceback" not in logs
            assert inspect(container)[0]["HostConfig"]["ReadonlyRootfs"] is True
        finally:
            run(["docker", "rm", "--force", "--volumes", container])


# --- Development stack ----------------------------------------------------------------------


@pytest.fixture(scope="class")
def dev_stack(image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # DEBUG and JSON: web logs each probe's own duration (health_probe), which Stack.probe reads.
    stack = Stack.create(tmp_path_factory.mktemp("dev"), image.tag, LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    try:
        yield start(stack, image)
    finally:
        stack.destroy()


class TestDevelopmentStack:
    def test_make_up_waits_for_health_and_says_where_to_look(self, dev_stack: Stack) -> None:
        assert f"http://127.0.0.1:{dev_stack.port}/healthz" in dev_stack.up_output
        states = {row["Service"]: (row["State"], row["Health"]) for row in ps(dev_stack).values()}
        assert states == {
            "postgres": ("running", "healthy"),
            "redis": ("running", "healthy"),
            "migrate": ("exited", ""),
            "web": ("running", "healthy"),
            "worker": ("running", "healthy"),
        }
        assert dev_stack.container("migrate")["State"]["ExitCode"] == 0

    def test_contract_names_at_run_time(self, dev_stack: Stack) -> None:
        (network,) = inspect(f"{dev_stack.project}_model-net", kind="network")
        assert network["Driver"] == "bridge"
        members = {container["Name"] for container in network["Containers"].values()}
        assert members == {container.removeprefix("/") for container in ps(dev_stack) if "migrate" not in container}
        web = dev_stack.container("web")
        # Loopback only: a DEBUG server must not be reachable from the network.
        assert [binding["HostIp"] for binding in web["NetworkSettings"]["Ports"]["8000/tcp"]] == ["127.0.0.1"]
        assert "HEALTHCHECK_TIMEOUT" not in " ".join(web["Config"]["Env"])
        data = {
            mount["Destination"]: mount["Source"]
            for name in ("postgres", "redis")
            for mount in dev_stack.container(name)["Mounts"]
        }
        assert data == {
            "/var/lib/postgresql/data": str(dev_stack.directory / "data" / "postgres"),
            "/data": str(dev_stack.directory / "data" / "redis"),
        }

    def test_probes_answer_the_contract_bodies(self, dev_stack: Stack) -> None:
        for path, body in (("/healthz", HEALTHY), ("/readyz", HEALTHY), ("/livez", {"status": "ok"})):
            response = dev_stack.get(path)
            assert (response.status, response.json()) == (200, body), path
            assert response.headers["cache-control"] == "no-store"

    def test_check_services_proves_a_worker_inside_web(self, dev_stack: Stack) -> None:
        result = dev_stack.sh("docker compose exec web python manage.py check_services --worker")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1] == "healthy"

    def test_every_app_process_runs_as_the_app_user(self, dev_stack: Stack) -> None:
        for name in ("web", "worker"):
            processes = uids_of_processes(dev_stack.container(name)["Id"])
            assert any("manage.py" in command for command, _ in processes), processes
            assert {uid for _, uid in processes} == {APP_UID}, (name, processes)
        for name in APP_SERVICES:
            assert dev_stack.container(name)["Config"]["User"] == APP_USER, name

    def test_redis_stopped_then_back(self, dev_stack: Stack) -> None:
        """A stopped container: its name no longer resolves, nothing accepts connections."""
        fault_then_recovery(dev_stack, "redis", "stop", "start", failing_check="redis")

    def test_postgres_hanging_then_back(self, dev_stack: Stack) -> None:
        """A paused container holds its connections open and answers nothing: a hang, not a refusal."""
        fault_then_recovery(dev_stack, "postgres", "pause", "unpause", failing_check="db")

    def test_two_workers_then_one(self, dev_stack: Stack) -> None:
        scaled = dev_stack.sh("docker compose up --detach --no-deps --scale worker=2 worker")
        assert scaled.returncode == 0, scaled.stderr
        try:
            wait_until(lambda: worker_count(dev_stack) == 2, SETTLE, "check_services --worker reports 2 live workers")
            first, second = dev_stack.containers("worker")
            run(["docker", "stop", second], check=True)
            # The stopped worker deregistered; the other still answers the canary.
            assert worker_count(dev_stack) == 1
        finally:
            dev_stack.compose("up", "--detach", "--no-deps", "--scale", "worker=1", "worker")
        assert dev_stack.containers("worker") == [first] or len(dev_stack.containers("worker")) == 1

    def test_data_survives_down_and_up(self, dev_stack: Stack, image: BuiltImage) -> None:
        username = f"kept-{secrets.token_hex(4)}"
        dev_stack.shell(f"from django.contrib.auth.models import User; User.objects.create_user({username!r})")
        # With the worker stopped the job stays queued: only Redis's append-only file can keep it.
        dev_stack.compose("stop", "worker")
        job = dev_stack.shell("from apps.core import background, jobs; print(background.submit(jobs.echo, 'kept'))")
        status = f"from apps.core import background; print(background.outcome({job!r}).status)"
        assert dev_stack.shell(status) == "queued"

        stopped = dev_stack.sh("make down")
        assert stopped.returncode == 0, stopped.stderr
        assert dev_stack.containers("web", all_states=True) == []
        start(dev_stack, image)

        exists = (
            f"from django.contrib.auth.models import User; print(User.objects.filter(username={username!r}).exists())"
        )
        assert dev_stack.shell(exists) == "True"
        wait_until(lambda: dev_stack.shell(status) == "finished", SETTLE, "the queued job ran after the restart")


# --- Production override --------------------------------------------------------------------


@pytest.fixture(scope="class")
def prod_stack(
    image: BuiltImage, fetched_oldest_compose: list[str] | Unavailable, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The production override, run by the oldest supported Compose, the release its defect hit.

    `make` and the test's own compose commands use it (COMPOSE). Where it cannot be fetched,
    the current Compose runs the stack (and TestOldestCompose says why it skipped).
    """
    compose = DEFAULT_COMPOSE if isinstance(fetched_oldest_compose, Unavailable) else fetched_oldest_compose
    stack = Stack.create(tmp_path_factory.mktemp("prod"), image.tag, PRODUCTION_FILES, compose)
    try:
        # The key the documented command makes, kept for the test's own compose commands.
        key = stack.sh(f'{NEW_SECRET_KEY}\nprintf %s "$DJANGO_SECRET_KEY"').stdout
        assert len(key) >= 50
        stack.variables["DJANGO_SECRET_KEY"] = key
        yield start(stack, image, PRODUCTION_UP)
    finally:
        stack.destroy()


class TestProductionStack:
    def test_gunicorn_serves(self, prod_stack: Stack) -> None:
        response = prod_stack.get("/healthz")
        assert (response.status, response.json()) == (200, HEALTHY)
        processes = uids_of_processes(prod_stack.container("web")["Id"])
        gunicorns = [
            command for command, _ in processes if command.startswith("/opt/venv/bin/python /opt/venv/bin/gunicorn")
        ]
        assert len(gunicorns) == 3, processes  # the master and WEB_CONCURRENCY=2 workers
        assert {uid for _, uid in processes} == {APP_UID}

    def test_admin_login_page_and_its_hashed_css(self, prod_stack: Stack) -> None:
        """Defect 1 at run time: with the source mounted this page was a 500 (no manifest entry)."""
        page = prod_stack.get("/admin/login/")
        assert page.status == 200, prod_stack.logs("web")[-3000:]
        stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.body.decode())
        assert stylesheet, page.body.decode()[:2000]
        css = prod_stack.get(stylesheet.group(1))
        assert css.status == 200
        assert css.headers["content-type"].startswith("text/css")
        assert "immutable" in css.headers["cache-control"]
        max_age = re.search(r"max-age=(\d+)", css.headers["cache-control"])
        assert max_age
        assert int(max_age.group(1)) >= 365 * 24 * 3600

    def test_no_source_mount_and_a_read_only_root(self, prod_stack: Stack) -> None:
        for name in APP_SERVICES:
            container = prod_stack.container(name)
            assert container["Mounts"] == [], name
            assert container["HostConfig"]["ReadonlyRootfs"] is True, name
            assert "/tmp" in container["HostConfig"]["Tmpfs"], name

    def test_json_logs_carry_the_request_id(self, prod_stack: Stack) -> None:
        request_id = f"e2e-{secrets.token_hex(6)}"
        response = prod_stack.get("/admin/login/", headers={"X-Request-ID": request_id})
        assert response.headers["x-request-id"] == request_id

        def logged() -> list[dict[str, Any]]:
            return [line for line in parse_json_lines(prod_stack.logs("web")) if line.get("request_id") == request_id]

        assert wait_until(logged, SETTLE, f"a JSON log line with request_id={request_id}")
        # One JSON object per line, nothing else (gunicorn's own lines included).
        lines = [line for line in prod_stack.logs("web").splitlines() if line.strip()]
        assert [line for line in lines if not line.startswith("{")] == []

    def test_check_deploy_is_clean_inside_the_container(self, prod_stack: Stack) -> None:
        """With the override's two plain-HTTP concessions unset, the production defaults pass."""
        plain_http = {"DJANGO_SECURE_SSL_REDIRECT": "", "DJANGO_SECURE_COOKIES": ""}
        result = prod_stack.exec(
            "web", "python", "manage.py", "check", "--deploy", "--fail-level", "WARNING", env=plain_http
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "System check identified no issues" in result.stdout

    def test_bad_environment_stops_web_with_status_2(self, prod_stack: Stack) -> None:
        result = prod_stack.compose("run", "--rm", "--no-deps", "-e", "DATABASE_URL=", "web", check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "DATABASE_URL: missing" in output
        assert "Traceback" not in output

    def test_stopping_needs_no_secret(self, prod_stack: Stack) -> None:
        """Defect 4: `make down` with the production COMPOSE_FILE failed without DJANGO_SECRET_KEY.

        As in a user's shell: no COMPOSE_PROJECT_NAME either (with it, Compose's down and ps fall
        back to the name when the files do not load, and the failure hides).
        """
        for command in ("make ps", "make down"):
            result = prod_stack.sh(command, DJANGO_SECRET_KEY=None, COMPOSE_PROJECT_NAME=None)
            assert result.returncode == 0, (command, result.stderr)
        assert prod_stack.containers("web", all_states=True) == []
