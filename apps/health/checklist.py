"""Which checks run: the ``HEALTH_CHECKS`` setting, validated once and built into probes.

``HEALTH_CHECKS`` maps a check's name to ``{"probe": "<dotted path of a probe class>", "options":
{...}, "critical": True}`` (``options`` and ``critical`` optional; ``critical`` defaults to true).
Readiness (``/readyz``, ``/healthz``) and ``check_services`` run every configured check; a
failing non-critical one is reported but leaves the replica ready. ``worker`` is a built-in
extra: only ``check_services --worker`` (or ``--only worker``) runs it, unless ``HEALTH_CHECKS``
defines a check of that name itself.

The setting is read lazily and again after ``override_settings`` changes it (or the aliases
it names); every problem is reported at once, by ``manage.py check`` (``health.E001``) and by
the first probe (``ImproperlyConfigured``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from apps.health.probes import Probe

BUILT_IN_EXTRAS: dict[str, dict[str, Any]] = {
    "worker": {"probe": "apps.health.probes.WorkerProbe", "options": {"queue": "default"}, "critical": True},
}
# A name becomes a key of the plain body next to "status" (and "checks" in the verbose one), a
# "<name>:responseTime" key in health+json and an item of `check_services --only a,b`.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RESERVED = ("status", "checks")
_KEYS = ("probe", "options", "critical")
# Settings a built probe depends on: a change (override_settings in tests) rebuilds the list.
_WATCHED = ("HEALTH_CHECKS", "DATABASES", "CACHES", "RQ_QUEUES")


@dataclass(frozen=True)
class CheckSpec:
    name: str
    probe: str
    options: Mapping[str, Any]
    critical: bool

    @cached_property
    def key(self) -> str:
        """Identifies the probe this spec builds: a changed probe or option gets a runner of its own."""
        return f"health-probe:{self.name}:{self.probe}:{json.dumps(self.options, sort_keys=True, default=repr)}"

    def build(self) -> Probe:
        probe: Probe = import_string(self.probe)(**self.options)
        return probe


def _spec(name: Any, entry: Any) -> tuple[CheckSpec | None, list[str]]:
    """The check ``entry`` describes, or the problems with it."""
    where = f"HEALTH_CHECKS[{name!r}]"
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _RESERVED:
        return None, [f"{where}: a name is 1-64 of A-Z a-z 0-9 _ - and not {' or '.join(_RESERVED)}"]
    if not isinstance(entry, Mapping):
        return None, [f'{where}: must be a dict such as {{"probe": "apps.health.probes.DatabaseProbe"}}']
    problems = [f"{where}: unknown key {key!r} (known: {', '.join(_KEYS)})" for key in entry if key not in _KEYS]
    probe, options, critical = entry.get("probe"), entry.get("options", {}), entry.get("critical", True)
    if not isinstance(critical, bool):
        problems.append(f"{where}['critical']: must be True or False")
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        problems.append(f"{where}['options']: must be a dict of keyword arguments")
        options = {}
    if not isinstance(probe, str) or not probe:
        problems.append(f"{where}['probe']: must be the dotted path of a probe class")
        return None, problems
    try:
        probe_class = import_string(probe)
    except ImportError as exc:
        return None, [*problems, f"{where}['probe']: cannot import {probe!r} ({exc})"]
    if not isinstance(probe_class, type) or not all(
        callable(getattr(probe_class, method, None)) for method in ("run", "interrupt")
    ):
        return None, [*problems, f"{where}['probe']: {probe!r} is not a class with run() and interrupt()"]
    spec = CheckSpec(name, probe, dict(options), bool(critical))
    try:
        spec.build()  # construction does no I/O: it only checks the options
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}['options']: {exc}")
    return (None if problems else spec), problems


def read(setting: Any) -> tuple[dict[str, CheckSpec], list[str]]:
    """The checks ``setting`` (a ``HEALTH_CHECKS`` value) configures, and every problem with it."""
    if not isinstance(setting, Mapping) or not setting:
        return {}, ["HEALTH_CHECKS: must be a non-empty dict from check name to {probe, options, critical}"]
    specs: dict[str, CheckSpec] = {}
    problems: list[str] = []
    for name, entry in setting.items():
        spec, found = _spec(name, entry)
        problems += found
        if spec is not None:
            specs[name] = spec
    return specs, problems


_lock = threading.Lock()
_configured: dict[str, CheckSpec] | None = None


def configured() -> Mapping[str, CheckSpec]:
    """The checks of ``settings.HEALTH_CHECKS`` (readiness), or ``ImproperlyConfigured`` listing every problem."""
    global _configured
    with _lock:
        if _configured is None:
            specs, problems = read(getattr(settings, "HEALTH_CHECKS", None))
            if problems:
                raise ImproperlyConfigured("\n".join(problems))
            _configured = specs
        return _configured


def select(names: Iterable[str] | None = None) -> Mapping[str, CheckSpec]:
    """The named checks (default: every configured one), or ``ValueError`` naming the unknown ones."""
    available = configured()
    if names is None:
        return available
    chosen = tuple(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in available and name not in BUILT_IN_EXTRAS]
    if unknown or not chosen:
        known = ", ".join([*available, *(name for name in BUILT_IN_EXTRAS if name not in available)])
        raise ValueError(f"unknown check(s): {', '.join(unknown) or '(none)'}; choose from {known}")
    return {name: available.get(name) or _built_in(name) for name in chosen}


def _built_in(name: str) -> CheckSpec:
    specs, problems = read({name: BUILT_IN_EXTRAS[name]})
    if problems:
        raise ImproperlyConfigured("\n".join(problems))
    return specs[name]


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    global _configured
    if setting in _WATCHED:
        with _lock:
            _configured = None


@register("health")
def check_health_checks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``manage.py check``: every problem with ``HEALTH_CHECKS`` (``health.E001``)."""
    _, problems = read(getattr(settings, "HEALTH_CHECKS", None))
    hint = "See docs/health.md, section HEALTH_CHECKS."
    return [Error(problem, hint=hint, id="health.E001") for problem in problems]
