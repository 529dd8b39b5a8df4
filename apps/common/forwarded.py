"""Which forwarded headers to believe: one rule, the same as gunicorn's (docs/security.md).

Only a peer in ``FORWARDED_ALLOW_IPS`` (a proxy) may tell us about the request: its scheme
(gunicorn reads ``X-Forwarded-Proto``, see gunicorn.conf.py) and the client's address (here, from
``X-Forwarded-For``). Anyone else's headers are ignored: the peer itself is the client.
``X-Real-IP`` and ``Forwarded`` are never read, from anyone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None


def trusted_networks(entries: Iterable[str]) -> Networks:
    """``FORWARDED_ALLOW_IPS`` as networks (an address is a network of one); ``None`` means ``*``.

    Read as gunicorn reads it: ``*`` trusts every peer, anything else must be an address or a
    network without host bits (``10.0.0.0/8``, not ``10.0.0.1/8``), or ``ValueError``.
    """
    entries = list(entries)
    if "*" in entries:
        return None
    return [ipaddress.ip_network(entry) for entry in entries]


def is_trusted(address: str, networks: Networks) -> bool:
    if networks is None or not address:
        # "*", or a peer without an address (a Unix socket): gunicorn trusts both.
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: str, networks: Networks) -> str:
    """The client: ``peer`` itself, unless it is a trusted proxy; then the nearest address in
    ``X-Forwarded-For`` that is not one (read from the right: the left end is whatever the client
    wrote, proxies append what they saw). A malformed entry ends the walk at the last good one."""
    client = peer
    if not is_trusted(peer, networks):
        return client
    for hop in reversed([hop.strip() for hop in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client
        client = hop
        if not is_trusted(hop, networks):
            return client
    return client
