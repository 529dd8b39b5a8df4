"""Deploy checks (``manage.py check --deploy``) for the hardening rules the environment enforces.

The environment refuses these values at start-up (``config.env``); settings can still be changed
in code, so the deploy check applies the same rules (``apps.common.security_rules``) to the
settings themselves and tells the whole truth. Messages name the rule, never the value.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from apps.common.security_rules import admin_url_problem, allowed_hosts_problem, token_problem

# Settings that hold a Bearer token, when they are set (METRICS_TOKEN arrives with /metrics; RQ_API_TOKEN
# unlocks the queue statistics, apps.core.queue_dashboard).
TOKEN_SETTINGS = ("HEALTHCHECK_TOKEN", "METRICS_TOKEN", "RQ_API_TOKEN")


@register(Tags.security, deploy=True)
def check_hardening(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if not settings.DEBUG and (problem := allowed_hosts_problem(settings.ALLOWED_HOSTS)):
        problems.append(Error(f"ALLOWED_HOSTS {problem}.", id="core.E001"))
    for name in TOKEN_SETTINGS:
        token = getattr(settings, name, None)
        if token and (problem := token_problem(token)):
            problems.append(Error(f"{name} {problem}.", id="core.E002"))
    if problem := admin_url_problem(settings.ADMIN_URL):
        problems.append(Error(f"ADMIN_URL {problem}.", id="core.E003"))
    return problems
