"""Jobs the health app enqueues: the worker canary."""

CANARY_RESULT = "canary-ok"


def canary() -> str:
    """Does nothing but prove a worker picked it up and ran project code."""
    return CANARY_RESULT
