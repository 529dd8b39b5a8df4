"""The bench-only paths, declared once: the limit probe, and a trivial view behind the full middleware."""

LIMIT_PATH = "bench/limit"
TRIVIAL_PATH = "bench/trivial"
