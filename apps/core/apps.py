from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"

    def ready(self) -> None:
        from apps.core import checks, login_log, request_log  # noqa: F401 - checks register themselves

        request_log.connect()
        login_log.connect()
