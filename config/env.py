"""Read and validate the process environment: the only module that looks at it.

Every variable of the contract is parsed here into a typed, immutable ``Config``. Problems are
collected, not raised one at a time, so a bad deployment learns everything that is wrong in one
go. Messages name the variable and the rule, never the value (values are often secrets).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("console", "json")
DATABASE_SCHEMES = ("postgres", "postgresql", "sqlite")
REDIS_SCHEMES = ("redis", "rediss", "unix")
_ADMIN_URL = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/")

# A development-only key: accepted only while DEBUG is true, and rejected by the DEBUG=false rules.
DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production-0000"  # noqa: S105

T = TypeVar("T")


class ConfigurationError(Exception):
    """The environment broke one or more rules; ``problems`` holds one line per broken rule."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Config:
    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    database: dict[str, Any]
    redis_url: str
    port: int
    log_level: str
    log_format: str
    healthcheck_timeout: float
    healthcheck_cache_seconds: float
    healthcheck_token: str | None
    web_concurrency: int
    forwarded_allow_ips: list[str]
    secure_ssl_redirect: bool
    secure_hsts_seconds: int
    secure_hsts_include_subdomains: bool
    secure_hsts_preload: bool
    secure_cookies: bool
    secure_proxy_ssl_header: bool
    admin_url: str


class _Invalid(ValueError):
    """A value broke its rule; the message is the rule, safe to show (it never holds the value)."""


@dataclass
class _Reader:
    environ: Mapping[str, str]
    problems: list[str] = field(default_factory=list)

    def raw(self, name: str) -> str | None:
        # An empty value counts as unset, so `FOO=` in a .env file means "use the default".
        value = self.environ.get(name, "").strip()
        return value or None

    def read(self, name: str, parse: Callable[[str], T], default: T, *, required: bool = False) -> T:
        value = self.raw(name)
        if value is None:
            if required:
                self.problems.append(f"{name}: missing")
            return default
        try:
            return parse(value)
        except _Invalid as rule:
            self.problems.append(f"{name}: {rule}")
        except Exception:  # noqa: BLE001 - a parser's own message may echo the value
            self.problems.append(f"{name}: invalid value")
        return default


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Invalid("must be one of true/false/1/0/yes/no/on/off")


# Plain ASCII decimal digits only. django-environ's caster deletes every other character (so
# "5s" reads as 5, "1e3" as 13 and "1,000" as 1) and int()/float() accept "1_000", "+5", "١٢"
# and "inf": none of them may reach a user's number.
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _integer(low: int, high: int | None, rule: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not _DIGITS.fullmatch(value) or len(value) > 18:  # int() refuses thousands of digits
            raise _Invalid(rule)
        number = int(value)
        if number < low or (high is not None and number > high):
            raise _Invalid(rule)
        return number

    return parse


def _seconds(low: float, high: float | None, low_inclusive: bool, rule: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        if not _DECIMAL.fullmatch(value):
            raise _Invalid(rule)
        number = float(value)
        too_low = number < low if low_inclusive else number <= low
        if not math.isfinite(number) or too_low or (high is not None and number > high):
            raise _Invalid(rule)
        return number

    return parse


def _choice(options: tuple[str, ...], *, upper: bool) -> Callable[[str], str]:
    def parse(value: str) -> str:
        normalised = value.upper() if upper else value.lower()
        if normalised not in options:
            raise _Invalid("must be one of " + "/".join(options))
        return normalised

    return parse


def _comma_list(value: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise _Invalid("must be a comma-separated list with at least one entry")
    return items


def _scheme(value: str) -> str:
    try:
        return urlsplit(value).scheme.lower()
    except ValueError:
        raise _Invalid("not a valid URL") from None


def _database(value: str) -> dict[str, Any]:
    scheme = _scheme(value)
    if scheme not in DATABASE_SCHEMES:
        raise _Invalid("must be a postgres://, postgresql:// or sqlite:/// URL")
    try:
        config: dict[str, Any] = environ.Env.db_url_config(value)
    except Exception:  # noqa: BLE001 - never let the parser's message (with the URL) through
        raise _Invalid("not a valid database URL") from None
    if scheme != "sqlite" and not config.get("NAME"):
        raise _Invalid("must name a database (postgres://user@host:5432/NAME)")
    if scheme == "sqlite" and config.get("NAME") in (None, "", ":memory:"):
        # An in-memory database is private to each thread's connection: the app would run on
        # an empty database the probes cannot see. Only files make sense here.
        raise _Invalid("must name a database file (sqlite:////absolute/path.sqlite3)")
    return config


def _redis_url(value: str) -> str:
    if _scheme(value) not in REDIS_SCHEMES:
        raise _Invalid("must be a redis://, rediss:// or unix:// URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise _Invalid("not a valid URL") from None
    database = parts.path.strip("/") if parts.scheme != "unix" else ""
    if database and not database.isdigit():
        raise _Invalid("the database after the host must be a number (redis://host:6379/0)")
    return value


def _admin_url(value: str) -> str:
    path = value.strip("/") + "/"
    if not _ADMIN_URL.fullmatch(path):
        raise _Invalid("must be a URL path such as admin/ (letters, digits, . _ ~ - and /)")
    return path


def _secret_key(value: str) -> str:
    if len(value) < 50:
        raise _Invalid("must be at least 50 characters when DJANGO_DEBUG is false")
    if value.startswith("django-insecure"):
        raise _Invalid("must not start with django-insecure when DJANGO_DEBUG is false")
    return value


def load(environment: Mapping[str, str] | None = None) -> Config:
    """Parse ``environment`` (default: the process's) into a ``Config`` or raise every problem."""
    reader = _Reader(os.environ if environment is None else environment)
    read = reader.read

    # DEBUG decides other defaults; if it is malformed we assume production (the safe side).
    debug = read("DJANGO_DEBUG", _boolean, False)
    production = not debug

    if production:
        secret_key = read("DJANGO_SECRET_KEY", _secret_key, "", required=True)
        allowed_hosts = read("DJANGO_ALLOWED_HOSTS", _comma_list, list[str](), required=True)
    else:
        secret_key = read("DJANGO_SECRET_KEY", str, DEVELOPMENT_SECRET_KEY)
        allowed_hosts = read("DJANGO_ALLOWED_HOSTS", _comma_list, ["localhost", "127.0.0.1", "[::1]"])

    config = Config(
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=read("DJANGO_CSRF_TRUSTED_ORIGINS", _comma_list, []),
        database=read("DATABASE_URL", _database, {}, required=True),
        redis_url=read("REDIS_URL", _redis_url, "", required=True),
        port=read("PORT", _integer(1, 65535, "must be an integer 1-65535"), 8000),
        log_level=read("LOG_LEVEL", _choice(LOG_LEVELS, upper=True), "INFO"),
        log_format=read("LOG_FORMAT", _choice(LOG_FORMATS, upper=False), "console" if debug else "json"),
        healthcheck_timeout=read(
            "HEALTHCHECK_TIMEOUT",
            _seconds(0, 30, False, "must be a number of seconds > 0 and <= 30, in plain digits (such as 1 or 0.5)"),
            1.0,
        ),
        healthcheck_cache_seconds=read(
            "HEALTHCHECK_CACHE_SECONDS",
            _seconds(0, None, True, "must be a number of seconds >= 0, in plain digits (such as 0 or 2.5)"),
            0.0,
        ),
        healthcheck_token=read("HEALTHCHECK_TOKEN", str, None),
        web_concurrency=read("WEB_CONCURRENCY", _integer(1, None, "must be an integer >= 1"), 2),
        forwarded_allow_ips=read("FORWARDED_ALLOW_IPS", _comma_list, ["127.0.0.1", "::1"]),
        secure_ssl_redirect=read("DJANGO_SECURE_SSL_REDIRECT", _boolean, production),
        secure_hsts_seconds=read(
            "DJANGO_SECURE_HSTS_SECONDS", _integer(0, None, "must be an integer >= 0"), 60 if production else 0
        ),
        secure_hsts_include_subdomains=read("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", _boolean, production),
        secure_hsts_preload=read("DJANGO_SECURE_HSTS_PRELOAD", _boolean, production),
        secure_cookies=read("DJANGO_SECURE_COOKIES", _boolean, production),
        secure_proxy_ssl_header=read("DJANGO_SECURE_PROXY_SSL_HEADER", _boolean, False),
        admin_url=read("DJANGO_ADMIN_URL", _admin_url, "admin/"),
    )
    if reader.problems:
        raise ConfigurationError(reader.problems)
    return config


_DOTENV_LINE = re.compile(r"\A(?:export )?[A-Za-z_0-9]+=.*\Z")


def read_dotenv(path: Path = BASE_DIR / ".env") -> list[str]:
    """Load ``.env`` into the process environment; real variables win, a missing file is fine.

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
