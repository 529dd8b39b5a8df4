"""The admin login: failed attempts are logged (never the password), a client is locked out after
AXES_FAILURE_LIMIT of them, by the client address the forwarded-headers rule gives."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "right-password-Qz7Wx2"
WRONG = "wrong-password-Lk4Jh9"
LOGIN = "/admin/login/"


@pytest.fixture
def admin_user() -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def _attempt(client: Client, password: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = client.post(LOGIN, {"username": "root", "password": password, "next": "/admin/"}, headers=headers)
    return response.status_code


def _logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_a_wrong_password_is_logged_without_the_password(admin_user: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    with caplog.at_level(logging.INFO):
        assert _attempt(client, WRONG) == 200  # the form again, with its error
    (line,) = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "login_failed"]
    assert line["username"] == "root"
    assert line["level"] == "warning"
    assert line["ip"] == "127.0.0.1"
    for record in caplog.records:
        assert WRONG not in record.getMessage()
        assert WRONG not in repr(record.__dict__)


def test_the_limit_locks_the_client_out_even_with_the_right_password(
    admin_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert _attempt(client, WRONG) in (200, 429)
    with caplog.at_level(logging.INFO):
        assert _attempt(client, PASSWORD) == 429
    assert not _logged_in(client)
    events = [r.msg.get("event") for r in caplog.records if isinstance(r.msg, dict)]
    assert "login_locked_out" in events


def test_below_the_limit_the_right_password_works_and_resets_the_count(admin_user: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _attempt(client, WRONG)
    assert _attempt(client, PASSWORD) == 302
    assert _logged_in(client)
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _attempt(client, WRONG)
    assert _attempt(client, PASSWORD) == 302  # the earlier failures no longer count


def test_a_client_cannot_escape_the_lockout_by_claiming_other_addresses(admin_user: Any) -> None:
    """An untrusted peer's X-Forwarded-For is ignored: every attempt counts against its own address."""
    client = Client(REMOTE_ADDR="192.0.2.50")
    for number in range(settings.AXES_FAILURE_LIMIT):
        _attempt(client, WRONG, forwarded_for=f"203.0.113.{number}")
    assert _attempt(client, PASSWORD, forwarded_for="203.0.113.200") == 429


def test_other_clients_behind_the_proxy_are_not_locked_out(admin_user: Any) -> None:
    """Behind the trusted proxy (127.0.0.1 here), each forwarded client has its own count."""
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _attempt(client, WRONG, forwarded_for="198.51.100.1")
    assert _attempt(client, PASSWORD, forwarded_for="198.51.100.1") == 429
    assert _attempt(client, PASSWORD, forwarded_for="198.51.100.2") == 302


def test_probes_answer_while_a_client_is_locked_out(admin_user: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        _attempt(client, WRONG)
    assert client.get("/healthz").status_code == 200
    assert client.get("/livez").status_code == 200


@pytest.mark.slow
def test_with_the_database_down_the_login_fails_closed_and_the_probes_answer(collected_static: None) -> None:
    """Axes counts failures in the database: without one, a login is an error page, never a login."""
    import re
    import urllib.parse

    from harness.processes import free_port
    from harness.project import Server, http_get, project_env

    refused = f"postgres://postgres@127.0.0.1:{free_port()}/app"
    environment = project_env(DATABASE_URL=refused, DJANGO_SECURE_COOKIES="false", WEB_CONCURRENCY="1")
    with Server(environment) as server:
        page = server.get(LOGIN)
        assert page.status == 200
        cookie = page.headers["set-cookie"].split(";")[0]
        found = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        assert found is not None
        form = {"csrfmiddlewaretoken": found.group(1).decode(), "username": "root", "password": PASSWORD}
        request = urllib.request.Request(  # noqa: S310 - the test's own server
            server.url + LOGIN,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            status = urllib.request.urlopen(request, timeout=30).status  # noqa: S310
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == 500
        assert http_get(server.url + "/livez").status == 200
        assert http_get(server.url + "/healthz").json() == {"status": "error", "db": "error", "redis": "ok"}
