"""What can go wrong talking to Ray, as statuses the pipeline maps in one place."""

from __future__ import annotations


class UpstreamError(Exception):
    """Ray could not be reached or failed mid-way. `status` is 502, or 504 for a timeout."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BodyTooLarge(Exception):
    """The request body exceeded `limits.max_body_bytes` (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit
