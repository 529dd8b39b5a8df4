"""Error pages and error reports show no secret, with DEBUG off and with DEBUG on.

Django's debug page masks settings whose names look secret; the secrets that hide inside
harmless names (``REDIS_URL``, ``CACHES[...]["LOCATION"]``, ``RQ_QUEUES[...]["URL"]``, the
validated configuration object) must be masked too: a development stack is shown on screens.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.views.debug import get_default_exception_reporter_filter

from config import env
from harness.project import Server, project_env

SECRET_KEY = "error-page-secret-key-Vb4Nm7Qx2Lp9Rt6Yw3Zs8Kd1Hf5Jg0Ua-long-enough"
DB_PASSWORD = "db-password-Pq8Wz3"
REDIS_PASSWORD = "redis-password-Tk5Rn2"
TOKEN = "health-token-Xc7Vb2Nm9Lk4Jh6Gf3Ds8Aq1Wz5Ey0Ru"
SESSION = "sessionvalue9f8e7d6c5b4a3210zyxwvu"
SECRETS = (SECRET_KEY, DB_PASSWORD, REDIS_PASSWORD, TOKEN, SESSION)

REDIS_URL = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_the_validated_configuration_masks_its_secrets() -> None:
    config = env.load(
        {
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "example.com",
            "DATABASE_URL": f"postgres://app:{DB_PASSWORD}@db.internal:5432/app",
            "REDIS_URL": REDIS_URL,
            "HEALTHCHECK_TOKEN": TOKEN,
        }
    )
    shown = repr(config)
    _assert_no_secret(shown)
    # What is not secret stays useful: hosts, names, plain values.
    assert "db.internal" in shown
    assert "redis://:***@127.0.0.1:6379/0" in shown
    assert "allowed_hosts=['example.com']" in shown


def test_no_setting_holds_the_configuration_object() -> None:
    """Django's debug page lists every upper-case setting; the Config object is none of them."""
    holders = [name for name in dir(settings) if name.isupper() and isinstance(getattr(settings, name), env.Config)]
    assert holders == []


def test_urls_with_passwords_are_masked_in_the_safe_settings() -> None:
    caches = {"default": {**settings.CACHES["default"], "LOCATION": REDIS_URL}}
    queues = {"default": {"URL": REDIS_URL + "?socket_timeout=2", "DEFAULT_TIMEOUT": 300}}
    with override_settings(REDIS_URL=REDIS_URL, CACHES=caches, RQ_QUEUES=queues, HEALTHCHECK_TOKEN=TOKEN):
        safe = get_default_exception_reporter_filter().get_safe_settings()
    _assert_no_secret(repr(safe))
    assert safe["REDIS_URL"] == "redis://:***@127.0.0.1:6379/0"
    assert safe["CACHES"]["default"]["LOCATION"] == "redis://:***@127.0.0.1:6379/0"
    assert safe["RQ_QUEUES"]["default"]["URL"].startswith("redis://:***@127.0.0.1:6379/0?")


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.urls", DEBUG=True)
def test_the_debug_page_shows_no_secret() -> None:
    caches = {"default": {**settings.CACHES["default"], "LOCATION": REDIS_URL}}
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = SESSION
    with override_settings(REDIS_URL=REDIS_URL, CACHES=caches, HEALTHCHECK_TOKEN=TOKEN, SECRET_KEY=SECRET_KEY):
        page = client.get(
            "/__test__/fail",
            HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
            HTTP_X_FORWARDED_FOR=f"http://u:{DB_PASSWORD}@proxy",
        )
    assert page.status_code == 500
    assert b"deliberate failure" in page.content  # it is the debug page
    _assert_no_secret(page.content.decode())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["runserver", "gunicorn"])
def test_a_real_debug_500_page_shows_no_secret(kind: str) -> None:
    """With DEBUG on, the 500 page of a real server (runserver copies the process environment,
    DATABASE_URL and REDIS_URL with their passwords, into every request's META)."""
    environment = project_env(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DJANGO_DEBUG="true",
        DJANGO_SECRET_KEY=SECRET_KEY,
        # PostgreSQL and Redis are never asked for: the failing view touches neither.
        DATABASE_URL=project_env()["DATABASE_URL"].replace("postgres@", f"postgres:{DB_PASSWORD}@"),
        REDIS_URL=REDIS_URL,
        HEALTHCHECK_TOKEN=TOKEN,
        LOG_FORMAT="json",
    )
    with Server(environment, kind=kind) as server:
        # No session cookie here: the subprocesses' database has no session table.
        page = server.get("/__test__/fail", {"Authorization": f"Bearer {TOKEN}"})
        assert page.status == 500
        text = page.body.decode()
        assert "deliberate failure" in text  # the debug page, settings and all
        assert "REDIS_URL" in text
        _assert_no_secret(text)
        _assert_no_secret(server.output())
