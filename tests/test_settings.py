"""The environment contract: every rule, alone and together, through a real manage.py."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from config import env
from harness.project import BIN, ROOT, SECRET_KEY, project_copy, project_env, run_manage
from tests.support import preserved_environ

VALID = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": SECRET_KEY,
    "DJANGO_ALLOWED_HOSTS": "example.com",
    "DATABASE_URL": "postgres://app:pw@db.internal:5432/app",
    "REDIS_URL": "redis://:pw@cache.internal:6379/0",
}

# (variable, bad value, the rule the message must state)
BROKEN_RULES = [
    ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG: must be one of true/false/1/0/yes/no/on/off"),
    ("DJANGO_SECRET_KEY", None, "DJANGO_SECRET_KEY: missing"),
    ("DJANGO_SECRET_KEY", "short-secret-value", "DJANGO_SECRET_KEY: must be at least 50 characters"),
    ("DJANGO_SECRET_KEY", "django-insecure-" + "k" * 60, "DJANGO_SECRET_KEY: must not start with django-insecure"),
    ("DJANGO_SECRET_KEY", "abcd" * 15, "DJANGO_SECRET_KEY: must have at least 5 distinct characters"),
    ("DJANGO_ALLOWED_HOSTS", None, "DJANGO_ALLOWED_HOSTS: missing"),
    ("DJANGO_ALLOWED_HOSTS", " , ", "DJANGO_ALLOWED_HOSTS: must be a comma-separated list"),
    ("DJANGO_ALLOWED_HOSTS", "*", "DJANGO_ALLOWED_HOSTS: must name the hosts, not *, when DJANGO_DEBUG is false"),
    ("DJANGO_ALLOWED_HOSTS", "example.com,*", "DJANGO_ALLOWED_HOSTS: must name the hosts, not *"),
    ("DATABASE_URL", None, "DATABASE_URL: missing"),
    ("DATABASE_URL", "mysql://root:hunter2@db/app", "DATABASE_URL: must be a postgres://"),
    ("DATABASE_URL", "postgres://u:hunter2@db:5432/", "DATABASE_URL: must name a database"),
    ("DATABASE_URL", "sqlite://", "DATABASE_URL: must name a database file"),
    ("DATABASE_URL", "sqlite://:memory:", "DATABASE_URL: must name a database file"),
    ("REDIS_URL", None, "REDIS_URL: missing"),
    ("REDIS_URL", "memcached://hunter2@cache:11211", "REDIS_URL: must be a redis://"),
    ("REDIS_URL", "redis://cache:notaport/0", "REDIS_URL: not a valid URL"),
    ("REDIS_URL", "redis://cache:6379/cache", "REDIS_URL: the database after the host must be a number"),
    ("PORT", "eighty", "PORT: must be an integer 1-65535"),
    ("PORT", "70000", "PORT: must be an integer 1-65535"),
    ("PORT", "0", "PORT: must be an integer 1-65535"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL: must be one of DEBUG/INFO/WARNING/ERROR/CRITICAL"),
    ("LOG_FORMAT", "xml", "LOG_FORMAT: must be one of console/json"),
    ("HEALTHCHECK_TIMEOUT", "0", "HEALTHCHECK_TIMEOUT: must be a number of seconds > 0 and <= 30"),
    ("HEALTHCHECK_TIMEOUT", "31", "HEALTHCHECK_TIMEOUT: must be a number of seconds > 0 and <= 30"),
    ("HEALTHCHECK_TIMEOUT", "nan", "HEALTHCHECK_TIMEOUT: must be a number of seconds > 0 and <= 30"),
    ("HEALTHCHECK_CACHE_SECONDS", "-1", "HEALTHCHECK_CACHE_SECONDS: must be a number of seconds >= 0"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY: must be an integer >= 1"),
    ("HEALTHCHECK_TOKEN", "short-health-token", "HEALTHCHECK_TOKEN: must be at least 32 characters"),
    ("HEALTHCHECK_TOKEN", "t" * 31, "HEALTHCHECK_TOKEN: must be at least 32 characters"),
    ("HEALTHCHECK_TOKEN", "spaced out " * 4, "HEALTHCHECK_TOKEN: must be at least 32 characters of printable ASCII"),
    ("HEALTHCHECK_TOKEN", "t\u00f6ken-" * 6, "HEALTHCHECK_TOKEN: must be at least 32 characters of printable ASCII"),
    ("FORWARDED_ALLOW_IPS", "proxy.internal", "FORWARDED_ALLOW_IPS: must be IP addresses or networks"),
    ("FORWARDED_ALLOW_IPS", "10.0.0.1/8", "FORWARDED_ALLOW_IPS: must be IP addresses or networks"),
    ("PROBE_PORT", "0", "PROBE_PORT: must be an integer 1-65535"),
    ("PROBE_PORT", "9100s", "PROBE_PORT: must be an integer 1-65535"),
    ("PROBE_PORT", "8000", "PROBE_PORT: must differ from PORT"),
    ("DRAIN_SECONDS", "-1", "DRAIN_SECONDS: must be a number of seconds >= 0"),
    ("DRAIN_SECONDS", "5s", "DRAIN_SECONDS: must be a number of seconds >= 0"),
    ("DJANGO_SECURE_SSL_REDIRECT", "ture", "DJANGO_SECURE_SSL_REDIRECT: must be one of true/false"),
    ("DJANGO_SECURE_HSTS_SECONDS", "-5", "DJANGO_SECURE_HSTS_SECONDS: must be an integer >= 0"),
    ("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", "nope", "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS: must be one of"),
    ("DJANGO_SECURE_HSTS_PRELOAD", "2", "DJANGO_SECURE_HSTS_PRELOAD: must be one of"),
    ("DJANGO_SECURE_COOKIES", "yes please", "DJANGO_SECURE_COOKIES: must be one of"),
    ("DJANGO_ADMIN_URL", "ad min/<script>", "DJANGO_ADMIN_URL: must be a URL path"),
    ("DJANGO_ADMIN_URL", "ops/../admin", "DJANGO_ADMIN_URL: must not contain . or .. segments"),
    ("DJANGO_ADMIN_URL", "./admin/", "DJANGO_ADMIN_URL: must not contain . or .. segments"),
    ("DJANGO_ADMIN_URL", "healthz/", "DJANGO_ADMIN_URL: must not start with a probe path"),
    ("DJANGO_ADMIN_URL", "livez/admin/", "DJANGO_ADMIN_URL: must not start with a probe path"),
    ("DATABASE_POOLER", "pgbouncr", "DATABASE_POOLER: must be one of none/pgbouncer"),
    ("DJANGO_ADMIN_URL", "metrics/", "DJANGO_ADMIN_URL: must not start with a probe path"),
    ("METRICS_TOKEN", "short-metrics-token", "METRICS_TOKEN: must be at least 32 characters"),
    (
        "METRICS_TOKEN",
        "metrics token with spaces in it!!",
        "METRICS_TOKEN: must be at least 32 characters of printable",
    ),
    ("SENTRY_DSN", "ftp://publickey@sentry.example.com/42", "SENTRY_DSN: must be a Sentry DSN"),
    ("SENTRY_DSN", "https://sentry.example.com/42", "SENTRY_DSN: must be a Sentry DSN"),
    ("SENTRY_DSN", "https://publickey@sentry.example.com/project", "SENTRY_DSN: must be a Sentry DSN"),
    ("SENTRY_DSN", "https://publickey@sentry.example.com:99999/42", "SENTRY_DSN: must be a Sentry DSN"),
    ("SENTRY_DSN", "https://publickey@/42", "SENTRY_DSN: must be a Sentry DSN"),
    ("SENTRY_DSN", "publickey-at-sentry.example.com", "SENTRY_DSN: must be a Sentry DSN"),
]


def _environment(**changes: str | None) -> dict[str, str]:
    values: dict[str, str] = dict(VALID)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def _without_examples(text: str) -> str:
    """A rule's text minus its parenthesised example, e.g. "(sqlite:////absolute/path.sqlite3)"."""
    return re.sub(r"\([^)]*\)", "", text)


def _assert_clean_failure(stderr: str, bad_values: list[str]) -> None:
    assert "Traceback" not in stderr
    for value in bad_values:
        assert value not in _without_examples(stderr), "a variable's value leaked into the error output"


class TestLoad:
    """``config.env.load`` on its own: fast, one rule at a time."""

    def test_valid_production_environment(self) -> None:
        config = env.load(VALID)
        assert config.debug is False
        assert config.allowed_hosts == ["example.com"]
        assert config.database["NAME"] == "app"
        assert config.port == 8000
        assert config.log_format == "json"
        assert config.healthcheck_timeout == 1.0
        assert config.healthcheck_cache_seconds == 0
        assert config.healthcheck_token is None
        assert config.web_concurrency == 2
        # Production defaults are the secure ones.
        assert config.secure_ssl_redirect is True
        assert config.secure_hsts_seconds == 60
        assert config.secure_hsts_include_subdomains is True
        assert config.secure_hsts_preload is True
        assert config.secure_cookies is True
        assert config.admin_url == "admin/"

    @pytest.mark.parametrize(("name", "value", "message"), BROKEN_RULES)
    def test_each_rule(self, name: str, value: str | None, message: str) -> None:
        with pytest.raises(env.ConfigurationError) as caught:
            env.load(_environment(**{name: value}))
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].startswith(message)
        # Short values ("0", "31") appear in the rule's own text.
        if value and len(value.strip()) > 3:
            assert value not in _without_examples(caught.value.problems[0])

    @pytest.mark.parametrize("spelling", ["true", "TRUE", "1", "yes", "On"])
    def test_debug_spellings(self, spelling: str) -> None:
        config = env.load(
            {"DJANGO_DEBUG": spelling, "DATABASE_URL": "sqlite:////tmp/x.sqlite3", "REDIS_URL": "redis://r"}
        )
        assert config.debug is True
        # Development defaults: readable logs, plain HTTP, a development-only key.
        assert config.log_format == "console"
        assert config.secure_ssl_redirect is False
        assert config.secret_key.startswith("django-insecure")

    def test_empty_value_counts_as_unset(self) -> None:
        config = env.load({**VALID, "PORT": "", "LOG_LEVEL": "  "})
        assert config.port == 8000
        assert config.log_level == "INFO"

    def test_dollar_value_is_not_treated_as_a_reference(self) -> None:
        # django-environ would resolve "$NAME" as another variable and name it in its error.
        config = env.load({**VALID, "DJANGO_SECRET_KEY": "$" + "wxyz" * 15})
        assert config.secret_key == "$" + "wxyz" * 15

    @pytest.mark.parametrize(
        ("url", "name"),
        [
            ("sqlite:///db.sqlite3", env.BASE_DIR / "db.sqlite3"),
            ("sqlite:///data/app.sqlite3", env.BASE_DIR / "data" / "app.sqlite3"),
            ("sqlite:////tmp/absolute.sqlite3", "/tmp/absolute.sqlite3"),
        ],
    )
    def test_a_relative_sqlite_path_is_under_the_project_root(self, url: str, name: object) -> None:
        assert env.load({**VALID, "DATABASE_URL": url}).database["NAME"] == str(name)

    def test_development_may_answer_any_host(self) -> None:
        config = env.load(
            {"DJANGO_DEBUG": "true", "DATABASE_URL": "sqlite:////tmp/x.sqlite3", "REDIS_URL": "redis://r"}
        )
        assert env.load({**dict(VALID), "DJANGO_DEBUG": "true", "DJANGO_ALLOWED_HOSTS": "*"}).allowed_hosts == ["*"]
        assert config.allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]

    def test_tokens_and_networks_that_pass(self) -> None:
        config = env.load(
            {**VALID, "HEALTHCHECK_TOKEN": "T" * 32, "FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.7,fd00::/8"}
        )
        assert config.healthcheck_token == "T" * 32
        assert config.forwarded_allow_ips == ["10.0.0.0/8", "192.0.2.7", "fd00::/8"]
        assert env.load({**VALID, "FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == ["*"]

    def test_metrics_and_error_reporting_are_off_unless_set(self) -> None:
        config = env.load(VALID)
        assert (config.metrics_token, config.sentry_dsn, config.sentry_release) == (None, None, None)
        assert config.sentry_environment == "production"
        development = {"DJANGO_DEBUG": "true", "DATABASE_URL": "sqlite:////tmp/x.sqlite3", "REDIS_URL": "redis://r"}
        assert env.load(development).sentry_environment == "development"

    def test_metrics_and_error_reporting_values_that_pass(self) -> None:
        dsn = "https://0123abcd@o12.ingest.sentry.example.com/4506"
        config = env.load(
            {**VALID, "METRICS_TOKEN": "M" * 32, "SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "staging"}
            | {"SENTRY_RELEASE": "2026.12.1"}
        )
        assert (config.metrics_token, config.sentry_dsn) == ("M" * 32, dsn)
        assert (config.sentry_environment, config.sentry_release) == ("staging", "2026.12.1")
        assert env.load({**VALID, "SENTRY_DSN": "http://key@127.0.0.1:9000/1"}).sentry_dsn is not None
        # Both are secrets: a repr (a debug page, a traceback) never shows them.
        assert "M" * 32 not in repr(config)
        assert dsn not in repr(config)

    def test_admin_url_is_normalised(self) -> None:
        assert env.load({**VALID, "DJANGO_ADMIN_URL": "/ops/admin"}).admin_url == "ops/admin/"

    def test_every_problem_at_once(self) -> None:
        with pytest.raises(env.ConfigurationError) as caught:
            env.load({"DJANGO_DEBUG": "nah", "PORT": "x", "LOG_FORMAT": "yaml"})
        names = [problem.split(":")[0] for problem in caught.value.problems]
        assert names == [
            "DJANGO_DEBUG",
            "DJANGO_SECRET_KEY",
            "DJANGO_ALLOWED_HOSTS",
            "DATABASE_URL",
            "REDIS_URL",
            "PORT",
            "LOG_FORMAT",
        ]


class TestPooler:
    """``DATABASE_POOLER=pgbouncer`` refuses what PgBouncer's transaction mode cannot carry."""

    POOLED = "postgres://app:hunter2@pgbouncer.internal:6432/app"

    @pytest.mark.parametrize(
        ("query", "named"),
        [
            ("server_side_binding=true", "server_side_binding"),
            ("server_side_binding=1", "server_side_binding"),
            ("prepare_threshold=5", "prepare_threshold"),
            ("prepare_threshold=0", "prepare_threshold"),
            ("assume_role=reporting", "assume_role"),
            ("server_side_binding=on&prepare_threshold=1", "server_side_binding, prepare_threshold"),
        ],
    )
    def test_session_options_are_refused_in_one_line(self, query: str, named: str) -> None:
        with pytest.raises(env.ConfigurationError) as caught:
            env.load({**VALID, "DATABASE_POOLER": "pgbouncer", "DATABASE_URL": f"{self.POOLED}?{query}"})
        assert caught.value.problems == [
            f"DATABASE_URL: {named} cannot be used with DATABASE_POOLER=pgbouncer "
            "(transaction pooling: no prepared statements, server-side binding or session state)"
        ]
        assert "hunter2" not in caught.value.problems[0]

    @pytest.mark.parametrize("query", ["server_side_binding=true", "prepare_threshold=5", "assume_role=r"])
    def test_without_the_pooler_the_options_are_django_s_business(self, query: str) -> None:
        assert env.load({**VALID, "DATABASE_URL": f"{self.POOLED}?{query}"}).database_pooler == "none"

    def test_options_that_keep_no_session_state_pass(self) -> None:
        url = f"{self.POOLED}?server_side_binding=false&sslmode=require"
        config = env.load({**VALID, "DATABASE_POOLER": "PgBouncer", "DATABASE_URL": url})
        assert config.database_pooler == "pgbouncer"
        assert config.database["OPTIONS"] == {"server_side_binding": "false", "sslmode": "require"}

    def test_pgbouncer_needs_postgresql(self) -> None:
        with pytest.raises(env.ConfigurationError) as caught:
            env.load({**VALID, "DATABASE_POOLER": "pgbouncer", "DATABASE_URL": "sqlite:////tmp/app.sqlite3"})
        assert caught.value.problems == ["DATABASE_URL: must be a postgres:// URL when DATABASE_POOLER is pgbouncer"]

    def test_default_is_no_pooler(self) -> None:
        assert env.load(VALID).database_pooler == "none"


# Numbers are plain ASCII digits (seconds: one optional "." with digits after it). Each of these
# is something a lenient parser reads as *some* number: django-environ keeps "the digits in it"
# ("5s" -> 5, "1e3" -> 13, "1,000" -> 1), int() and float() take "1_000", "+5", " inf" and the
# digits of other scripts.
NOT_PLAIN_NUMBERS = [
    pytest.param("5s", id="unit"),
    pytest.param("5 seconds", id="unit-word"),
    pytest.param("500ms", id="milli-unit"),
    pytest.param("1e3", id="exponent"),
    pytest.param("1E1", id="exponent-upper"),
    pytest.param("1,000", id="thousands-comma"),
    pytest.param("1_000", id="underscore-separator"),
    pytest.param("1 000", id="space-separator"),
    pytest.param("1'000", id="apostrophe-separator"),
    pytest.param("abc2", id="stray-letters-before"),
    pytest.param("2x", id="stray-letter-after"),
    pytest.param("2.5.1", id="two-dots"),
    pytest.param("1,5", id="decimal-comma"),
    pytest.param("+5", id="plus-sign"),
    pytest.param("0x10", id="hex"),
    pytest.param("inf", id="infinity"),
    pytest.param("nan", id="nan"),
    pytest.param("\u0663", id="arabic-indic-digit"),
    pytest.param("\uff15", id="fullwidth-digit"),
    pytest.param("\u00b2", id="superscript-digit"),
    pytest.param("\u0968", id="devanagari-digit"),
    pytest.param("1.", id="dot-without-digits"),
    pytest.param(".5", id="no-leading-digit"),
]
NUMBER_RULES = {
    "PORT": "PORT: must be an integer 1-65535",
    "WEB_CONCURRENCY": "WEB_CONCURRENCY: must be an integer >= 1",
    "DJANGO_SECURE_HSTS_SECONDS": "DJANGO_SECURE_HSTS_SECONDS: must be an integer >= 0",
    "HEALTHCHECK_TIMEOUT": "HEALTHCHECK_TIMEOUT: must be a number of seconds > 0 and <= 30",
    "HEALTHCHECK_CACHE_SECONDS": "HEALTHCHECK_CACHE_SECONDS: must be a number of seconds >= 0",
}


class TestStrictNumbers:
    @pytest.mark.parametrize("name", NUMBER_RULES)
    @pytest.mark.parametrize("value", NOT_PLAIN_NUMBERS)
    def test_refused_with_the_rule(self, name: str, value: str) -> None:
        with pytest.raises(env.ConfigurationError) as caught:
            env.load(_environment(**{name: value}))
        assert caught.value.problems == [caught.value.problems[0]]
        assert caught.value.problems[0].startswith(NUMBER_RULES[name])

    @pytest.mark.parametrize("name", ["PORT", "WEB_CONCURRENCY", "DJANGO_SECURE_HSTS_SECONDS"])
    @pytest.mark.parametrize("value", ["1.5", "80.0", "9" * 40])
    def test_integers_take_no_decimal_point_and_no_absurd_length(self, name: str, value: str) -> None:
        with pytest.raises(env.ConfigurationError) as caught:
            env.load(_environment(**{name: value}))
        assert caught.value.problems[0].startswith(NUMBER_RULES[name])

    @pytest.mark.parametrize(
        ("name", "value", "field", "expected"),
        [
            ("PORT", "8080", "port", 8080),
            ("PORT", " 0443 ", "port", 443),
            ("WEB_CONCURRENCY", "4", "web_concurrency", 4),
            ("DJANGO_SECURE_HSTS_SECONDS", "31536000", "secure_hsts_seconds", 31536000),
            ("HEALTHCHECK_TIMEOUT", "0.25", "healthcheck_timeout", 0.25),
            ("HEALTHCHECK_TIMEOUT", "30", "healthcheck_timeout", 30.0),
            ("HEALTHCHECK_CACHE_SECONDS", "0", "healthcheck_cache_seconds", 0.0),
            ("HEALTHCHECK_CACHE_SECONDS", "2.5", "healthcheck_cache_seconds", 2.5),
        ],
    )
    def test_plain_numbers_are_read(self, name: str, value: str, field: str, expected: float) -> None:
        assert getattr(env.load(_environment(**{name: value})), field) == expected

    @pytest.mark.slow
    def test_every_entry_point_stops_on_a_unit(self) -> None:
        result = run_manage("check", env=project_env(HEALTHCHECK_TIMEOUT="5s", PORT="1e3"))
        assert result.returncode == 2
        assert [line.split(":")[0] for line in result.stderr.strip().splitlines()] == ["PORT", "HEALTHCHECK_TIMEOUT"]
        _assert_clean_failure(result.stderr, ["5s", "1e3"])


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This project without the developer's ``.env`` (``make run`` writes one, and ``.env`` fills
    a variable that is empty): where a test unsets a required variable, it must stay unset."""
    return project_copy(tmp_path_factory.mktemp("checkout"))


@pytest.mark.slow
class TestManagePy:
    """The same rules seen by a user: a real ``manage.py check`` subprocess."""

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            rule
            for rule in BROKEN_RULES
            if rule[0] in ("DJANGO_DEBUG", "DATABASE_URL", "PORT", "DJANGO_SECRET_KEY", "SENTRY_DSN")
        ],
    )
    def test_single_broken_rule(self, checkout: Path, name: str, value: str | None, message: str) -> None:
        result = run_manage("check", env=project_env(False, **{name: value}), cwd=checkout)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(message)
        _assert_clean_failure(result.stderr, [value] if value else [])
        assert result.stdout == ""

    def test_several_broken_rules_listed_together(self, checkout: Path) -> None:
        bad = {
            "DATABASE_URL": "mysql://root:hunter2@db/app",
            "REDIS_URL": None,
            "PORT": "99999",
            "LOG_LEVEL": "chatty",
            "HEALTHCHECK_TIMEOUT": "forever",
            "DJANGO_SECRET_KEY": "s3cr3t",
        }
        result = run_manage("check", env=project_env(False, **bad), cwd=checkout)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert [line.split(":")[0] for line in lines] == [
            "DJANGO_SECRET_KEY",
            "DATABASE_URL",
            "REDIS_URL",
            "PORT",
            "LOG_LEVEL",
            "HEALTHCHECK_TIMEOUT",
        ]
        _assert_clean_failure(result.stderr, ["hunter2", "mysql://", "99999", "chatty", "forever", "s3cr3t"])

    def test_nothing_set_lists_every_required_variable(self, checkout: Path) -> None:
        result = run_manage("migrate", env=project_env(clear=True), cwd=checkout)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "DJANGO_SECRET_KEY: missing",
            "DJANGO_ALLOWED_HOSTS: missing",
            "DATABASE_URL: missing",
            "REDIS_URL: missing",
        ]

    def test_any_command_stops_before_doing_anything(self) -> None:
        result = run_manage("check_services", env=project_env(REDIS_URL="ftp://x"))
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.strip() == "REDIS_URL: must be a redis://, rediss:// or unix:// URL"

    def test_valid_production_environment_passes_check(self) -> None:
        result = run_manage("check", env=project_env(DJANGO_ALLOWED_HOSTS="example.com,www.example.com"))
        assert result.returncode == 0, result.stderr
        assert "System check identified no issues" in result.stdout

    def test_dotenv_is_read_and_real_variables_win(self, tmp_path) -> None:
        dotenv = tmp_path / ".env"
        dotenv.write_text("DOTENV_ONLY_PROBE=from-file\nDOTENV_BOTH_PROBE=from-file\n")
        with preserved_environ():
            os.environ["DOTENV_BOTH_PROBE"] = "from-environment"
            env.read_dotenv(dotenv)
            assert os.environ["DOTENV_ONLY_PROBE"] == "from-file"
            assert os.environ["DOTENV_BOTH_PROBE"] == "from-environment"
        assert env.read_dotenv(tmp_path / "missing.env") == []  # a missing file is fine

    def test_an_empty_real_variable_does_not_hide_the_dotenv_value(self, tmp_path) -> None:
        """The contract: empty counts as unset, so `PORT= make run` still gets the .env port."""
        dotenv = tmp_path / ".env"
        dotenv.write_text("PORT=8123\nDOTENV_BLANK_PROBE=from-file\n")
        with preserved_environ():
            os.environ["PORT"] = ""
            os.environ["DOTENV_BLANK_PROBE"] = "   "
            config = env.load_project_config(dotenv)
            assert config.port == 8123
            assert os.environ["DOTENV_BLANK_PROBE"] == "from-file"

    @pytest.mark.parametrize("first_line", ["DOTENV_FIRST_PROBE=from-file", "PORT=eighty"])
    def test_a_byte_order_mark_hides_no_line(self, tmp_path, first_line: str) -> None:
        """Editors on Windows save UTF-8 with a BOM; the first variable must still count."""
        dotenv = tmp_path / ".env"
        dotenv.write_text("\ufeff" + first_line + "\n", encoding="utf-8")
        with preserved_environ():
            os.environ.pop("DOTENV_FIRST_PROBE", None)
            os.environ.pop("PORT", None)
            if first_line.startswith("PORT"):
                with pytest.raises(env.ConfigurationError) as caught:
                    env.load_project_config(dotenv)
                assert "PORT: must be an integer 1-65535" in caught.value.problems
            else:
                assert env.read_dotenv(dotenv) == []
                assert os.environ.get("DOTENV_FIRST_PROBE") == "from-file"

    def test_a_dotenv_that_is_not_utf8_is_one_problem(self, tmp_path) -> None:
        dotenv = tmp_path / ".env"
        dotenv.write_bytes(b"DJANGO_SECRET_KEY=caf\xe9-latin-1\n")
        assert env.read_dotenv(dotenv) == [".env: must be UTF-8 text"]

    def test_malformed_dotenv_lines_are_reported_without_their_content(self, tmp_path, capfd) -> None:
        dotenv = tmp_path / ".env"
        dotenv.write_text(
            "\ufeff# comment (after a byte-order mark)\n\nDATABASE_URL=sqlite:////tmp/x.sqlite3\n"
            "DJANGO_SECRET_KEY hunter2-super-secret\nexport REDIS_URL=redis://r:6379/0\n  PORT=80\n  # indented\n",
            encoding="utf-8",
        )
        with preserved_environ():
            for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"):
                os.environ.pop(name, None)
            with pytest.raises(env.ConfigurationError) as caught:
                env.load_project_config(dotenv)
        problems = caught.value.problems
        assert problems[:2] == [".env line 4: expected NAME=value", ".env line 6: expected NAME=value"]
        assert "DATABASE_URL: missing" not in problems  # the valid lines were still read
        assert "hunter2" not in " ".join(problems)
        assert "hunter2" not in "".join(capfd.readouterr())

    @pytest.mark.parametrize(
        "redis_url",
        ["redis://127.0.0.1:6379/3", "rediss://:pw@cache:6380/0?ssl_cert_reqs=none", "unix:///run/redis.sock?db=3"],
    )
    def test_every_redis_scheme_gives_working_cache_and_queue_clients(self, redis_url: str) -> None:
        """Both clients are built from REDIS_URL; building them (no I/O) must work for each scheme."""
        script = (
            "import django_rq; from django_redis import get_redis_connection; "
            "pools = [get_redis_connection('default').connection_pool, "
            "django_rq.get_queue().connection.connection_pool]; "
            "print([(type(p.connection_class()).__name__, p.connection_kwargs['socket_timeout']) for p in pools])"
        )
        result = run_manage("shell", "-c", script, env=project_env(REDIS_URL=redis_url))
        assert result.returncode == 0, result.stderr
        kinds = {"redis": "Connection", "rediss": "SSLConnection", "unix": "UnixDomainSocketConnection"}
        expected = kinds[redis_url.split(":")[0]]
        assert result.stdout.strip().splitlines()[-1] == str([(expected, 2), (expected, 2.0)])

    def test_gunicorn_without_our_config_stops_instead_of_respawning(self) -> None:
        """`gunicorn config.wsgi` with another config: workers fail to boot, the master halts."""
        result = _bare_gunicorn(env=project_env(DJANGO_DEBUG="maybe"))
        assert result.returncode != 0
        assert "DJANGO_DEBUG: must be one of true/false/1/0/yes/no/on/off" in result.stderr
        assert result.stderr.count("DJANGO_DEBUG: must be one of") <= 2  # no respawn loop

    def test_gunicorn_preloading_the_app_exits_2(self, checkout: Path) -> None:
        """With --preload the master imports config.wsgi itself: the contract's exit 2 applies."""
        result = _bare_gunicorn("--preload", env=project_env(DATABASE_URL=None), cwd=checkout)
        assert result.returncode == 2
        assert "DATABASE_URL: missing" in result.stderr


def _bare_gunicorn(*options: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """gunicorn serving config.wsgi without the project's gunicorn.conf.py."""
    command = [str(BIN / "gunicorn"), "-c", "/dev/null", "--no-control-socket", *options, "--bind", "127.0.0.1:0"]
    return subprocess.run([*command, "config.wsgi"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
