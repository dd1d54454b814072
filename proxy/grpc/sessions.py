"""Who owns a Ray Client session: client_id -> principal.

Ray keys a client session only by the `client_id` metadata value (`util/client/server/proxier.py`):
whoever presents a live session's id gets that session — its objects, its actors, its logs, and a
reconnect (`Datapath` with `reconnecting: True`) takes over its data stream. So the first allowed call
with an id claims it for its principal, and a call under another principal with that id is refused
while the owner's calls go on.

How long a claim lasts: while any call with the id is open, and `linger_s` after the last one ends.
Ray keeps a disconnected session for the reconnect grace period *the client chose* in its Init
request (`RAY_CLIENT_RECONNECT_GRACE_PERIOD`, default 30 s), which the proxy cannot read without
decoding protobuf; the default linger (one hour) covers any sane setting. Ids are random (uuid4) per
client, so a long linger never gets in an owner's way; it only costs memory, which is bounded: at most
`max_sessions` ids, at most `max_per_principal` per principal. A principal at its own limit first
gives up its oldest idle id (only its own sessions can be exposed by that); when nothing can give way
the claim is refused as too many sessions.

Time is passed in (`now`), never read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

DEFAULT_LINGER_S = 3600.0
DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_MAX_PER_PRINCIPAL = 100

# Ray sends uuid4().hex (32 hex digits). Allow a little more, but nothing that could break a log line
# or grow the table key without bound.
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def client_id_of(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The one `client_id` of a call, or None if it has none, several, or one that is not an id.

    Several are refused, not resolved: we would check one and Ray's proxier reads the last
    (`{k: v for k, v in invocation_metadata()}`), so a second one could smuggle in another session.
    """
    ids = [v for k, v in metadata if k == "client_id"]
    if len(ids) == 1 and isinstance(ids[0], str) and CLIENT_ID.fullmatch(ids[0]):
        return ids[0]
    return None


class Claim(Enum):
    GRANTED = "granted"
    TAKEN = "taken"  # a live session of another principal
    TOO_MANY = "too many sessions"


@dataclass
class _Entry:
    principal: str
    open_calls: int
    idle_since: float  # meaningful when open_calls == 0


class Sessions:
    def __init__(
        self,
        *,
        linger_s: float = DEFAULT_LINGER_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_per_principal: int = DEFAULT_MAX_PER_PRINCIPAL,
    ) -> None:
        if linger_s < 0 or max_sessions < 1 or max_per_principal < 1:
            raise ValueError("sessions: linger_s >= 0, max_sessions >= 1 and max_per_principal >= 1")
        self._linger_s = linger_s
        self._max = max_sessions
        self._max_per_principal = max_per_principal
        self._entries: dict[str, _Entry] = {}
        self._per_principal: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def owner(self, client_id: str, now: float) -> str | None:
        entry = self._entries.get(client_id)
        if entry is None or self._expired(entry, now):
            return None
        return entry.principal

    def claim(self, client_id: str, principal: str, now: float) -> Claim:
        """Open a call with `client_id` for `principal`. Each GRANTED claim is paired with one release()."""
        entry = self._entries.get(client_id)
        if entry is not None and self._expired(entry, now):
            self._drop(client_id)
            entry = None
        if entry is not None:
            if entry.principal != principal:
                return Claim.TAKEN
            entry.open_calls += 1
            return Claim.GRANTED
        if not self._make_room(principal, now):
            return Claim.TOO_MANY
        self._entries[client_id] = _Entry(principal, 1, now)
        self._per_principal[principal] = self._per_principal.get(principal, 0) + 1
        return Claim.GRANTED

    def release(self, client_id: str, now: float) -> None:
        entry = self._entries.get(client_id)
        if entry is None or entry.open_calls == 0:
            return
        entry.open_calls -= 1
        if entry.open_calls == 0:
            entry.idle_since = now

    def _expired(self, entry: _Entry, now: float) -> bool:
        return entry.open_calls == 0 and now - entry.idle_since > self._linger_s

    def _drop(self, client_id: str) -> None:
        entry = self._entries.pop(client_id)
        left = self._per_principal[entry.principal] - 1
        if left:
            self._per_principal[entry.principal] = left
        else:
            del self._per_principal[entry.principal]

    def _make_room(self, principal: str, now: float) -> bool:
        if self._per_principal.get(principal, 0) >= self._max_per_principal:
            self._purge(now)
        if self._per_principal.get(principal, 0) >= self._max_per_principal:
            mine = self._entries.items()
            idle = [(e.idle_since, cid) for cid, e in mine if e.principal == principal and not e.open_calls]
            if not idle:
                return False
            self._drop(min(idle)[1])
        if len(self._entries) >= self._max:
            self._purge(now)
        return len(self._entries) < self._max

    def _purge(self, now: float) -> None:
        for cid in [cid for cid, e in self._entries.items() if self._expired(e, now)]:
            self._drop(cid)
