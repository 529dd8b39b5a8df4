from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "apps.metrics"

    def ready(self) -> None:
        from apps.health.checks import checks_ran
        from apps.metrics import instruments

        # Every fresh run of the probes (readiness, check_services) updates the health metrics.
        checks_ran.connect(instruments.record_checks, dispatch_uid="apps.metrics.record_checks")
