"""The first day's commands that cannot run unattended in a docs block: run here, exactly as the docs show.

Each command below is copied verbatim from the page that shows it; ``tests/test_docs.py`` fails
if the two ever differ. They run on the newcomer's machine of ``harness.sandbox``.
"""

from __future__ import annotations

import re

import pytest

from harness.processes import answer_prompts, wait_until
from harness.sandbox import Sandbox

pytestmark = pytest.mark.slow

# README.md, "First steps".
SUPERUSER = "make superuser"
# docs/jobs.md, "Run and scale workers".
WORKER = "make worker"
# docs/deploy.md, "The production server on this machine".
SERVE = """DJANGO_SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(64))')" DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1 DJANGO_SECURE_SSL_REDIRECT=false DJANGO_SECURE_COOKIES=false make serve"""  # noqa: E501


def test_make_superuser_asks_and_creates_an_admin(sandbox: Sandbox) -> None:
    password = "long-enough-pass-phrase-42"
    dialogue = [("Username", "ops"), ("Email address", "ops@example.com"), ("Password:", password)]
    dialogue.append(("Password (again):", password))
    shown, status = answer_prompts(
        [*sandbox.wrapper, "bash", "-c", SUPERUSER], dialogue, cwd=sandbox.project, env=sandbox.env
    )
    assert status == 0, shown
    assert "Superuser created successfully." in shown
    check = "from django.contrib.auth.models import User; print(User.objects.get(username='ops').is_superuser)"
    assert sandbox.run(f'.venv/bin/python manage.py shell -c "{check}"', check=True).stdout.strip().endswith("True")


def test_make_worker_adds_a_second_worker(sandbox: Sandbox, tmp_path) -> None:
    def workers() -> int:
        answer = sandbox.run(".venv/bin/python manage.py check_services --worker --json --timeout 20")
        found = re.search(r'"workers": (\d+)', answer.stdout)
        return int(found.group(1)) if found else 0

    worker = sandbox.spawn(WORKER, tmp_path / "worker.log")
    try:
        wait_until(lambda: workers() == 2, 60, "make worker to join make run's worker", interval=0.5)
    finally:
        sandbox.stop(worker)  # Ctrl-C
    assert "warm shut down requested" in (tmp_path / "worker.log").read_text()
    assert workers() == 1  # it said goodbye: no registration left behind


def test_make_serve_is_the_production_server(sandbox: Sandbox, tmp_path) -> None:
    sandbox.stop_server()  # both serve on PORT
    server = sandbox.spawn(SERVE, tmp_path / "serve.log")
    try:
        wait_until(lambda: sandbox.answers("http://127.0.0.1:8000/livez"), 120, "make serve to answer /livez")
        login = sandbox.run("curl -s 127.0.0.1:8000/admin/login/", check=True).stdout
        (stylesheet,) = re.findall(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login)  # hashed: collected
        assert sandbox.answers(f"http://127.0.0.1:8000{stylesheet}")
        root = sandbox.run("curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:8000/").stdout
        assert root == "404"  # DEBUG is off: no start page
    finally:
        sandbox.stop(server)
        sandbox.start_server()
    log = (tmp_path / "serve.log").read_text()
    assert '"event": "web_ready"' in log  # gunicorn with JSON logs, as in production
