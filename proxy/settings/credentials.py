"""Settings of the credential kinds beyond IAP's header: Google ID tokens verified by the proxy itself,
and the cluster's own Ray token for in-cluster callers. `KeySet` is what every signed-token kind
shares: how its keys are fetched and cached, and the clock skew it allows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, ValidationInfo, field_validator, model_validator

from .audiences import shape_problem as audience_shape_problem
from .base import Bool, Int, KeySetUrl, Section, Str, invalid, setting

# Any gcloud-minted token carries this audience: accepting it would accept every gcloud user's token.
GCLOUD_CLIENT_ID = "32555940559.apps.googleusercontent.com"


class KeySet(Section):
    leeway_seconds: Int = setting(30, "clock skew allowed on `exp` and `iat`.", low=0, high=300)
    key_refresh_seconds: Int = setting(
        3600,
        "how often the key set is refetched. A failed refresh keeps the last good keys and is retried "
        "after 2, 5, 10, 30, 60 s.",
        low=60,
        high=86400,
    )
    key_min_refetch_seconds: Int = setting(
        30,
        "a token signed with an unknown `kid` triggers a refetch at most this often, so a flood of "
        "made-up key ids costs one fetch per interval.",
        low=1,
        high=3600,
    )
    key_fetch_timeout_seconds: Int = setting(5, "timeout of one key-set fetch.", low=1, high=60)
    token_cache_size: Int = setting(
        10_000,
        "verified tokens kept (until their `exp` + leeway), so each signature is checked once. 0 disables "
        "the cache.",
        low=0,
        high=1_000_000,
    )

    @field_validator("audiences", check_fields=False)  # each kind declares its own audiences
    @classmethod
    def _some(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise invalid("must list at least one audience")
        return value


def _id_token_audience(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise invalid("must be a non-empty string")
    if value == GCLOUD_CLIENT_ID:
        raise invalid("is gcloud's own client id: every gcloud token carries it; name your own audience")
    return value


class GoogleIdTokens(KeySet):
    """Google-signed OIDC ID tokens as `Authorization: Bearer` (inside the VPC, CI, Ray Client)."""

    audiences: tuple[Annotated[str, BeforeValidator(_id_token_audience)], ...] = setting(
        doc="the accepted `aud` values, e.g. the URL the callers use (`gcloud auth print-identity-token "
        "--audiences=URL`, `fetch_id_token(request, URL)`). Required: no default audience is ever accepted."
    )
    jwks_url: KeySetUrl = setting(
        "https://www.googleapis.com/oauth2/v3/certs",
        "Google's OAuth 2.0 key set (JWKS, or the PEM certificates at `oauth2/v1/certs`); only RSA keys "
        "of 2048 bits or more are kept (RS256).",
    )
    max_token_lifetime_seconds: Int = setting(
        3600, "`exp - iat` must not exceed this (Google's ID tokens live an hour).", low=60, high=86400
    )


def _audience(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise invalid("must be a non-empty string")
    if problem := audience_shape_problem(value):  # it could never match a real assertion
        raise invalid(problem)
    return value


class Iap(KeySet):
    """How IAP's signed header is verified."""

    audiences: tuple[Annotated[str, BeforeValidator(_audience)], ...] = setting(
        doc="the accepted `aud` values: `/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID` "
        "(the numeric backend service id). Several are allowed, e.g. while a load balancer is recreated. "
        "The token's `aud` must be a string equal to one of them."
    )
    jwks_url: KeySetUrl = setting(
        "https://www.gstatic.com/iap/verify/public_key-jwk",
        "Google's key set. Both the JWKS (`public_key-jwk`) and the PEM dictionary (`public_key`) "
        "formats are understood; only P-256 keys are kept. `http://` is accepted only for loopback "
        "hosts (tests, dev-iap).",
    )
    issuer: Str = setting("https://cloud.google.com/iap", "the exact `iss` required.")
    max_token_lifetime_seconds: Int = setting(
        600, "`exp - iat` must not exceed this (IAP's assertions live 10 minutes).", low=60, high=86400
    )
    allow_non_ascii_emails: Bool = setting(
        False,
        "accept identities whose email is not plain ASCII (possible with IAP external identities). Off: "
        "such an assertion gets 401. Emails are never case-folded beyond A-Z either way, so a look-alike "
        "(`\\u212a` KELVIN SIGN for `k`) is another address.",
    )


class ClientTls(Section):
    """TLS on the Ray Client listener (off: plaintext HTTP/2, `h2c`)."""

    self_signed: Bool = setting(
        False,
        "serve a throwaway self-signed certificate made at start-up: enough behind Google's load "
        "balancer, which does not verify backend certificates (GKE Ingress reaches an HTTP/2 backend "
        "only over TLS).",
    )
    cert_file: Path | None = setting(None, "a PEM certificate (chain) to serve instead, with `key_file`.")
    key_file: Path | None = setting(None, "its PEM private key.")

    @field_validator("cert_file", "key_file", mode="before")
    @classmethod
    def _relative_to_the_config(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and (base := (info.context or {}).get("base")) is not None:
            return Path(base) / value
        return value

    @model_validator(mode="after")
    def _one_way(self) -> ClientTls:
        files = (self.cert_file is None, self.key_file is None)
        if files[0] != files[1]:
            raise invalid("needs both cert_file and key_file")
        if self.self_signed == (self.cert_file is not None):
            raise invalid("needs either self_signed: true or cert_file and key_file")
        return self
