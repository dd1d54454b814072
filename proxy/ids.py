"""Request ids: 128 random bits as 32 hex digits, as `secrets.token_hex(16)` gives, without a system
call per request. The bytes come from the OS's CSPRNG (`os.urandom`) in blocks of 256 ids, so an id
is as unguessable as before; a forked worker starts a block of its own, so no two processes hand out
the same ids."""

from __future__ import annotations

import os

_ID_BYTES = 16
_BLOCK = 256 * _ID_BYTES


class _Ids:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hex = ""
        self.at = 0

    def next(self) -> str:
        at = self.at
        if at == len(self.hex):
            self.hex, at = os.urandom(_BLOCK).hex(), 0
        self.at = at + 2 * _ID_BYTES
        return self.hex[at : at + 2 * _ID_BYTES]


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.reset)
request_id = _ids.next
