"""A Ray Client session's credential, remembered for the session only and within its bound."""

from __future__ import annotations

from proxy.auth.extract import Presented
from proxy.grpc.credentials import SessionCredentials
from proxy.model import Identity

ALICE = Identity("alice@example.com", "s")
TOKEN = (Presented("x-goog-iap-jwt-assertion", "t1"),)


def test_remembered_for_the_same_session_and_credential_until_the_bound() -> None:
    s = SessionCredentials(bound_seconds=100)
    assert s.identity("c1", TOKEN, 0) is None
    s.remember("c1", TOKEN, ALICE, 0)
    assert s.identity("c1", TOKEN, 99) == ALICE
    assert s.identity("c2", TOKEN, 1) is None  # another session
    assert s.identity("c1", (Presented("x-goog-iap-jwt-assertion", "t2"),), 1) is None  # another token
    assert s.identity("c1", (Presented("authorization", "t1", "bearer"),), 1) is None  # elsewhere
    s.remember("c1", TOKEN, ALICE, 50)  # never extended
    assert s.identity("c1", TOKEN, 101) is None


def test_nothing_is_remembered_without_a_session_or_a_credential_and_the_table_is_bounded() -> None:
    s = SessionCredentials(bound_seconds=100, max_entries=2)
    s.remember(None, TOKEN, ALICE, 0)
    s.remember("c1", (), ALICE, 0)
    assert s.identity(None, TOKEN, 0) is None and s.identity("c1", (), 0) is None
    for cid in ("a", "b", "c"):
        s.remember(cid, TOKEN, ALICE, 0)
    assert s.identity("a", TOKEN, 1) is None and s.identity("c", TOKEN, 1) == ALICE
