"""Where credentials are found, and which one decides: IAP's header first, else exactly one other."""

from __future__ import annotations

import asyncio

import pytest

from proxy.auth.authenticate import Authenticator
from proxy.auth.extract import IAP_HEADER, Presented, credentials
from proxy.errors import Unauthenticated
from proxy.model import CredentialKind, Identity


class Recorder:
    def __init__(self, kind: CredentialKind, label: str, where: tuple[str, ...]) -> None:
        self.kind, self.label, self.where, self.ready, self.problem = kind, label, where, True, None
        self.got: list[str] = []

    def claims(self, presented: Presented) -> bool:
        return presented.where in self.where and (
            presented.where == IAP_HEADER or presented.scheme == "bearer"
        )

    async def authenticate(self, value: str) -> Identity:
        self.got.append(value)
        return Identity(f"{self.kind}@example.com", value, kind=self.kind)


def run(pairs: list[tuple[str, str]], *providers: Recorder) -> Identity:
    return asyncio.run(Authenticator(providers).authenticate(credentials(pairs)))


def test_extraction_reads_every_credential_header_and_never_prints_a_value() -> None:
    found = credentials(
        [
            ("X-Goog-IAP-JWT-Assertion", " a "),
            ("Authorization", "Bearer b"),
            ("Accept", "x"),
            ("Proxy-Authorization", "basic c"),
            ("x-ray-authorization", "Bearer  d "),
        ]
    )
    assert [(p.where, p.scheme, p.value) for p in found] == [
        (IAP_HEADER, "", "a"),
        ("authorization", "bearer", "b"),
        ("proxy-authorization", "basic", "c"),
        ("x-ray-authorization", "bearer", "d"),
    ]
    assert "b" not in repr(found[1]).split("value=")[1]


def test_the_iap_header_decides_and_other_credentials_are_ignored() -> None:
    iap = Recorder(CredentialKind.IAP, "IAP assertion", (IAP_HEADER,))
    bearer = Recorder(CredentialKind.GOOGLE_ID_TOKEN, "Google ID token", ("authorization",))
    who = run([("authorization", "Bearer other"), (IAP_HEADER, "signed")], iap, bearer)
    assert who.kind is CredentialKind.IAP and iap.got == ["signed"] and bearer.got == []


def test_several_iap_headers_are_refused() -> None:
    iap = Recorder(CredentialKind.IAP, "IAP assertion", (IAP_HEADER,))
    with pytest.raises(Unauthenticated, match="several IAP assertion headers"):
        run([(IAP_HEADER, "a"), (IAP_HEADER, "b")], iap)
    assert iap.got == []


def test_without_iap_exactly_one_other_credential() -> None:
    bearer = Recorder(
        CredentialKind.GOOGLE_ID_TOKEN, "Google ID token", ("authorization", "proxy-authorization")
    )
    assert run([("Proxy-Authorization", "Bearer t")], bearer).subject == "t"
    assert run([("Authorization", "Bearer t"), ("Proxy-Authorization", "Bearer t")], bearer).subject == "t"
    with pytest.raises(Unauthenticated, match="ambiguous credentials"):
        run([("Authorization", "Bearer t"), ("Proxy-Authorization", "Bearer u")], bearer)


def test_nothing_acceptable_names_what_is_accepted() -> None:
    iap = Recorder(CredentialKind.IAP, "IAP assertion", (IAP_HEADER,))
    with pytest.raises(Unauthenticated, match=r"no IAP assertion \(x-goog-iap-jwt-assertion\)"):
        run([("Authorization", "Bearer t")], iap)
    bearer = Recorder(CredentialKind.GOOGLE_ID_TOKEN, "Google ID token", ("authorization",))
    with pytest.raises(Unauthenticated, match="send IAP assertion or Google ID token"):
        run([("Authorization", "Basic t")], iap, bearer)
