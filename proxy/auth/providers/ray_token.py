"""The cluster's own Ray token as a credential, for in-cluster callers that hold it: KubeRay's operator
(`X-Ray-Authorization: Bearer <token>`) and the `ray` CLI inside a RayJob submitter (`Authorization:
Bearer <token>`). A request bearing exactly that token, compared in constant time, is the principal
`system:ray-token`. Off unless `accept_ray_token: true`."""

from __future__ import annotations

import hmac

from ...errors import Unauthenticated
from ...model import CredentialKind, Identity
from ...upstream.ray_token import RayToken
from ..extract import BEARER_HEADERS, Presented

PRINCIPAL = "system:ray-token"
IDENTITY = Identity(email=PRINCIPAL, subject="ray-token", kind=CredentialKind.RAY_TOKEN, issuer="ray")


class RayTokenProvider:
    kind = CredentialKind.RAY_TOKEN
    label = "the cluster's Ray token"

    def __init__(self, token: RayToken) -> None:
        self.token = token

    @property
    def ready(self) -> bool:
        return self.token.value is not None

    @property
    def problem(self) -> str | None:
        return None if self.ready else "Ray token not loaded"

    def _matches(self, value: str) -> bool:
        current = self.token.value
        return current is not None and hmac.compare_digest(value.encode(), current.encode())

    def claims(self, presented: Presented) -> bool:
        # Only an exact match is ours: any other bearer is left to the other providers, and a wrong
        # Ray token is never told apart from any other unacceptable credential.
        return (
            presented.where in BEARER_HEADERS
            and presented.scheme == "bearer"
            and self._matches(presented.value)
        )

    async def authenticate(self, value: str) -> Identity:
        if not self._matches(value):  # the token rotated between claims() and now
            raise Unauthenticated("invalid Ray token")
        return IDENTITY
