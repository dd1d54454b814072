"""A job's owner, asked of Ray (`GET /api/jobs/{id}` with Ray's token) and kept briefly.

Only jobs that exist are kept: "no such job" is asked again next time, since the job may be
submitted a moment later. An entry is dropped when the proxy forwards the job's deletion or a new
submission under its id, so an id deleted and reused through the proxy is never answered from a
stale entry; a deletion around the proxy is seen within `ttl` seconds. The cache is bounded (least
recently used entries go first). Anything but a job or "no such job" from Ray raises OwnerUnknown:
a grant that depends on the owner then grants nothing (fail closed).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from ..errors import ProxyError
from .ownership import MAX_ID_SHOWN, OwnerUnknown, owner_from_answer

Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]  # GET target -> (status, body), bounded
JOB_INFO_MAX_BYTES = 1024 * 1024  # a job's details: entrypoint, metadata, runtime env (redacted)


class OwnerCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl_seconds: float,
        size: int,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.ttl = ttl_seconds
        self.size = size
        self.timeout = timeout_seconds
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self.lookups = 0  # questions actually sent to Ray (for tests and metrics)

    def __len__(self) -> int:
        return len(self._entries)

    async def owner(self, raw_id: str) -> str | None:
        """The submitter of the job `raw_id` names (as written in the request path), or None."""
        key = unquote(raw_id)
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(key)
            return entry[1]
        exists, owner = owner_from_answer(key[:MAX_ID_SHOWN], *await self._ask(raw_id, key))
        if exists and self.ttl > 0:
            self._entries[key] = (now + self.ttl, owner)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return owner

    def forget(self, job_id: str) -> None:
        """Drop what is known of a job (decoded id): it was deleted, or its id is being reused."""
        self._entries.pop(job_id, None)

    async def _ask(self, raw_id: str, key: str) -> tuple[int, bytes]:
        self.lookups += 1
        shown = key[:MAX_ID_SHOWN]
        try:
            async with asyncio.timeout(self.timeout):
                # The raw id, so that Ray decodes it exactly as it will for the request itself.
                return await self.fetch(f"/api/jobs/{raw_id}")
        except TimeoutError:
            raise OwnerUnknown(
                f"Ray did not say within {self.timeout:g} s who submitted job {shown}"
            ) from None
        except ProxyError as exc:
            raise OwnerUnknown(f"Ray could not be asked who submitted job {shown} ({exc.reason})") from exc
