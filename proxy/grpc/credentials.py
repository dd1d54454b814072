"""How long a Ray Client session outlives the token it was opened with.

Ray's client sends the metadata given to `ray.init(..., _metadata=...)` with every call of the session,
for as long as the session lives; an IAP assertion expires after 10 minutes and a Google ID token
after an hour, while a session (and its `ray.get`s, each a new call) may run for hours. Re-verifying
every call would cut every long session at the token's expiry. So the proxy admits a session's
credential once: a credential that verified for a `client_id` is accepted again *for calls of that
session only* (same `client_id`, the very same credential bytes) without re-checking its expiry, until
`client_session_max_seconds` after it first verified. Every call is still classified and authorized
under the current policy, and the session still belongs to its principal (sessions.py). A new session,
or another `client_id`, needs a credential that verifies now.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from ..auth.extract import Credentials
from ..model import Identity

MAX_ENTRIES = 10_000


def _fingerprint(client_id: str, found: Credentials) -> bytes:
    digest = hashlib.sha256(client_id.encode())
    for p in found:
        digest.update(b"\0" + p.where.encode() + b"\0" + p.value.encode())
    return digest.digest()


class SessionCredentials:
    def __init__(self, bound_seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.bound = bound_seconds
        self.max_entries = max_entries
        self._known: OrderedDict[bytes, tuple[Identity, float]] = OrderedDict()

    def identity(self, client_id: str | None, found: Credentials, now: float) -> Identity | None:
        """The identity a credential verified as for this session, while within the bound."""
        if not client_id or not found:
            return None
        key = _fingerprint(client_id, found)
        entry = self._known.get(key)
        if entry is None:
            return None
        identity, until = entry
        if now > until:
            del self._known[key]
            return None
        return identity

    def remember(self, client_id: str | None, found: Credentials, identity: Identity, now: float) -> None:
        """A credential that verified now for `client_id`: accepted for the session until the bound."""
        if not client_id or not found:
            return
        key = _fingerprint(client_id, found)
        if key in self._known:
            return  # the bound runs from the first verification, never extended
        self._known[key] = (identity, now + self.bound)
        while len(self._known) > self.max_entries:
            self._known.popitem(last=False)
