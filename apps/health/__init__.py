"""Health: the probes (``checks``), the /livez /readyz /healthz endpoints and ``check_services``."""
