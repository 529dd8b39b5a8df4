"""Security headers on HTML pages, and the admin working under them in a real browser.

The browser test runs Debian's headless Chromium (harness.browser) against real gunicorn
with the production settings, logs in, walks the admin and the queue dashboard, and reads the
console: no Content-Security-Policy violation may appear.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client, override_settings

from harness.browser import Browser, missing
from harness.project import Server, project_env

PASSWORD = "browser-password-Mn3Bv8"


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.django_db
class TestHeaders:
    def test_html_pages_carry_both_policies(self, client: Client) -> None:
        page = client.get("/admin/login/")
        csp = page["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert "camera=()" in page["Permissions-Policy"]

    def test_other_responses_do_not(self, client: Client) -> None:
        probe = client.get("/healthz")
        assert "Content-Security-Policy" not in probe
        assert "Permissions-Policy" not in probe

    def test_django_debug_pages_keep_their_inline_styles(self) -> None:
        with override_settings(DEBUG=True, ROOT_URLCONF="tests.urls"):
            page = Client(raise_request_exception=False).get("/__test__/fail")
        assert page.status_code == 500
        assert "Content-Security-Policy" not in page

    def test_django_rq_inline_code_is_allowed_by_its_hashes(self) -> None:
        """The hashes in SECURE_CSP are those of the installed django-rq's templates."""
        templates = Path(django_rq.__file__).parent / "templates" / "django_rq"
        scripts, styles, attributes = set(), set(), set()
        for template in templates.glob("*.html"):
            text = template.read_text()
            scripts |= set(re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.+?)</script>", text, re.DOTALL))
            styles |= set(re.findall(r"<style[^>]*>(.*?)</style>", text, re.DOTALL))
            attributes |= set(re.findall(r'style="([^"]*)"', text))
        assert scripts, "django-rq's templates changed: check the policy by hand"
        assert {_hash(script) for script in scripts} <= set(settings.SECURE_CSP["script-src"])
        assert {_hash(style) for style in styles} <= set(settings.SECURE_CSP["style-src"])
        assert {_hash(style) for style in attributes} <= set(settings.SECURE_CSP["style-src-attr"])


def _database_url() -> str:
    database = settings.DATABASES["default"]
    secret = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return f"postgres://{database['USER']}{secret}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


@pytest.fixture
def admin_server(transactional_db: None, collected_static: None) -> Iterator[Server]:
    """gunicorn with the production settings, on the test database, with an admin to log in as."""
    # The production settings know no MD5 (the tests' speed knob): hash as production does.
    encoded = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    user = get_user_model().objects.create_superuser("browser", "browser@example.com")
    user.password = encoded
    user.save()
    environment = project_env(DATABASE_URL=_database_url(), DJANGO_SECURE_COOKIES="false", WEB_CONCURRENCY="1")
    with Server(environment) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Browser]:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    with Browser() as session:
        yield session


def _violations(browser: Browser) -> list[str]:
    return [m for m in browser.console() if "Content Security Policy" in m or "Refused to" in m]


@pytest.mark.slow
def test_the_admin_works_under_the_policy_in_a_real_browser(admin_server: Server, browser: Browser) -> None:
    browser.get(admin_server.url + "/admin/login/")
    browser.type("input[name=username]", "browser")
    browser.type("input[name=password]", PASSWORD)
    browser.click("input[type=submit]")
    assert "Site administration" in browser.source(), admin_server.output()[-2000:]
    pages = {
        "/admin/": "Site administration",
        "/admin/auth/user/": "Select user to change",
        "/admin/auth/user/add/": "Add user",
        "/admin/auth/group/add/": "Add group",  # the permission picker (SelectFilter2.js)
        "/admin/django_rq/": "Django RQ",
        "/admin/django_rq/queues/0/": "default",  # django-rq's inline script
        "/admin/django_rq/queues/0/empty/": "Are you sure",  # a <style> of its own
    }
    for path, text in pages.items():
        browser.get(admin_server.url + path)
        assert text in browser.source(), path
        assert _violations(browser) == [], path
    browser.get(admin_server.url + "/admin/auth/group/add/")
    assert browser.count(".selector-available"), "the admin's own scripts did not run (SelectFilter2.js)"

    # The console is really read, and the policy really enforced: injected inline code is refused.
    browser.execute(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        "document.body.appendChild(s);"
    )
    assert browser.execute("return window.injected === undefined")
    assert any("inline script" in message for message in _violations(browser))
