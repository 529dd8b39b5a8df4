"""What a health probe raises when it can name its failure itself (for example: no worker listens)."""

from __future__ import annotations


class ProbeError(Exception):
    """A probe failed in a way it can name itself (for example: no worker is listening)."""

    def __init__(self, category: str, message: str, facts: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.category = category
        self.facts = facts
