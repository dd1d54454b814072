"""Authentication providers: one per credential kind. A provider says which presented credentials
are its own (`claims`, pure and cheap) and verifies one (`authenticate`). Adding a credential kind is
one module here and one settings section (docs/architecture.md)."""

from __future__ import annotations

from typing import Protocol

from ...model import CredentialKind, Identity
from ..extract import Presented


class Provider(Protocol):
    kind: CredentialKind
    label: str  # how refusals name the credential: "IAP assertion"

    def claims(self, presented: Presented) -> bool:
        """Whether this credential is this provider's to verify."""
        ...

    async def authenticate(self, value: str) -> Identity:
        """The identity behind `value`; raises Unauthenticated (bad) or Unavailable (cannot tell)."""
        ...

    @property
    def ready(self) -> bool:
        """Whether it can verify anything now (its keys are loaded)."""
        ...

    @property
    def problem(self) -> str | None:
        """Why it cannot verify anything now (for readiness), or None."""
        ...
