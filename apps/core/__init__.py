"""Cross-cutting plumbing: request ids, log context for requests and jobs, the rq worker class."""
