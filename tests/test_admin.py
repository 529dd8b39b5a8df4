"""The Django admin: protected, working, styled, also under runserver."""

from __future__ import annotations

import importlib
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from harness.project import Server, project_env

pytestmark = pytest.mark.django_db


def _stylesheet(page: bytes) -> str:
    """The admin's base.css link on a rendered page."""
    found = re.search(rb'href="(/static/admin/css/base[^"]*\.css)"', page)
    assert found is not None, "the page links no admin stylesheet"
    return found.group(1).decode()


def test_anonymous_admin_redirects_to_login(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"


def test_superuser_gets_the_admin_index(client: Client) -> None:
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    response = client.get("/admin/")
    assert response.status_code == 200
    assert b"Site administration" in response.content


def test_the_root_is_a_start_page_in_development_only() -> None:
    """With DEBUG on, `/` says where things are; with DEBUG off it stays a plain 404 on purpose."""
    from django.test import override_settings
    from django.urls import clear_url_caches

    import apps.core.urls
    import config.urls

    def reload_urls() -> None:  # the URL conf reads DEBUG when it is imported, as at start-up
        importlib.reload(apps.core.urls)
        importlib.reload(config.urls)
        clear_url_caches()

    try:
        with override_settings(DEBUG=True, ROOT_URLCONF="config.urls"):
            reload_urls()
            page = Client().get("/")
            assert page.status_code == 200
            for link in (b'href="/admin/"', b'href="/admin/django_rq/"', b'href="/livez"', b'href="/healthz"'):
                assert link in page.content
        with override_settings(ROOT_URLCONF="config.urls"):
            reload_urls()
            assert Client().get("/").status_code == 404
    finally:
        reload_urls()


def test_queue_dashboard_is_staff_only(client: Client) -> None:
    assert client.get("/admin/django_rq/").status_code == 302
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    assert client.get("/admin/django_rq/").status_code == 200


def test_login_page_renders_with_its_css(client: Client) -> None:
    page = client.get("/admin/login/")
    assert page.status_code == 200
    css = client.get(_stylesheet(page.content))
    assert css.status_code == 200
    assert b"body" in b"".join(css.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_admin_url_can_move(settings) -> None:
    from harness.project import run_manage

    result = run_manage(
        "shell",
        "-c",
        "from django.urls import reverse; print(reverse('admin:index'))",
        env=project_env(DJANGO_ADMIN_URL="ops/console/"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "/ops/console/"


@pytest.mark.slow
def test_runserver_serves_the_admin_with_css() -> None:
    """Development: `make run` uses runserver with DEBUG on; the admin must look right."""
    env = project_env(DJANGO_DEBUG="true", DJANGO_SECRET_KEY=None, LOG_FORMAT="console")
    with Server(env, kind="runserver") as server:
        page = server.get("/admin/login/")
        assert page.status == 200
        css = server.get(_stylesheet(page.body))
        assert css.status == 200
        assert css.headers["content-type"].startswith("text/css")
