"""The queue dashboard: an explicit permission for every view, and a token API that never crashes."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import clear_url_caches, reverse

pytestmark = pytest.mark.django_db

API_TOKEN = "queue-api-token-0123456789-abcdefghijk"
JOB_ID = "0123456789abcdef0123456789abcdef"
# Views that show or change jobs: the dashboard, job lists (arguments), a job (traceback), actions.
READ_VIEWS: list[tuple[str, list[Any]]] = [
    ("django_rq:home", []),
    ("django_rq:jobs", [0]),
    ("django_rq:failed_jobs", [0]),
    ("django_rq:job_detail", [0, JOB_ID]),
    ("django_rq:workers", [0]),
]
ACTION_VIEWS: list[tuple[str, list[Any]]] = [
    ("django_rq:requeue_job", [0, JOB_ID]),
    ("django_rq:delete_job", [0, JOB_ID]),
    ("django_rq:clear", [0]),
    ("django_rq:requeue_all", [0]),
]


def _reload_urls() -> None:
    """The URL conf reads RQ_API_TOKEN when it is imported, as at start-up."""
    import apps.core.queue_dashboard
    import config.urls

    importlib.reload(apps.core.queue_dashboard)
    importlib.reload(config.urls)
    clear_url_caches()


@pytest.fixture
def api_token() -> Iterator[str]:
    with override_settings(RQ_API_TOKEN=API_TOKEN):
        _reload_urls()
        yield API_TOKEN
    _reload_urls()


def _staff(permission: bool = False) -> Any:
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="admin", content_type__app_label="django_rq"))
    return user


def test_anonymous_users_go_to_the_login(client: Client) -> None:
    for name, args in READ_VIEWS:
        response = client.get(reverse(name, args=args))
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(("name", "args"), READ_VIEWS)
def test_staff_without_the_permission_see_nothing(client: Client, name: str, args: list[object]) -> None:
    client.force_login(_staff())
    assert client.get(reverse(name, args=args)).status_code == 403


@pytest.mark.parametrize(("name", "args"), ACTION_VIEWS)
def test_staff_without_the_permission_change_nothing(client: Client, name: str, args: list[object]) -> None:
    client.force_login(_staff())
    assert client.post(reverse(name, args=args)).status_code == 403


def test_staff_without_the_permission_get_no_statistics(client: Client) -> None:
    client.force_login(_staff())
    assert client.get(reverse("django_rq:home_json")).status_code == 401


def test_the_permission_opens_the_dashboard(client: Client) -> None:
    client.force_login(_staff(permission=True))
    assert client.get(reverse("django_rq:home")).status_code == 200
    assert client.get(reverse("django_rq:jobs", args=[0])).status_code == 200
    statistics = client.get(reverse("django_rq:home_json"))
    assert statistics.status_code == 200
    assert "queues" in statistics.json()


def test_a_superuser_needs_nothing_more(client: Client) -> None:
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    assert client.get(reverse("django_rq:home")).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/admin/django_rq/stats.json/%C3%A9/",  # the reported 500: a non-ASCII token, none configured
        "/admin/django_rq/stats.json/anything/",
        "/admin/django_rq/dashboard/stats.json/%C3%A9/",  # django-rq's admin registration: not routed
    ],
)
def test_without_a_token_configured_no_token_url_exists(path: str) -> None:
    response = Client(raise_request_exception=False).get(path)
    assert response.status_code in (302, 404)


def test_a_bearer_header_without_a_token_configured_unlocks_nothing() -> None:
    client = Client(raise_request_exception=False)
    for header in ("Bearer \u00e9", "Bearer ", "Bearer x"):
        assert client.get("/admin/django_rq/stats.json", HTTP_AUTHORIZATION=header).status_code == 401


@pytest.mark.parametrize("token", ["%C3%A9", "%FF", "wrong", API_TOKEN[:-1], "x" * 200])
def test_a_configured_token_api_refuses_any_wrong_token_without_crashing(api_token: str, token: str) -> None:
    client = Client(raise_request_exception=False)
    assert client.get(f"/admin/django_rq/stats.json/{token}/").status_code in (401, 404)


@pytest.mark.parametrize("header", ["Bearer \u00e9", "Bearer \u00ff\u00fe", "Bearer wrong", "Basic x"])
def test_a_configured_token_api_refuses_any_wrong_bearer_without_crashing(api_token: str, header: str) -> None:
    client = Client(raise_request_exception=False)
    assert client.get("/admin/django_rq/stats.json", HTTP_AUTHORIZATION=header).status_code == 401


def test_the_configured_token_unlocks_the_statistics(api_token: str) -> None:
    client = Client()
    assert "queues" in client.get(f"/admin/django_rq/stats.json/{api_token}/").json()
    assert "queues" in client.get("/admin/django_rq/stats.json", HTTP_AUTHORIZATION=f"Bearer {api_token}").json()
