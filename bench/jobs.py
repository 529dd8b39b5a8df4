"""The no-op job both workers run in the worker benchmark (importable without Django)."""


def noop() -> None:
    return None
