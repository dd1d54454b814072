"""Small things the suites share: deterministic blobs, and a bounded wait for another component's state."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def wait_until(condition: Callable[[], bool], guard: float = 10.0) -> None:
    """Poll `condition` until it holds; `guard` only stops a hang, it is not a timing assertion."""
    async with asyncio.timeout(guard):
        while not condition():  # noqa: ASYNC110 - the condition is another component's state
            await asyncio.sleep(0.01)
