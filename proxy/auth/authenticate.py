"""Who is calling: the one identity behind a request's credentials.

Precedence: when IAP's signed header is present it decides, and every other credential is ignored
(and stripped before Ray). Without it, the request may carry at most one other credential that a
provider claims: two different ones are ambiguous and refused, whatever each would say.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import Unauthenticated
from ..model import Identity
from .extract import IAP_HEADER, Credentials, Presented
from .providers import Provider


class Authenticator:
    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers = tuple(providers)

    @property
    def ready(self) -> bool:
        return all(p.ready for p in self.providers)

    def problems(self) -> list[str]:
        return [p.problem for p in self.providers if p.problem is not None]

    def _owner(self, presented: Presented) -> Provider | None:
        return next((p for p in self.providers if p.claims(presented)), None)

    async def authenticate(self, found: Credentials) -> Identity:
        iap = [p for p in found if p.where == IAP_HEADER]
        if len(iap) > 1:
            raise Unauthenticated("invalid IAP assertion: several IAP assertion headers")
        if iap:
            owner = self._owner(iap[0])
            if owner is None:
                raise Unauthenticated("IAP assertions are not accepted by this proxy")
            return await owner.authenticate(iap[0].value)
        claimed = [(p, owner) for p in found if (owner := self._owner(p)) is not None]
        if not claimed:
            raise Unauthenticated(self.missing())
        if len({p.value for p, _ in claimed}) > 1:
            where = ", ".join(sorted({p.where for p, _ in claimed}))
            raise Unauthenticated(
                f"ambiguous credentials: several different ones ({where}); send exactly one"
            )
        presented, owner = claimed[0]
        return await owner.authenticate(presented.value)

    def missing(self) -> str:
        """What to say to a caller who sent nothing we accept."""
        labels = [p.label for p in self.providers]
        if labels == ["IAP assertion"]:
            return "invalid IAP assertion: no IAP assertion (x-goog-iap-jwt-assertion)"
        return "no credential: send " + " or ".join(labels)
