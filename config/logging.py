"""One logging setup for every process: Django, gunicorn and the rq worker.

Everything goes through structlog's ``ProcessorFormatter``: structlog loggers and plain stdlib
loggers (django, gunicorn, rq) get the same fields and the same renderer: coloured key=value
lines for people (``console``), one JSON object per line for machines (``json``). Logs go to
stderr so a command's own output on stdout (``check_services --json``) stays clean.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from apps.common import request_context
from apps.common.probe_paths import EARLY_PATHS


def _gunicorn_access_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Turn gunicorn's access-log atoms into fields, including the response's X-Request-ID."""
    # ProcessorFormatter(pass_foreign_args=True) hands us the record's args: gunicorn's atoms.
    atoms = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if record is None or record.name != "gunicorn.access" or not isinstance(atoms, dict):
        return event_dict
    request_id = atoms.get("{x-request-id}o")
    event_dict.update(
        event="http_request",
        method=atoms.get("m"),
        path=atoms.get("U"),
        query=atoms.get("q") or None,
        status=int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
        duration_ms=round(int(atoms.get("D", 0)) / 1000, 3),
        remote_addr=atoms.get("h"),
        user_agent=atoms.get("a"),
        request_id=request_id if request_id and request_id != "-" else None,
    )
    return event_dict


def _request_id_from_record(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Lines written after the middleware chain returned (and cleared the log context) still get
    their request's id: django.request's record carries the request, which knows it; runserver's
    request line (django.server) is written on the thread that just handled that request."""
    if event_dict.get("request_id") is None:
        record = event_dict.get("_record")
        request_id = getattr(getattr(record, "request", None), "request_id", None)
        if request_id is None and getattr(record, "name", None) == "django.server":
            request_id = request_context.last_request_id()
        if request_id is not None:
            event_dict["request_id"] = request_id
    return event_dict


class HealthProbeAccessFilter(logging.Filter):
    """Access lines for health probes and scrapes are DEBUG: they come every few seconds and must not flood logs."""

    def __init__(self, paths: Iterable[str] = EARLY_PATHS) -> None:
        super().__init__()
        # An access line's path (gunicorn's has no query string; runserver's request line may).
        # Whole paths only: "/healthz\n" is not a probe, and its line must not be hidden.
        self.pattern = re.compile(r"/(" + "|".join(map(re.escape, paths)) + r")/?(\?.*)?")

    def filter(self, record: logging.LogRecord) -> bool:
        path = _access_path(record)
        if path is None or not self.pattern.fullmatch(path):
            return True
        return _demote(record, logging.DEBUG, logging.getLogger())


class Routine(logging.Filter):
    """A logger's records are routine, not alerts: logged at ``level`` at most.

    ``DisallowedHost`` is internet noise (scanners try every address with any Host header);
    Django logs it at ERROR, which would page someone for nothing.
    """

    def __init__(self, level: str = "WARNING") -> None:
        super().__init__()
        self.level = logging.getLevelNamesMapping()[level]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= self.level:
            return True
        return _demote(record, self.level, logging.getLogger(record.name))


def _demote(record: logging.LogRecord, level: int, logger: logging.Logger) -> bool:
    """Give ``record`` the lower ``level``; keep it only if ``logger`` logs that level."""
    record.levelno, record.levelname = level, logging.getLevelName(level)
    return logger.isEnabledFor(level)


def _access_path(record: logging.LogRecord) -> str | None:
    if record.name == "gunicorn.access" and isinstance(record.args, dict):
        path = record.args.get("U")
        return path if isinstance(path, str) else None
    if record.name == "django.server" and isinstance(record.args, tuple) and record.args:
        # runserver logs '"GET /healthz HTTP/1.1" 200 43': the path is the request line's second word.
        words = str(record.args[0]).split()
        return words[1] if len(words) > 1 else None
    return None


def _common_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def foreign_processors() -> list[Processor]:
    """For records from plain stdlib loggers (django, gunicorn, rq): message already formatted."""
    return [
        *_common_processors(),
        # Only extras that are plain values: runserver's "request" extra is a raw socket.
        structlog.stdlib.ExtraAdder(allow=("status_code",)),
        _gunicorn_access_fields,
        _request_id_from_record,
    ]


def build_formatter(fmt: str) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter every handler uses (dictConfig builds it through ``()``)."""
    if fmt == "json":
        # Tracebacks become a structured list inside the one JSON object of the line; without
        # local variables, which would carry secrets (settings, connection parameters) into logs.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        final: list[Processor] = [tracebacks, structlog.processors.JSONRenderer()]
    else:
        final = [structlog.dev.ConsoleRenderer(colors=False)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_processors(),
        pass_foreign_args=True,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )


def build_logging_config(level: str, fmt: str, quiet_paths: Iterable[str] = EARLY_PATHS) -> dict[str, Any]:
    """A ``LOGGING`` dict for Django and gunicorn; also configures structlog itself.

    ``quiet_paths``: paths whose access lines are demoted to DEBUG (the probes and ``/metrics``).
    """
    configure_structlog()
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "structured",
        "filters": ["health_probe_access"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "config.logging.build_formatter", "fmt": fmt}},
        "filters": {
            "health_probe_access": {"()": "config.logging.HealthProbeAccessFilter", "paths": list(quiet_paths)},
            "routine": {"()": "config.logging.Routine", "level": "WARNING"},
        },
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # Loggers that ship their own handlers elsewhere: route them to ours, once.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": [], "level": level, "propagate": True},
            "django.request": {"handlers": [], "level": level, "propagate": True},
            "django.db.backends": {"handlers": [], "level": "INFO", "propagate": True},
            "django.security.DisallowedHost": {"handlers": [], "filters": ["routine"], "propagate": True},
            "gunicorn.error": {"handlers": [], "level": level, "propagate": True},
            "gunicorn.access": {"handlers": [], "level": level, "propagate": True},
            "rq.worker": {"handlers": [], "level": level, "propagate": True},
            # django-axes narrates every login at INFO; its WARNING per failure (and ours) is enough.
            "axes": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }


def configure_structlog() -> None:
    """Route structlog through stdlib logging so one handler and formatter serve everything."""
    # Python warnings (whitenoise's "No directory at", deprecations) become log records too,
    # instead of raw text that breaks the one-JSON-object-per-line rule.
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_common_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
