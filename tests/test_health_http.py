"""The probe endpoints through Django's full middleware stack, against the real services."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from harness.processes import free_port
from tests.support import caches_at

pytestmark = pytest.mark.django_db

HEALTHY = {"status": "ok", "db": "ok", "redis": "ok"}
TOKEN = "probe-token-0123456789-abcdefghijklmnop"


@pytest.fixture
def redis_down() -> Iterator[int]:
    """Point the app's Redis at a port where nothing listens."""
    port = free_port()
    with override_settings(CACHES=caches_at(f"redis://127.0.0.1:{port}/0")):
        yield port


@pytest.mark.parametrize("path", ["/readyz", "/healthz", "/healthz/", "/readyz/"])
def test_ready_and_health_are_ok_when_services_are_up(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == HEALTHY
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"


def test_livez_checks_nothing(client: Client, redis_down: int) -> None:
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_head_is_allowed_and_other_methods_get_a_json_405(client: Client, path: str) -> None:
    assert client.head(path).status_code == 200
    for method in (client.post, client.put, client.delete, client.options):
        response = method(path)
        assert response.status_code == 405
        assert response["Content-Type"] == "application/json"
        assert response["Cache-Control"] == "no-store"
        assert response["Allow"] == "GET, HEAD"
        assert response.json()["status"] == "error"


def test_livez_speaks_health_json_too(client: Client) -> None:
    response = client.get("/livez", HTTP_ACCEPT="application/health+json")
    assert response["Content-Type"] == "application/health+json"
    assert response.json() == {"status": "pass"}


def test_workers_built_on_the_web_side_leave_every_other_redis_call_bounded(settings) -> None:
    """rq raises the socket timeout of the pool of any Worker object it builds to minutes (the
    queue dashboard builds them in the web process). The cache, the probe and later enqueues
    must keep their 2 s: an enqueue to a Redis that stopped answering fails, it does not hang."""
    import django_rq
    from django_redis import get_redis_connection
    from redis.exceptions import TimeoutError as RedisTimeout
    from rq import Worker

    from harness.processes import timed
    from harness.servers import DelayProxy

    proxy = DelayProxy(int(urlsplit(settings.REDIS_URL).port or 6379))
    try:
        settings.RQ_QUEUES = {"default": {"URL": f"redis://127.0.0.1:{proxy.port}/15?socket_timeout=2"}}
        dashboard_queue = django_rq.get_queue("default")
        Worker([dashboard_queue], connection=dashboard_queue.connection)  # what the dashboard does
        assert dashboard_queue.connection.connection_pool.connection_kwargs["socket_timeout"] > 60

        assert get_redis_connection("default").connection_pool.connection_kwargs["socket_timeout"] == 2
        queue = django_rq.get_queue("default", commit_mode="auto")
        assert queue.connection.connection_pool.connection_kwargs["socket_timeout"] == 2
        queue.connection.ping()  # connected before Redis goes quiet
        proxy.delay = 30
        with timed() as elapsed, pytest.raises(RedisTimeout):
            queue.enqueue("apps.core.jobs.echo", "never sent")
        assert elapsed[0] < 2 + 1
    finally:
        proxy.close()


def test_redis_down_is_503_without_leaking_where_it_is(client: Client, redis_down: int) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "db": "ok", "redis": "error"}
    body = response.content.decode()
    assert "127.0.0.1" not in body
    assert str(redis_down) not in body
    assert "refused" not in body  # the category is a detail: only for authorised callers


def test_any_host_header_is_answered_but_other_urls_still_validate_it(client: Client) -> None:
    assert client.get("/healthz", HTTP_HOST="10.244.3.17:8000").status_code == 200
    assert client.get("/livez", HTTP_HOST="10.244.3.17").status_code == 200
    assert client.get("/admin/login/", HTTP_HOST="10.244.3.17").status_code == 400


def test_probes_answer_over_plain_http_while_everything_else_redirects(client: Client, settings) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/readyz", HTTP_HOST="10.0.0.5").status_code == 200
    response = client.get("/admin/login/")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


class TestRequestId:
    def test_a_valid_id_is_echoed(self, client: Client) -> None:
        response = client.get("/livez", HTTP_X_REQUEST_ID="edge-42.abc_DEF")
        assert response["X-Request-ID"] == "edge-42.abc_DEF"

    @pytest.mark.parametrize("bad", ["", "has space", 'quote"d', "new\nline", "x" * 129, "ünïcode", "a;b", "{json}"])
    def test_an_invalid_id_is_replaced(self, client: Client, bad: str) -> None:
        response = client.get("/admin/login/", HTTP_X_REQUEST_ID=bad)
        assert response["X-Request-ID"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])

    def test_a_missing_id_is_generated_and_differs_per_request(self, client: Client) -> None:
        first = client.get("/healthz")["X-Request-ID"]
        second = client.get("/healthz")["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", first)
        assert first != second

    def test_128_characters_is_still_valid(self, client: Client) -> None:
        longest = "a" * 128
        assert client.get("/livez", HTTP_X_REQUEST_ID=longest)["X-Request-ID"] == longest


@pytest.fixture
def token(settings) -> str:
    settings.HEALTHCHECK_TOKEN = TOKEN
    return settings.HEALTHCHECK_TOKEN


@pytest.mark.usefixtures("token")
class TestDetails:
    def test_verbose_is_hidden_from_strangers(self, client: Client) -> None:
        assert client.get("/healthz?verbose=1").json() == HEALTHY

    def test_a_wrong_token_gets_the_plain_body(self, client: Client) -> None:
        for header in ("Bearer wrong-token", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", ""):
            response = client.get("/healthz?verbose=1", HTTP_AUTHORIZATION=header)
            assert response.json() == HEALTHY

    def test_the_token_unlocks_details(self, client: Client) -> None:
        body = client.get("/healthz?verbose=1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
        assert {key: body[key] for key in HEALTHY} == HEALTHY
        assert set(body["checks"]) == {"db", "redis"}
        for check in body["checks"].values():
            assert check["status"] == "ok"
            assert check["error"] is None
            assert isinstance(check["latency_ms"], float)
            assert 0 <= check["latency_ms"] < 1000

    def test_details_name_the_error_category(self, client: Client, redis_down: int) -> None:
        response = client.get("/healthz?verbose=1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 503
        redis = response.json()["checks"]["redis"]
        assert redis["status"] == "error"
        assert redis["error"] == "refused"
        assert str(redis_down) not in response.content.decode()

    # The session is read on the lookup thread's own connection: it must be committed.
    @pytest.mark.django_db(transaction=True)
    def test_staff_session_unlocks_details(self, client: Client) -> None:
        staff = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
        client.force_login(staff)
        assert "checks" in client.get("/healthz?verbose=1").json()

    @pytest.mark.django_db(transaction=True)
    def test_a_non_staff_session_does_not(self, client: Client) -> None:
        user = get_user_model().objects.create_user("someone", password="pw")
        client.force_login(user)
        assert client.get("/healthz?verbose=1").json() == HEALTHY


@pytest.mark.usefixtures("token")
class TestHealthJson:
    ACCEPT = "application/health+json"

    def test_format_without_details(self, client: Client) -> None:
        response = client.get("/healthz", HTTP_ACCEPT=self.ACCEPT)
        assert response.status_code == 200
        assert response["Content-Type"] == self.ACCEPT
        assert response["Cache-Control"] == "no-store"
        assert response.json() == {
            "status": "pass",
            "checks": {"db:responseTime": [{"status": "pass"}], "redis:responseTime": [{"status": "pass"}]},
        }

    def test_format_with_details_for_the_token(self, client: Client) -> None:
        response = client.get(
            "/readyz",
            HTTP_ACCEPT=f"{self.ACCEPT}, application/json;q=0.5",
            HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        )
        checks = json.loads(response.content)["checks"]
        for key in ("db:responseTime", "redis:responseTime"):
            (entry,) = checks[key]
            assert entry["status"] == "pass"
            assert entry["observedUnit"] == "ms"
            assert isinstance(entry["observedValue"], float)

    def test_failure_is_fail_with_503(self, client: Client, redis_down: int) -> None:
        response = client.get("/healthz", HTTP_ACCEPT=self.ACCEPT, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "fail"
        assert body["checks"]["redis:responseTime"][0]["status"] == "fail"
        assert body["checks"]["redis:responseTime"][0]["output"] == "refused"
        assert body["checks"]["db:responseTime"][0]["status"] == "pass"

    def test_failure_without_details_says_only_fail(self, client: Client, redis_down: int) -> None:
        body = client.get("/healthz", HTTP_ACCEPT=self.ACCEPT).json()
        assert body["checks"]["redis:responseTime"] == [{"status": "fail"}]

    def test_plain_json_is_the_default(self, client: Client) -> None:
        assert client.get("/healthz", HTTP_ACCEPT="*/*").json() == HEALTHY
        assert client.get("/healthz", HTTP_ACCEPT=f"{self.ACCEPT};q=0").json() == HEALTHY


@pytest.mark.django_db(transaction=True)
def test_a_stuck_staff_lookup_denies_details_but_recovers(client: Client, settings) -> None:
    """The session table locked by someone else: details are denied within the deadline, and
    once the lock is gone the next probe shows them again (the lookup never stays stuck)."""
    settings.HEALTHCHECK_TIMEOUT = 1.0
    import psycopg
    from django.db import connection

    from harness.processes import timed, wait_until

    client.force_login(get_user_model().objects.create_user("ops", password="pw", is_staff=True))
    params = connection.get_connection_params()
    locker = psycopg.connect(**params, autocommit=False)
    try:
        locker.execute("LOCK TABLE django_session IN ACCESS EXCLUSIVE MODE")
        with timed() as elapsed:
            body = client.get("/healthz?verbose=1").json()
        assert elapsed[0] <= settings.HEALTHCHECK_TIMEOUT + 0.25  # measured in the process that enforces it
        assert "checks" not in body
    finally:
        locker.rollback()  # the lock is gone
        locker.close()
    wait_until(
        lambda: "checks" in client.get("/healthz?verbose=1").json(),
        15,
        "staff details to come back after the lock was released",
        interval=0.2,
    )
