"""Ray's own token, from `ray_token_file` (the KubeRay Secret key `auth_token`), kept current by a
`WatchedFile`: a rotated Secret is picked up within seconds, without a probe or a request reading
the file."""

from __future__ import annotations

import logging
from pathlib import Path

from ..watched import WatchedFile

log = logging.getLogger("ray_iap_proxy")


class RayToken:
    def __init__(self, path: Path | None, interval_seconds: float = 2.0) -> None:
        self.value: str | None = None
        self.watch = (
            WatchedFile(path, self._take, what="ray_token_file", interval_seconds=interval_seconds)
            if path is not None
            else None
        )

    def _take(self, content: bytes) -> None:
        token = content.decode("utf-8").strip()
        if not token:
            raise ValueError("is empty")
        if self.value is not None and token != self.value:
            log.info("ray_token_file changed: using the new token")
        self.value = token

    def load(self) -> None:
        """Read it now; raises OSError or ValueError (empty) when it cannot be used."""
        if self.watch is not None:
            self.watch.load()

    @property
    def problem(self) -> str | None:
        return self.watch.last_error if self.watch is not None else None
