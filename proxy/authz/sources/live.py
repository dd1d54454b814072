"""The policy file as a live source: mounted from a ConfigMap, it is watched (`proxy/watched.py`: the
kubelet's `..data` symlink swap, or a plain write) and each new version is checked and swapped in
whole. A version with any problem is refused, with every problem logged (key path and value), and the
last good one stays in force. Each request is decided once, at admission, under the version current
then: a request or stream in flight is never re-decided.

Exposed for metrics: `reloads` (versions taken after the first), `reload_failures` (versions refused,
or streaks of an unreadable file), `digest` (the short hash of the version in force), `last_error`
(why the newest version was refused, until a good one comes).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import ConfigError
from ...watched import WatchedFile
from ..policy_file import policy_from_text
from .static import StaticPolicy, short_digest

log = logging.getLogger("ray_iap_proxy.authz")
RELOAD_INTERVAL_SECONDS = 2.0  # the kubelet itself takes up to a minute or so to swap the ConfigMap


class LivePolicy(StaticPolicy):
    def __init__(self, path: Path, *, interval_seconds: float = RELOAD_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.path = path
        self.watch = WatchedFile(path, self._take, what="policy_file", interval_seconds=interval_seconds)
        self.watch.load()  # the first version: every problem raised (ConfigError), start-up fails

    @property
    def reloads(self) -> int:
        return self.watch.changes

    @property
    def reload_failures(self) -> int:
        return self.watch.failures

    @property
    def last_error(self) -> str | None:
        return self.watch.last_error

    def _take(self, content: bytes) -> None:
        digest = short_digest(content)
        try:
            policy = policy_from_text(content, self.path)
        except ConfigError as exc:
            if not self.digest:
                raise  # the first version: start-up reports every problem
            where = f"{self.path}: "
            problems = [p.removeprefix(where) for p in exc.problems]
            raise ValueError(
                f"version {digest} refused, {len(problems)} problem(s): {'; '.join(problems)}; "
                f"version {self.digest} stays in force"
            ) from None
        previous = self.digest
        self.replace(policy, content)
        log.info(
            "policy_file %s: version %s %s (%d role(s), %d binding(s))",
            self.path,
            digest,
            f"replaces {previous}" if previous else "loaded",
            len(policy.roles),
            len(policy.bindings),
        )

    def start(self) -> None:
        self.watch.start()

    async def stop(self) -> None:
        await self.watch.stop()
