"""Bearer tokens: read from an ``Authorization`` header, compared in constant time, never crashing.

``hmac.compare_digest`` refuses text with non-ASCII characters (``TypeError``), and header values
arrive as latin-1 text: compare bytes, so any token a client sends is simply wrong, never a 500.
"""

from __future__ import annotations

import hmac


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or ``None``."""
    scheme, _, presented = authorization.partition(" ")
    return presented.strip() or None if scheme.lower() == "bearer" else None


def same_token(presented: str | None, configured: str | None) -> bool:
    """Whether ``presented`` is ``configured`` (in constant time); never true when none is configured."""
    if not configured or not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), configured.encode("utf-8", "surrogatepass"))
