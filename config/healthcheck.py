"""Container health check: ``python -m config.healthcheck [PATH]`` asks this container's own server.

The slim image has no curl or wget, and booting Django every few seconds for a probe would be
wasteful: this asks ``http://127.0.0.1:$PORT/PATH`` (default ``/livez``) with the standard
library. Exit 0 when the answer is 200, 1 otherwise. The Dockerfile's ``HEALTHCHECK`` uses
``/livez`` (the process answers); compose's web service uses ``/healthz`` (and its dependencies).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from apps.common.probe_paths import LIVEZ
from config import env

DEFAULT_PATH = "/" + LIVEZ
# Room for the server's own deadline (HEALTHCHECK_TIMEOUT) plus the request itself.
_MARGIN_SECONDS = 2.0


def probe(path: str, port: int, timeout: float) -> tuple[bool, str]:
    """Whether ``GET http://127.0.0.1:<port><path>`` answers 200, and a one-line reason."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"{path}: HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{path}: HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return False, f"{path}: no answer on port {port} ({type(reason).__name__})"


def main(argv: list[str]) -> int:
    path = argv[0] if argv else DEFAULT_PATH
    if not path.startswith("/"):
        print(f"usage: python -m config.healthcheck [/PATH] (got {path!r})", file=sys.stderr)
        return 1
    try:
        config = env.load_project_config()
    except env.ConfigurationError as error:
        # Exit 1 ("unhealthy"), not the usual 2: Docker reserves 2 in HEALTHCHECK commands.
        print("\n".join(error.problems), file=sys.stderr)
        return 1
    healthy, reason = probe(path, config.port, config.healthcheck_timeout + _MARGIN_SECONDS)
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
