"""The production settings plus a second database, probed by settings alone (docs/howto-add-a-health-check.md).

``DATABASES["second"]`` is at ``SECOND_DATABASE_URL`` (read with the same rule as ``DATABASE_URL``,
with the same connection options), and the ``second_db`` check copies ``db`` with that alias.
``SECOND_DATABASE_CRITICAL=false`` makes that check non-critical.
"""

import os

from config.env import BASE_DIR
from config.rules import DatabaseURL
from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, HEALTH_CHECKS, _database_settings

DATABASES = {**DATABASES, "second": _database_settings(DatabaseURL(base=BASE_DIR)(os.environ["SECOND_DATABASE_URL"]))}
HEALTH_CHECKS = {
    **HEALTH_CHECKS,
    "second_db": {
        **HEALTH_CHECKS["db"],
        "options": {"alias": "second"},
        "critical": os.environ.get("SECOND_DATABASE_CRITICAL", "true") == "true",
    },
}
