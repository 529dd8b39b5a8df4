"""Each fact is declared once: the variables, the probe paths and the layout rules hold everywhere.

A variable is declared in ``config/env.py`` only; ``.env.example`` and the docs must name exactly
the declared ones. The import rules of CONTRIBUTING.md are checked on the source itself.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from config.env import VARIABLES
from harness.docs import GENERATORS, regenerated
from harness.project import ROOT
from tests.support import pending_variables

DECLARED = {variable.name for variable in VARIABLES}
# A NAME=value line, set or shown commented out (`# NAME=...`, `#   NAME=...`).
ASSIGNMENT = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def test_env_example_names_exactly_the_declared_variables() -> None:
    named = set(ASSIGNMENT.findall((ROOT / ".env.example").read_text()))
    assert sorted(named - DECLARED) == [], "named in .env.example but not declared in config/env.py"
    assert sorted(DECLARED - named) == [], "declared in config/env.py but missing from .env.example"


def test_env_example_sets_only_what_development_needs() -> None:
    """Everything else is left to the defaults that DJANGO_DEBUG chooses (secure in production)."""
    text = (ROOT / ".env.example").read_text()
    assert set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE)) == {"DJANGO_DEBUG", "DATABASE_URL", "REDIS_URL"}


@pytest.mark.parametrize(("path", "part"), sorted(GENERATORS))
def test_generated_docs_are_up_to_date(path: str, part: str) -> None:
    assert (ROOT / path).read_text() == regenerated(path), f"{path} is stale: run `make docs`"


def test_docs_name_only_declared_variables() -> None:
    """A variable-like name in the docs (`DJANGO_*`, `*_URL`, ...) is a declared one, or a known other."""
    others = {
        "DJANGO_SETTINGS_MODULE",  # Django's own
        "DJANGO_SUPERUSER_PASSWORD",
        "DJANGO_SUPERUSER_USERNAME",
        "DJANGO_SUPERUSER_EMAIL",
        "DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID",  # a setting, not a variable
    }
    families = "DJANGO|HEALTHCHECK|LOG|DATABASE|REDIS|METRICS|SENTRY|PROBE|DRAIN|WEB|FORWARDED"
    pattern = re.compile(rf"\b((?:{families})_[A-Z0-9_]+)\b")
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named = set(pattern.findall(page.read_text())) - others
        unknown = {name for name in named if name not in DECLARED and not name.startswith("TEST_SUBPROCESS_")}
        unknown -= pending_variables()
        assert unknown == set(), f"{page.name} names undeclared variables"


# --- layout: who may import whom -------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _violations(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    found = {}
    for path in _python_files(folder):
        bad = sorted(
            module for module in _imports(path) if module.startswith(forbidden) and not module.startswith(allowed)
        )
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_apps_common_is_neutral() -> None:
    assert _violations("apps/common", ("config", "apps."), allowed=("apps.common",)) == {}


def test_apps_never_import_config() -> None:
    assert _violations("apps", ("config",)) == {}


def test_core_plumbing_does_not_lean_on_the_health_app() -> None:
    assert _violations("apps/core", ("apps.health",)) == {}


def test_config_leans_on_no_app() -> None:
    assert _violations("config", ("apps.",), allowed=("apps.common",)) == {}
    gunicorn_config = {m for m in _imports(ROOT / "gunicorn.conf.py") if m.startswith("apps.")}
    assert {m for m in gunicorn_config if not m.startswith("apps.common")} == set()


def test_the_bench_does_not_import_the_tests() -> None:
    assert _violations("bench", ("tests",)) == {}
    assert _violations("harness", ("tests", "bench")) == {}


def test_probe_paths_are_spelled_once() -> None:
    """Only apps/common/probe_paths.py spells them in code; everything else imports them."""
    spelled = re.compile(r"""["']/(livez|readyz|healthz)/?["']""")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("apps", "config", "bench")
        for path in _python_files(folder)
        if path.name != "probe_paths.py" and spelled.search(path.read_text())
    ]
    assert offenders == []


def test_no_module_in_apps_is_larger_than_about_250_lines() -> None:
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in _python_files("apps")}
    assert {name: size for name, size in sizes.items() if size > 260} == {}
