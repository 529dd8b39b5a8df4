"""Jobs the tests enqueue; a worker subprocess imports them from the project root."""

import structlog

logger = structlog.get_logger("tests.sample_jobs")


def log_and_return(value: str) -> str:
    logger.info("sample_job_ran", value=value)
    return value.upper()
