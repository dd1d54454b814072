"""A file watched the way the kubelet updates mounted Secrets and ConfigMaps: it writes a new
`..data` directory and swaps a symlink to it atomically, so the file's *resolved* path, inode or
mtime changes while the name stays. Polling `stat` on the resolved path sees every such swap (and
plain in-place writes) without inotify, which does not follow symlink swaps.

`WatchedFile` reads the file once at start (failing loudly), then hands each changed content to a
callback. A callback that raises refuses that version: the last good one stays in force and the
error is kept in `last_error` for readiness and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("ray_iap_proxy.watched")

Signature = tuple[str, int, int, int]  # resolved path, inode, size, mtime in ns


def signature(path: Path) -> Signature:
    real = os.path.realpath(path)
    st = os.stat(real)
    return (real, st.st_ino, st.st_size, st.st_mtime_ns)


class WatchedFile:
    def __init__(
        self, path: Path, on_change: Callable[[bytes], None], *, what: str, interval_seconds: float = 2.0
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.what = what  # for logs: "ray_token_file", "policy_file"
        self.interval = interval_seconds
        self.seen: Signature | None = None
        self.last_error: str | None = None
        self.changes = 0  # versions taken
        self.failures = 0  # versions refused, and streaks of a file that cannot be read
        self._task: asyncio.Task[None] | None = None

    def load(self) -> None:
        """The first read: errors propagate (start-up should fail on them)."""
        self.seen = signature(self.path)
        self.on_change(self.path.read_bytes())

    def check(self) -> bool:
        """Look once; hand over new content if the file changed. Returns whether it did."""
        try:
            sig = signature(self.path)
            if sig == self.seen:
                return False
            content = self.path.read_bytes()
        except OSError as exc:
            why = f"cannot be read ({exc.strerror or type(exc).__name__})"
            if why != self.last_error:
                self.failures += 1
            self._fail(why)
            return False
        self.seen = sig
        try:
            self.on_change(content)
        except Exception as exc:
            self.failures += 1
            self._fail(str(exc) or type(exc).__name__)
            return False
        self.changes += 1
        self.last_error = None
        return True

    def _fail(self, why: str) -> None:
        if why != self.last_error:
            log.error("%s %s: %s; keeping the last good version", self.what, self.path, why)
        self.last_error = why

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(), name=f"watch {self.what}")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
