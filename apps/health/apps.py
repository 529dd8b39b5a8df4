from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "apps.health"

    def ready(self) -> None:
        # Registers the HEALTH_CHECKS system check (health.E001) and its reset on setting changes.
        from apps.health import checklist  # noqa: F401
