"""Numbers typed by a person (an environment variable, a command-line option), read strictly.

Plain ASCII decimal digits only, and for a decimal one optional ``.`` with digits after it.
Lenient readers turn mistakes into numbers: django-environ's caster deletes every other
character (``5s`` reads as 5, ``1e3`` as 13, ``1,000`` as 1), and ``int()``/``float()`` accept
``1_000``, ``+5``, ``inf`` and the digits of other scripts. None of those may become a setting.
"""

from __future__ import annotations

import re

# 18 digits: far beyond any real setting, and far below what int() and float() refuse or round.
_WHOLE = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,18})?")


def whole_number(text: str) -> int:
    """``text`` as a non-negative integer written in plain digits, or ``ValueError``."""
    if not _WHOLE.fullmatch(text):
        raise ValueError("not a whole number in plain digits")
    return int(text)


def decimal_number(text: str) -> float:
    """``text`` as a non-negative number written in plain digits (``2``, ``0.5``), or ``ValueError``."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError("not a number in plain digits")
    return float(text)
