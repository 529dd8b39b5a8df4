"""Turn a HealthReport into the contract's JSON bodies (plain, verbose, health+json)."""

from __future__ import annotations

from typing import Any

from apps.health.checks import CheckResult, HealthReport

HEALTH_JSON = "application/health+json"


def plain_body(report: HealthReport) -> dict[str, Any]:
    """``{"status": "ok", "db": "ok", "redis": "ok"}``: safe for anyone."""
    return {"status": report.status, **{name: result.status for name, result in report.checks.items()}}


def check_details(result: CheckResult) -> dict[str, Any]:
    details: dict[str, Any] = {"status": result.status, "latency_ms": result.latency_ms, "error": result.error}
    details.update(result.facts)
    return details


def verbose_body(report: HealthReport) -> dict[str, Any]:
    return {**plain_body(report), "checks": {name: check_details(r) for name, r in report.checks.items()}}


def health_json_body(report: HealthReport, *, details: bool) -> dict[str, Any]:
    """The IETF draft "Health Check Response Format for HTTP APIs" shape."""
    checks: dict[str, list[dict[str, Any]]] = {}
    for name, result in report.checks.items():
        entry: dict[str, Any] = {"status": "pass" if result.ok else "fail"}
        if details:
            entry.update(observedValue=result.latency_ms, observedUnit="ms")
            if result.error:
                entry["output"] = result.error
        checks[f"{name}:responseTime"] = [entry]
    return {"status": "pass" if report.ok else "fail", "checks": checks}


def wants_health_json(accept_header: str) -> bool:
    for media_range in accept_header.split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        if media_type.lower() == HEALTH_JSON and not any(p.replace(" ", "") in ("q=0", "q=0.0") for p in params):
            return True
    return False
