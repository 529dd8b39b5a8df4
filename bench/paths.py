"""The bench-only limit probe's path, declared once."""

LIMIT_PATH = "bench/limit"
