"""Read and validate the process environment: the only module that looks at it.

Every variable of the contract is declared once, as an attribute of ``Config``: its name, its
rule (``config.rules``), its default and one line of documentation. The settings, gunicorn's
configuration, the reference table in ``docs/configuration.md`` and the tests all derive from
these declarations. Problems are collected, not raised one at a time, so a bad deployment
learns everything that is wrong in one go. Messages name the variable and the rule, never the
value (values are often secrets).
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import environ

from apps.common.masking import MASK, has_credentials, mask_secrets
from apps.common.security_rules import admin_url_problem, allowed_hosts_problem, secret_key_problem
from config.rules import (
    Boolean,
    Choice,
    CommaList,
    DatabaseURL,
    Integer,
    Invalid,
    Networks,
    RedisURL,
    Rule,
    Seconds,
    SentryDSN,
    Text,
    Token,
    URLPath,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# A development-only key: accepted only while DEBUG is true, and rejected by the DEBUG=false rules.
DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production-0000"  # noqa: S105

T = TypeVar("T")


class ConfigurationError(Exception):
    """The environment broke one or more rules; ``problems`` holds one line per broken rule."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Variable(Generic[T]):
    """One environment variable of the contract, declared as an attribute of ``Config``.

    ``default`` applies when the variable is unset or empty; ``derive`` computes it from the
    variables declared before (DEBUG decides several defaults). ``required`` may depend on them
    too, and ``check`` applies rules that involve them. Reading ``config.<attribute>`` gives the
    parsed, typed value.

    ``secret``: the value is (or carries) a secret. ``repr(config)`` shows it masked: a password
    in a URL or a ``DATABASES`` entry as ``***``, any other secret value (a URL with a user name
    but no password included) as ``***`` whole.
    """

    def __init__(
        self,
        name: str,
        rule: Rule[T],
        default: T,
        doc: str,
        *,
        derive: Callable[[Config], T] | None = None,
        default_doc: str | None = None,
        required: bool | Callable[[Config], bool] = False,
        check: Callable[[T, Config], None] | None = None,
        secret: bool = False,
    ) -> None:
        self.name, self.rule, self.default, self.doc = name, rule, default, doc
        self.derive, self.required, self.check, self.secret = derive, required, check, secret
        self._default_doc = default_doc
        self.attribute = ""

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    @overload
    def __get__(self, config: None, owner: type) -> Variable[T]: ...
    @overload
    def __get__(self, config: Config, owner: type) -> T: ...
    def __get__(self, config: Config | None, owner: type) -> Variable[T] | T:
        if config is None:
            return self
        value: T = config._values[self.attribute]
        return value

    def shown(self, value: T) -> object:
        """``value`` as ``repr(config)`` may show it: a secret masked, the rest as it is."""
        if not self.secret or not value:
            return value
        if isinstance(value, str) and ("://" not in value or ("@" in value and not has_credentials(value))):
            # A key or a token, or a URL whose user name is the credential (a Sentry DSN's key):
            # nothing of it is safe to show.
            return MASK
        return mask_secrets(value)

    def is_required(self, config: Config) -> bool:
        return self.required(config) if callable(self.required) else self.required

    @property
    def default_doc(self) -> str:
        if self._default_doc is not None:
            return self._default_doc
        if self.required is True:
            return "required"
        if self.default is None or self.default == []:
            return "unset"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        return f"`{self.default}`"

    def read(self, environment: Mapping[str, str], config: Config, problems: list[str]) -> T:
        # An empty value counts as unset, so `FOO=` in a .env file means "use the default".
        raw = environment.get(self.name, "").strip()
        fallback = self.derive(config) if self.derive is not None else self.default
        if not raw:
            if self.is_required(config):
                problems.append(f"{self.name}: missing")
            return fallback
        try:
            value = self.rule(raw)
            if self.check is not None:
                self.check(value, config)
        except Invalid as rule:
            problems.append(f"{self.name}: {rule}")
        except Exception:  # noqa: BLE001 - a parser's own message may echo the value
            problems.append(f"{self.name}: invalid value")
        else:
            return value
        return fallback


def _production(config: Config) -> bool:
    return not config.debug


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise Invalid(problem)


# DATABASE_URL options that need a server connection of their own for the whole session. Under
# PgBouncer's transaction pooling each transaction may run on another server connection, so
# prepared statements (psycopg's prepare_threshold), server-side binding (named statements) and
# SET ROLE (Django's assume_role) break there. Django's defaults leave all three off.
_SESSION_OPTIONS = ("server_side_binding", "prepare_threshold", "assume_role")
_OFF = ("false", "0", "no", "off")


def _fits_the_pooler(value: dict[str, Any], config: Config) -> None:
    if config.database_pooler != "pgbouncer":
        return
    if value.get("ENGINE") != "django.db.backends.postgresql":
        raise Invalid("must be a postgres:// URL when DATABASE_POOLER is pgbouncer")
    options = value.get("OPTIONS", {})
    turned_on = [
        name
        for name in _SESSION_OPTIONS
        if name in options and not (name == "server_side_binding" and str(options[name]).lower() in _OFF)
    ]
    if turned_on:
        raise Invalid(
            f"{', '.join(turned_on)} cannot be used with DATABASE_POOLER=pgbouncer "
            "(transaction pooling: no prepared statements, server-side binding or session state)"
        )


def _production_secret_key(value: str, config: Config) -> None:
    if not config.debug:
        _refuse(secret_key_problem(value))


def _production_hosts(value: list[str], config: Config) -> None:
    if not config.debug:
        _refuse(allowed_hosts_problem(value))


def _admin_url(value: str, config: Config) -> None:
    _refuse(admin_url_problem(value))


def _not_the_main_port(value: int | None, config: Config) -> None:
    if value == config.port:
        raise Invalid("must differ from PORT")


class Config:
    """The validated environment: one attribute per variable, each declared once, here.

    Order matters: a variable's default, requirement or check may use those declared above it.
    """

    # DEBUG decides other defaults; if it is malformed, production (the safe side) is assumed.
    debug = Variable("DJANGO_DEBUG", Boolean(), False, "Development mode; production is the default.")
    secret_key = Variable(
        "DJANGO_SECRET_KEY",
        Text(),
        "",
        "At least 50 characters (5 distinct), not starting with `django-insecure`, when DEBUG is false.",
        derive=lambda config: DEVELOPMENT_SECRET_KEY if config.debug else "",
        default_doc="required when DEBUG is false",
        required=_production,
        check=_production_secret_key,
        secret=True,
    )
    allowed_hosts = Variable(
        "DJANGO_ALLOWED_HOSTS",
        CommaList(),
        list[str](),
        "Host names this site answers to (the probes answer any); `*` only when DEBUG is true.",
        derive=lambda config: ["localhost", "127.0.0.1", "[::1]"] if config.debug else [],
        default_doc="required when DEBUG is false; `localhost,127.0.0.1,[::1]` when true",
        required=_production,
        check=_production_hosts,
    )
    csrf_trusted_origins = Variable(
        "DJANGO_CSRF_TRUSTED_ORIGINS", CommaList(), list[str](), "`https://` origins allowed to POST (behind a proxy)."
    )
    database_pooler = Variable(
        "DATABASE_POOLER",
        Choice(("none", "pgbouncer")),
        "none",
        "`pgbouncer`: `DATABASE_URL` points at PgBouncer in transaction mode (no server-side cursors).",
    )
    database = Variable(
        "DATABASE_URL",
        DatabaseURL(base=BASE_DIR),
        dict[str, Any](),
        "The database. SQLite: a file; a relative path is under the project root.",
        required=True,
        secret=True,
        check=_fits_the_pooler,
    )
    redis_url = Variable(
        "REDIS_URL",
        RedisURL(),
        "",
        "The cache and the queues; a database number after the host.",
        required=True,
        secret=True,
    )
    port = Variable("PORT", Integer(1, 65535), 8000, "Where `make run`, gunicorn and compose listen.")
    log_level = Variable(
        "LOG_LEVEL", Choice(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), upper=True), "INFO", "For every process."
    )
    log_format = Variable(
        "LOG_FORMAT",
        Choice(("console", "json")),
        "json",
        "Readable lines for people, or one JSON object per line.",
        derive=lambda config: "console" if config.debug else "json",
        default_doc="`console` if DEBUG else `json`",
    )
    healthcheck_timeout = Variable(
        "HEALTHCHECK_TIMEOUT", Seconds(high=30), 1.0, "The deadline of one probe run.", default_doc="`1.0`"
    )
    healthcheck_cache_seconds = Variable(
        "HEALTHCHECK_CACHE_SECONDS",
        Seconds(zero_allowed=True),
        0.0,
        "Reuse a probe result this long (0: never).",
        default_doc="`0`",
    )
    healthcheck_token: Variable[str | None] = Variable(
        "HEALTHCHECK_TOKEN", Token(), None, "Bearer token that unlocks health details.", secret=True
    )
    web_concurrency = Variable("WEB_CONCURRENCY", Integer(1), 2, "gunicorn worker processes (never the host's cores).")
    probe_port: Variable[int | None] = Variable(
        "PROBE_PORT",
        Integer(1, 65535),
        None,
        "Also answer the probes on this port, from a listener that shares no request threads.",
        check=_not_the_main_port,
    )
    drain_seconds = Variable(
        "DRAIN_SECONDS",
        Seconds(zero_allowed=True),
        0.0,
        "On SIGTERM: readiness 503 at once, keep serving this long, then graceful shutdown.",
        default_doc="`0`",
    )
    forwarded_allow_ips = Variable(
        "FORWARDED_ALLOW_IPS",
        Networks(),
        ["127.0.0.1", "::1"],
        "Proxies believed about the request: its scheme and `X-Forwarded-For` (docs/security.md).",
        default_doc="`127.0.0.1,::1`",
    )
    secure_ssl_redirect = Variable(
        "DJANGO_SECURE_SSL_REDIRECT",
        Boolean(),
        True,
        "Redirect HTTP to HTTPS; the probes are exempt.",
        derive=_production,
        default_doc="`true` when DEBUG is false",
    )
    secure_hsts_seconds = Variable(
        "DJANGO_SECURE_HSTS_SECONDS",
        Integer(0),
        60,
        "HSTS max-age; raise it once HTTPS is known to work.",
        derive=lambda config: 0 if config.debug else 60,
        default_doc="`60` when DEBUG is false",
    )
    secure_hsts_include_subdomains = Variable(
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS",
        Boolean(),
        True,
        "HSTS `includeSubDomains`.",
        derive=_production,
        default_doc="`true` when DEBUG is false",
    )
    secure_hsts_preload = Variable(
        "DJANGO_SECURE_HSTS_PRELOAD",
        Boolean(),
        True,
        "HSTS `preload`.",
        derive=_production,
        default_doc="`true` when DEBUG is false",
    )
    secure_cookies = Variable(
        "DJANGO_SECURE_COOKIES",
        Boolean(),
        True,
        "Secure (HTTPS-only) session and CSRF cookies.",
        derive=_production,
        default_doc="`true` when DEBUG is false",
    )
    secure_proxy_ssl_header = Variable(
        "DJANGO_SECURE_PROXY_SSL_HEADER",
        Boolean(),
        False,
        "`X-Forwarded-Proto: https` from `FORWARDED_ALLOW_IPS` marks a request secure (a proxy that sets it).",
    )
    admin_url = Variable(
        "DJANGO_ADMIN_URL",
        URLPath(),
        "admin/",
        "Where the admin and the queue dashboard live; no `.` or `..` segment, not under a probe path.",
        check=_admin_url,
    )
    metrics_token: Variable[str | None] = Variable(
        "METRICS_TOKEN",
        Token(),
        None,
        "Bearer token for `/metrics` (Prometheus); unset: `/metrics` is a 404 for everyone (docs/metrics.md).",
        secret=True,
    )
    sentry_dsn: Variable[str | None] = Variable(
        "SENTRY_DSN",
        SentryDSN(),
        None,
        "Report unhandled exceptions (requests and jobs) to Sentry; unset: sentry-sdk is not even imported.",
        secret=True,
    )
    sentry_environment = Variable(
        "SENTRY_ENVIRONMENT",
        Text(),
        "production",
        "The environment Sentry files the reports under.",
        derive=lambda config: "development" if config.debug else "production",
        default_doc="`production` when DEBUG is false, else `development`",
    )
    sentry_release: Variable[str | None] = Variable(
        "SENTRY_RELEASE", Text(), None, "The release Sentry files the reports under (unset: sentry-sdk's guess)."
    )

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def __repr__(self) -> str:
        # Secrets masked: a Config that ends up in a debug page, a traceback or a log line
        # must not carry the key, the passwords or the tokens along.
        values = self._values
        shown = (f"{v.attribute}={v.shown(values[v.attribute])!r}" for v in VARIABLES if v.attribute in values)
        return f"Config({', '.join(shown)})"

    @classmethod
    def variables(cls) -> tuple[Variable[Any], ...]:
        """Every declared variable, in declaration order."""
        return tuple(value for value in vars(cls).values() if isinstance(value, Variable))


VARIABLES = Config.variables()


def load(environment: Mapping[str, str] | None = None) -> Config:
    """Parse ``environment`` (default: the process's) into a ``Config`` or raise every problem."""
    source = os.environ if environment is None else environment
    config, problems = Config(), list[str]()
    for variable in VARIABLES:
        config._values[variable.attribute] = variable.read(source, config, problems)
    if problems:
        raise ConfigurationError(problems)
    return config


def reference_table() -> str:
    """The Markdown table of every variable, for ``docs/configuration.md`` (``make docs``)."""
    rows = ["| variable | type | default | notes |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.rule.kind} | {v.default_doc} | {v.doc} |" for v in VARIABLES]
    return "\n".join(rows) + "\n"


# django-environ's own pattern for an assignment; it skips (and logs whole) anything else.
_DOTENV_LINE = re.compile(r"\A(?:export )?[A-Za-z_0-9]+=.*\Z")


def read_dotenv(path: Path = BASE_DIR / ".env") -> list[str]:
    """Load ``.env`` into the process environment; real variables that are set win, a missing file is fine.

    Returns a problem per malformed line. django-environ skips such lines and logs them whole
    (``Invalid line: DJANGO_SECRET_KEY s3cret``), so they are found here and never shown. The
    file is read once, here (a UTF-8 byte-order mark is dropped), and django-environ parses that
    same text: the check and the loader can never see different lines.
    """
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return [f"{path.name}: must be UTF-8 text"]
    except OSError as error:
        return [f"{path.name}: cannot be read ({error.strerror or type(error).__name__})"]
    problems = [
        f"{path.name} line {number}: expected NAME=value"
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#") and not _DOTENV_LINE.match(line)
    ]
    # An empty value counts as unset, so an empty real variable must not hide the file's value
    # (django-environ keeps any variable that exists, empty or not).
    for line in text.splitlines():
        if _DOTENV_LINE.match(line):
            name = line.removeprefix("export ").split("=", 1)[0]
            if name in os.environ and not os.environ[name].strip():
                del os.environ[name]
    environ_logger = logging.getLogger("environ.environ")
    environ_logger.disabled = True
    try:
        environ.Env.read_env(io.StringIO(text), overwrite=False)
    finally:
        environ_logger.disabled = False
    return problems


def load_project_config(dotenv: Path = BASE_DIR / ".env") -> Config:
    """The process's configuration: the environment over ``.env``, validated in one pass."""
    problems = read_dotenv(dotenv)
    try:
        config = load()
    except ConfigurationError as error:
        raise ConfigurationError(problems + error.problems) from None
    if problems:
        raise ConfigurationError(problems)
    return config


if __name__ == "__main__":
    print(reference_table(), end="")
