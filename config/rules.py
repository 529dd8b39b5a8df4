"""The rules a variable's value must follow: each parses a string or raises ``Invalid`` with the rule.

A rule also says what it accepts in a few words (``kind``), for the generated reference table.
Messages state the rule and never repeat the value: values are often secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import environ

from apps.common.forwarded import trusted_networks
from apps.common.numbers import decimal_number, whole_number
from apps.common.security_rules import MIN_TOKEN_LENGTH, token_problem

T_co = TypeVar("T_co", covariant=True)


class Invalid(ValueError):
    """A value broke its rule; the message is the rule, safe to show (it never holds the value)."""


class Rule(Protocol[T_co]):
    @property
    def kind(self) -> str:
        """What the rule accepts, for the reference table (``int 1..65535``)."""

    def __call__(self, value: str) -> T_co:
        """The parsed value, or ``Invalid``."""


@dataclass(frozen=True)
class Text:
    kind: str = "str"

    def __call__(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class Boolean:
    kind: str = "bool"

    def __call__(self, value: str) -> bool:
        # django-environ's bool cast turns any typo into False: only these words count.
        lowered = value.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise Invalid("must be one of true/false/1/0/yes/no/on/off")


@dataclass(frozen=True)
class Integer:
    low: int
    high: int | None = None

    @property
    def kind(self) -> str:
        return f"int {self.low}..{self.high}" if self.high is not None else f"int >= {self.low}"

    def __call__(self, value: str) -> int:
        rule = (
            f"must be an integer {self.low}-{self.high}"
            if self.high is not None
            else f"must be an integer >= {self.low}"
        )
        try:
            number = whole_number(value)
        except ValueError:
            raise Invalid(rule) from None
        if number < self.low or (self.high is not None and number > self.high):
            raise Invalid(rule)
        return number


@dataclass(frozen=True)
class Seconds:
    """A duration: ``0 < value <= high`` (or ``value >= 0`` when zero is allowed)."""

    high: float | None = None
    zero_allowed: bool = False

    @property
    def kind(self) -> str:
        low = ">= 0" if self.zero_allowed else "> 0"
        return f"seconds {low}" + (f" and <= {self.high:g}" if self.high is not None else "")

    def __call__(self, value: str) -> float:
        example = "0 or 2.5" if self.zero_allowed else "1 or 0.5"
        rule = f"must be a number of {self.kind}, in plain digits (such as {example})"
        try:
            number = decimal_number(value)
        except ValueError:
            raise Invalid(rule) from None
        if (number == 0 and not self.zero_allowed) or (self.high is not None and number > self.high):
            raise Invalid(rule)
        return number


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    upper: bool = False

    @property
    def kind(self) -> str:
        return "/".join(f"`{option}`" for option in self.options)

    def __call__(self, value: str) -> str:
        normalised = value.upper() if self.upper else value.lower()
        if normalised not in self.options:
            raise Invalid("must be one of " + "/".join(self.options))
        return normalised


@dataclass(frozen=True)
class CommaList:
    kind: str = "comma list"

    def __call__(self, value: str) -> list[str]:
        items = [item.strip() for item in value.split(",") if item.strip()]
        if not items:
            raise Invalid("must be a comma-separated list with at least one entry")
        return items


@dataclass(frozen=True)
class Token:
    """A Bearer token (``HEALTHCHECK_TOKEN``): long, and plain enough for an HTTP header."""

    kind: str = f"str, {MIN_TOKEN_LENGTH}+ characters"

    def __call__(self, value: str) -> str:
        problem = token_problem(value)
        if problem is not None:
            raise Invalid(problem)
        return value


@dataclass(frozen=True)
class Networks:
    """Peer addresses or networks (``10.0.0.0/8``), comma-separated, or ``*`` for every peer."""

    kind: str = "comma list of addresses or networks, or `*`"

    def __call__(self, value: str) -> list[str]:
        entries = CommaList()(value)
        try:
            trusted_networks(entries)
        except ValueError:
            raise Invalid("must be IP addresses or networks such as 10.0.0.0/8, comma-separated, or *") from None
        return entries


def _scheme(value: str) -> str:
    try:
        return urlsplit(value).scheme.lower()
    except ValueError:
        raise Invalid("not a valid URL") from None


@dataclass(frozen=True)
class DatabaseURL:
    """Django's ``DATABASES`` entry for a ``postgres://``, ``postgresql://`` or ``sqlite:///`` URL.

    A relative SQLite path (``sqlite:///db.sqlite3``) is resolved against ``base``, the project
    root, never against whatever directory a process happens to start in.
    """

    base: Path
    kind: str = "URL (`postgres://`, `postgresql://`, `sqlite:///`)"

    def __call__(self, value: str) -> dict[str, Any]:
        scheme = _scheme(value)
        if scheme not in ("postgres", "postgresql", "sqlite"):
            raise Invalid("must be a postgres://, postgresql:// or sqlite:/// URL")
        try:
            config: dict[str, Any] = environ.Env.db_url_config(value)
        except Exception:  # noqa: BLE001 - never let the parser's message (with the URL) through
            raise Invalid("not a valid database URL") from None
        if scheme != "sqlite" and not config.get("NAME"):
            raise Invalid("must name a database (postgres://user@host:5432/NAME)")
        if scheme == "sqlite" and config.get("NAME") in (None, "", ":memory:"):
            # An in-memory database is private to each thread's connection: the app would run
            # on an empty database the probes cannot see. Only files make sense here.
            raise Invalid("must name a database file (sqlite:////absolute/path.sqlite3)")
        if scheme == "sqlite":
            config["NAME"] = str(self.base / config["NAME"])  # an absolute NAME stays as it is
        return config


@dataclass(frozen=True)
class RedisURL:
    kind: str = "URL (`redis://`, `rediss://`, `unix://`)"

    def __call__(self, value: str) -> str:
        if _scheme(value) not in ("redis", "rediss", "unix"):
            raise Invalid("must be a redis://, rediss:// or unix:// URL")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
        except ValueError:
            raise Invalid("not a valid URL") from None
        database = parts.path.strip("/") if parts.scheme != "unix" else ""
        if database and not database.isdigit():
            raise Invalid("the database after the host must be a number (redis://host:6379/0)")
        return value


@dataclass(frozen=True)
class SentryDSN:
    """A Sentry DSN, ``https://<public key>@<host>/<project id>``, as sentry-sdk itself parses it.

    The SDK's parser (imported only when a DSN is set) is the authority on the shape; its error
    messages repeat the value, so only the rule is reported.
    """

    kind: str = "URL (`https://<key>@<host>/<project>`)"

    def __call__(self, value: str) -> str:
        rule = "must be a Sentry DSN such as https://<public key>@<host>/<project id>"
        from sentry_sdk.utils import Dsn

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
            Dsn(value)
        except Exception:  # noqa: BLE001 - BadDsn and ValueError both carry the value
            raise Invalid(rule) from None
        if parts.query or parts.fragment or any(character.isspace() for character in value):
            raise Invalid(rule)
        return value


_URL_PATH = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/")


@dataclass(frozen=True)
class URLPath:
    """A path below the site's root, normalised to ``some/path/``."""

    kind: str = "URL path"

    def __call__(self, value: str) -> str:
        path = value.strip("/") + "/"
        if not _URL_PATH.fullmatch(path):
            raise Invalid("must be a URL path such as admin/ (letters, digits, . _ ~ - and /)")
        return path
