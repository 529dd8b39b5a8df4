"""Security headers on HTML pages, and the admin working under them in a real browser.

The browser test runs Debian's headless Chromium (through chromedriver) against real gunicorn
with the production settings, logs in, walks the admin and the queue dashboard, and reads the
console: no Content-Security-Policy violation may appear.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client, override_settings

from harness.project import Server, project_env

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
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
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _violations(driver: Any) -> list[str]:
    messages = [entry["message"] for entry in driver.get_log("browser")]
    return [m for m in messages if "Content Security Policy" in m or "Refused to" in m]


@pytest.mark.slow
def test_the_admin_works_under_the_policy_in_a_real_browser(admin_server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(admin_server.url + "/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("browser")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert "Site administration" in browser.page_source, admin_server.output()[-2000:]
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
        assert text in browser.page_source, path
        # The admin's scripts ran (the theme toggle and the permission picker are built by them).
        assert _violations(browser) == [], path
    browser.get(admin_server.url + "/admin/auth/group/add/")
    assert browser.find_elements(By.CSS_SELECTOR, ".selector-available"), "SelectFilter2.js did not run"

    # The console is really read, and the policy really enforced: injected inline code is refused.
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        "document.body.appendChild(s);"
    )
    assert browser.execute_script("return window.injected === undefined")
    assert any("inline script" in message for message in _violations(browser))
