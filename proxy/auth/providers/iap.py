"""IAP's signed header, `x-goog-iap-jwt-assertion`: ES256, issuer `https://cloud.google.com/iap`, the
backend service's audience. IAP strips any copy a client sends, so behind IAP only IAP can set it."""

from __future__ import annotations

import time
from collections.abc import Callable

from ...model import CredentialKind
from ...settings import Iap
from ..extract import IAP_HEADER, Presented
from ..keys import KeyStore
from ..verify import Rules
from .jwt import JwtProvider


def iap_rules(iap: Iap) -> Rules:
    return Rules(
        kind=CredentialKind.IAP,
        algorithm="ES256",
        issuers=frozenset({iap.issuer}),
        audiences=frozenset(iap.audiences),
        leeway_seconds=iap.leeway_seconds,
        max_lifetime_seconds=iap.max_token_lifetime_seconds,
        allow_non_ascii_email=iap.allow_non_ascii_emails,
    )


class IapProvider(JwtProvider):
    label = "IAP assertion"

    def __init__(self, iap: Iap, store: KeyStore, clock: Callable[[], float] = time.time) -> None:
        super().__init__(iap_rules(iap), store, iap.token_cache_size, clock)

    def claims(self, presented: Presented) -> bool:
        return presented.where == IAP_HEADER
