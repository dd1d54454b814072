"""What can go wrong while relaying a request, as statuses the pipeline maps in one place."""

from __future__ import annotations


class UpstreamError(Exception):
    """Ray could not be reached or failed mid-way. `status` is 502, or 504 for a timeout."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientFault(Exception):
    """The client broke its own request mid-way: a body that stalls (408) or is malformed (400)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BodyTooLarge(ClientFault):
    """The request body exceeded `limits.max_body_bytes` (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")
        self.limit = limit
