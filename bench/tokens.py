"""Fresh tokens for the cache-miss points: the hot token's header and claims, signed again and again."""

from __future__ import annotations

import base64
import multiprocessing
import os
import time
from typing import Any

from bench.settings import LOAD_CORE, SUT_CORE, log

_MINT: dict[str, Any] = {}  # per minting worker process: the key and the signing input


def _mint_init(pem: bytes, header_payload: str) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    os.sched_setaffinity(0, {SUT_CORE, LOAD_CORE})
    _MINT["key"] = load_pem_private_key(pem, password=None)
    _MINT["input"] = header_payload


def _mint_batch(n: int) -> list[str]:
    """Re-sign dev.mint's header and claims: ECDSA signatures are randomised, so each token is a
    different string with the same claims (a cache miss and a full verification every time)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key, signing_input = _MINT["key"], _MINT["input"]
    data, alg, out = signing_input.encode(), ec.ECDSA(hashes.SHA256()), []
    for _ in range(n):
        r, s = decode_dss_signature(key.sign(data, alg))
        sig = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).rstrip(b"=")
        out.append(f"{signing_input}.{sig.decode()}")
    return out


class TokenPool:
    """Fresh tokens, each used once per target. Grown in parallel on both cores between points."""

    def __init__(self, pem: bytes, template: str) -> None:
        self.pem = pem
        self.header_payload = template.rsplit(".", 1)[0]
        self.tokens: list[str] = []
        self.cursor: dict[str, int] = {}

    def take(self, target: str, n: int) -> list[str]:
        start = self.cursor.get(target, 0)
        missing = start + n - len(self.tokens)
        if missing > 0:
            t0 = time.monotonic()
            batches = [missing // 8 + 1] * 8
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(2, initializer=_mint_init, initargs=(self.pem, self.header_payload)) as pool:
                for batch in pool.map(_mint_batch, batches):
                    self.tokens.extend(batch)
            log(f"minted {sum(batches)} fresh tokens in {time.monotonic() - t0:.1f} s")
        self.cursor[target] = start + n
        return self.tokens[start : start + n]
