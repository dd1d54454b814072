"""An event loop running in a thread of its own, for synchronous drivers (hypothesis examples) of
servers that live in that loop: `call()` runs a coroutine there and waits, bounded; `close()` runs
`_stop()` there, then stops and joins the loop. Subclasses start their servers in `__init__` with
`self.call(...)` and close them in `_stop`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str, guard: float = 30) -> None:
        self.guard = guard  # the longest any one call may take, in seconds
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], guard: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(guard or self.guard)

    async def _stop(self) -> None:
        """What to close inside the loop before it stops (subclasses)."""

    def close(self) -> None:
        try:
            self.call(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
