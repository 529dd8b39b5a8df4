"""What Django's error pages and error reports may show: every secret-bearing value masked.

Django's own filter hides settings and headers whose *names* look secret (``SECRET_KEY``,
``HTTP_AUTHORIZATION``, the session cookie). Values with a secret inside a harmless name are
shown as they are: ``REDIS_URL``, ``CACHES[...]["LOCATION"]``, ``RQ_QUEUES[...]["URL"]`` and, under
runserver (whose request ``META`` copies the process environment), ``DATABASE_URL``. And with
DEBUG on, Django turns the filter off for POST data and marked variables. This filter masks
passwords inside URL values wherever they appear (settings, ``META``, cookies, a frame's local
variables), and stays on with DEBUG on: a development stack must be safe to show on a screen.
"""

from __future__ import annotations

from collections.abc import ItemsView
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

from apps.common.masking import has_credentials, mask_url


class SecretMaskingFilter(SafeExceptionReporterFilter):
    """``DEFAULT_EXCEPTION_REPORTER_FILTER``: Django's filter, plus URL passwords, always on."""

    def is_active(self, request: HttpRequest | None) -> bool:
        # Django's filter only works with DEBUG off; sensitive POST fields (the admin login's
        # password) and @sensitive_variables must stay hidden on the debug page too.
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        if isinstance(value, str) and has_credentials(value):
            value = mask_url(value)
        # Django's own rule next: secret-looking names hidden whole, dicts and lists walked
        # (through this method again, so nested URLs are masked too).
        return super().cleanse_setting(key, value)

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: FrameType) -> ItemsView[str, Any]:
        # A local variable's own name does not hide it (a loop's `key` is not a secret), but a
        # URL with a password in it, or a secret-named entry of a dict, is masked.
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return {name: self.cleanse_setting("", value) for name, value in variables}.items()
