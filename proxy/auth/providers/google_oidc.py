"""Google-signed OIDC ID tokens as a bearer credential, for callers inside the VPC (an internal load
balancer, a port-forward, CI with a service account, Ray Client): `gcloud auth print-identity-token
--audiences=AUD`, `google.oauth2.id_token.fetch_id_token(request, AUD)`.

RS256 only; issuer `https://accounts.google.com` or `accounts.google.com`; an audience from the
configured list (never a default one); `email_verified` true; the same key-store caching and
fail-closed rules as IAP's (google-auth's own `verify_token` fetches the certificates on every call
and skips the issuer: not used)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ...model import CredentialKind
from ...settings.credentials import GoogleIdTokens
from ..extract import Presented
from ..keys import KeyStore
from ..verify import Rules, looks_like_jwt
from .jwt import JwtProvider

ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
HEADERS = frozenset({"authorization", "proxy-authorization"})


def google_rules(settings: GoogleIdTokens) -> Rules:
    return Rules(
        kind=CredentialKind.GOOGLE_ID_TOKEN,
        algorithm="RS256",
        issuers=ISSUERS,
        audiences=frozenset(settings.audiences),
        leeway_seconds=settings.leeway_seconds,
        max_lifetime_seconds=settings.max_token_lifetime_seconds,
        require_verified_email=True,
    )


class GoogleIdTokenProvider(JwtProvider):
    label = "Google ID token"

    def __init__(
        self, settings: GoogleIdTokens, store: KeyStore, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(google_rules(settings), store, settings.token_cache_size, clock)

    def claims(self, presented: Presented) -> bool:
        return presented.where in HEADERS and presented.scheme == "bearer" and looks_like_jwt(presented.value)

    @property
    def key_set_label(self) -> str:
        return "Google ID token key set"
