"""Turn a HealthReport into the contract's JSON bodies (plain, verbose, health+json)."""

from __future__ import annotations

from typing import Any

from apps.health.checks import CheckResult, HealthReport

HEALTH_JSON = "application/health+json"


def plain_body(report: HealthReport) -> dict[str, Any]:
    """``{"status": "ok", "db": "ok", "redis": "ok"}``: safe for anyone.

    A failing non-critical check shows ``"error"`` under its own key but leaves ``"status": "ok"``.
    """
    return {"status": report.status, **{name: result.status for name, result in report.checks.items()}}


def check_details(result: CheckResult) -> dict[str, Any]:
    details: dict[str, Any] = {
        "status": result.status,
        "latency_ms": result.latency_ms,
        "error": result.error,
        "critical": result.critical,
    }
    details.update(result.facts)
    return details


def verbose_body(report: HealthReport) -> dict[str, Any]:
    return {**plain_body(report), "checks": {name: check_details(r) for name, r in report.checks.items()}}


def _health_json_status(ok: bool, critical: bool) -> str:
    if ok:
        return "pass"
    return "fail" if critical else "warn"


def health_json_body(report: HealthReport, *, details: bool) -> dict[str, Any]:
    """The IETF draft "Health Check Response Format for HTTP APIs" shape.

    A failing non-critical check is ``"warn"``, and so is the whole report when nothing critical fails.
    """
    checks: dict[str, list[dict[str, Any]]] = {}
    for name, result in report.checks.items():
        entry: dict[str, Any] = {"status": _health_json_status(result.ok, result.critical)}
        if details:
            entry.update(observedValue=result.latency_ms, observedUnit="ms")
            if result.error:
                entry["output"] = result.error
        checks[f"{name}:responseTime"] = [entry]
    overall = "fail" if not report.ok else "warn" if report.warnings else "pass"
    return {"status": overall, "checks": checks}


def wants_health_json(accept_header: str) -> bool:
    for media_range in accept_header.split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        if media_type.lower() == HEALTH_JSON and not any(p.replace(" ", "") in ("q=0", "q=0.0") for p in params):
            return True
    return False
