"""One rule for forwarded headers, through real gunicorn: believed from FORWARDED_ALLOW_IPS only.

The allowed peer is 127.0.0.1; a client bound to 127.0.0.2 (another loopback address on Linux)
is a distinct peer that is not allowed. Scheme: only ``X-Forwarded-Proto: https``, only when
DJANGO_SECURE_PROXY_SSL_HEADER is true. Client address: ``X-Forwarded-For`` from the allowed peer,
read from the right. No header becomes a WSGI variable (``SCRIPT_NAME``).
"""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from apps.common.forwarded import client_address, trusted_networks
from harness.processes import wait_until
from harness.project import Server, project_env

ALLOWED, OTHER = "127.0.0.1", "127.0.0.2"
HTTPS = {"X-Forwarded-Proto": "https"}
# gunicorn's default secure_scheme_headers believe these too, whatever Django is told.
OTHER_SCHEME_HEADERS = [{"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Protocol": "ssl"}]


def _get(server: Server, path: str, headers: dict[str, str], source: str = ALLOWED) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection(ALLOWED, server.port, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, {key.lower(): value for key, value in response.getheaders()}
    finally:
        connection.close()


def _server(**overrides: str) -> Iterator[Server]:
    settings = {"FORWARDED_ALLOW_IPS": ALLOWED, "WEB_CONCURRENCY": "1", "LOG_LEVEL": "INFO", **overrides}
    environment = {**project_env(), **settings}
    with Server(environment) as server:
        yield server


@pytest.fixture(scope="module")
def behind_a_proxy(collected_static: None) -> Iterator[Server]:
    """Production behind a TLS proxy: HTTPS redirect on, X-Forwarded-Proto believed from the proxy."""
    yield from _server(DJANGO_SECURE_SSL_REDIRECT="true", DJANGO_SECURE_PROXY_SSL_HEADER="true")


@pytest.fixture(scope="module")
def without_proxy_header(collected_static: None) -> Iterator[Server]:
    """HTTPS redirect on, DJANGO_SECURE_PROXY_SSL_HEADER false: no header makes a request https."""
    yield from _server(DJANGO_SECURE_SSL_REDIRECT="true", DJANGO_SECURE_PROXY_SSL_HEADER="false")


@pytest.fixture(scope="module")
def plain_http(collected_static: None) -> Iterator[Server]:
    """No redirect: every request reaches the views and their log lines."""
    yield from _server(DJANGO_SECURE_SSL_REDIRECT="false")


@pytest.mark.slow
class TestScheme:
    def test_the_proxy_marks_a_request_https(self, behind_a_proxy: Server) -> None:
        assert _get(behind_a_proxy, "/admin/login/", HTTPS)[0] == 200

    def test_another_peer_cannot(self, behind_a_proxy: Server) -> None:
        status, headers = _get(behind_a_proxy, "/admin/login/", HTTPS, source=OTHER)
        assert status == 301
        assert headers["location"].startswith("https://")

    @pytest.mark.parametrize("header", OTHER_SCHEME_HEADERS)
    def test_only_x_forwarded_proto_counts(self, behind_a_proxy: Server, header: dict[str, str]) -> None:
        assert _get(behind_a_proxy, "/admin/login/", header)[0] == 301

    @pytest.mark.parametrize("header", [HTTPS, *OTHER_SCHEME_HEADERS])
    def test_without_the_setting_no_header_counts(self, without_proxy_header: Server, header: dict[str, str]) -> None:
        assert _get(without_proxy_header, "/admin/login/", header)[0] == 301
        assert _get(without_proxy_header, "/admin/login/", header, source=OTHER)[0] == 301


@pytest.mark.slow
class TestScriptName:
    @pytest.mark.parametrize("source", [ALLOWED, OTHER])
    def test_a_script_name_header_moves_no_url(self, plain_http: Server, source: str) -> None:
        status, headers = _get(plain_http, "/admin/", {"SCRIPT_NAME": "/prefix"}, source)
        assert status == 302
        assert headers["location"] == "/admin/login/?next=/admin/"
        assert _get(plain_http, "/prefix/admin/", {"SCRIPT_NAME": "/prefix"}, source)[0] == 404


def _logged_ip(server: Server, headers: dict[str, str], source: str) -> Any:
    request_id = f"ip-{uuid.uuid4().hex}"
    assert _get(server, "/admin/login/", {**headers, "X-Request-ID": request_id}, source)[0] == 200
    lines = wait_until(
        lambda: [
            e for e in server.events() if e.get("event") == "request_started" and e.get("request_id") == request_id
        ],
        10,
        f"the request_started line of {request_id}",
    )
    return lines[0].get("ip")


SPOOFED = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.10", "Forwarded": "for=203.0.113.11"}


@pytest.mark.slow
class TestClientAddress:
    def test_another_peer_is_its_own_address_whatever_it_claims(self, plain_http: Server) -> None:
        assert _logged_ip(plain_http, SPOOFED, OTHER) == OTHER

    def test_the_proxy_forwards_the_client(self, plain_http: Server) -> None:
        assert _logged_ip(plain_http, {"X-Forwarded-For": "198.51.100.7"}, ALLOWED) == "198.51.100.7"

    def test_what_the_client_wrote_before_the_proxy_is_ignored(self, plain_http: Server) -> None:
        """The proxy appends what it saw; the left end is the client's own invention."""
        forwarded = {"X-Forwarded-For": "203.0.113.66, 198.51.100.7"}
        assert _logged_ip(plain_http, forwarded, ALLOWED) == "198.51.100.7"

    def test_x_real_ip_and_forwarded_are_never_read(self, plain_http: Server) -> None:
        headers = {"X-Real-IP": "203.0.113.10", "Forwarded": "for=203.0.113.11"}
        assert _logged_ip(plain_http, headers, ALLOWED) == ALLOWED


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "allowed", "client"),
    [
        ("10.0.0.5", "203.0.113.9", ["127.0.0.1"], "10.0.0.5"),
        ("10.0.0.5", "203.0.113.9", ["10.0.0.0/8"], "203.0.113.9"),
        ("10.0.0.5", "203.0.113.9, 10.0.0.7", ["10.0.0.0/8"], "203.0.113.9"),  # two proxies
        ("10.0.0.5", "203.0.113.9, 192.0.2.1", ["10.0.0.0/8"], "192.0.2.1"),
        ("10.0.0.5", "not-an-address, 10.0.0.7", ["10.0.0.0/8"], "10.0.0.7"),
        ("10.0.0.5", "", ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", "2001:db8::1", ["10.0.0.0/8"], "2001:db8::1"),
        ("::1", "203.0.113.9", ["::1"], "203.0.113.9"),
        ("10.0.0.5", "203.0.113.9, 10.0.0.7", ["*"], "203.0.113.9"),
        ("", "203.0.113.9", ["127.0.0.1"], "203.0.113.9"),  # a Unix socket: trusted, as gunicorn does
    ],
)
def test_the_client_address_rule(peer: str, forwarded_for: str, allowed: list[str], client: str) -> None:
    assert client_address(peer, forwarded_for, trusted_networks(allowed)) == client
